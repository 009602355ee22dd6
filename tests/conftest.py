"""Fixtures for the harness's own tests: the local stage, in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import pytest

from stage import Stage, StageOptions


StageFactory = Callable[..., Stage]


@pytest.fixture
def stage_factory() -> Iterator[StageFactory]:
    """``stage_factory("rolling", faults=["urlsafe"], **options)``: a running stage, stopped after the test.

    One stage at a time per process: moto's state is process-wide.
    """
    started: list[Stage] = []

    def start(scenario: str = "healthy", *, faults: list[str] | tuple[str, ...] = (), **options: object) -> Stage:
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
