"""Health: every task answers its health path with the health contract."""

from __future__ import annotations

import httpx
import pytest

from contracts import check_health
from ecs_verdict.targets import Target


@pytest.mark.readonly
def test_health_answers_healthy(smoke_http: httpx.Client, smoke_target: Target, smoke_health_path: str) -> None:
    """200, JSON matching the contract, database connected (on the path ECS itself probes)."""
    check_health(smoke_http.get(smoke_health_path), task=smoke_target.short_id)
