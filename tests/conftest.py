"""Fixtures for the harness's own tests: the local stage, in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import pytest

from stage import Stage, StageOptions


StageFactory = Callable[..., Stage]
# Tasks that never pass a health check (restart_loop, curl_health_check, a health path that 404s)
# are stopped only after the task definition's 60 s startPeriod. Counted x 0.125 (7.5 s, about the
# 8 s the stage used to allow) they fail as fast as the tests need. Healthy tasks are unaffected:
# their first passing check makes them HEALTHY. Tests of the real clock pass start_period_scale
# themselves (tests/test_start_period.py).
TEST_START_PERIOD_SCALE = 0.125


@pytest.fixture
def stage_factory() -> Iterator[StageFactory]:
    """``stage_factory("rolling", faults=["urlsafe"], **options)``: a running stage, stopped after the test.

    ``options`` are StageOptions fields; start_period_scale defaults to TEST_START_PERIOD_SCALE.
    One stage at a time per process: moto's state is process-wide.
    """
    started: list[Stage] = []

    def start(scenario: str = "healthy", *, faults: list[str] | tuple[str, ...] = (), **options: object) -> Stage:
        options.setdefault("start_period_scale", TEST_START_PERIOD_SCALE)
        stage = Stage(StageOptions(scenario=scenario, faults=tuple(faults), **options))  # type: ignore[arg-type]
        stage.start()
        started.append(stage)
        return stage

    yield start
    for stage in started:
        stage.stop()


@pytest.fixture
def healthy_stage(stage_factory: StageFactory) -> Stage:
    return stage_factory("healthy")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Dummy credentials for clients the code under test makes (the stage's own clients carry theirs)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return monkeypatch
