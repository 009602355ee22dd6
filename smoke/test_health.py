"""Health: every task answers its health path with the health contract."""

from __future__ import annotations

import httpx
import pytest

from contracts import check_health
from plugins.core.targets import Target
from plugins.options import SmokeConfig


@pytest.mark.readonly
def test_health_answers_healthy(smoke_http: httpx.Client, smoke_target: Target, smoke_config: SmokeConfig) -> None:
    """200, JSON matching the contract, database connected."""
    check_health(smoke_http.get(smoke_config.health_path), task=smoke_target.short_id)
