"""Hooks a suite's own plugin can implement to take part in the generic smoke run."""

from __future__ import annotations

import pytest


@pytest.hookspec
def pytest_smoke_before_service_action(config: pytest.Config) -> None:
    """On the controller, once the verdict is decided and before the harness acts on the service.

    Called only when the run will act (``--continue-deployment``, ``--on-fail rollback``):
    the last moment the tested tasks are certainly still up. The CivicForge suite takes back
    what its tests wrote here, through those tasks, instead of after the gate stopped them.
    """
