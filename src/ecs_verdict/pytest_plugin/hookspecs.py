"""Hooks a suite's own plugin can implement to take part in the generic smoke run."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecs_verdict.suite import SuiteProfile


@pytest.hookspec
def pytest_smoke_suite_folders(config: pytest.Config) -> list[Path]:
    """The folders of the suite(s) a plugin brings: a run whose arguments reach one is a smoke run.

    The same as listing them in the ini's ``smoke_suites``, for a suite shipped as a plugin.
    """


@pytest.hookspec(firstresult=True)
def pytest_smoke_suite(config: pytest.Config) -> SuiteProfile | None:
    """The suite's name, default metrics namespace and own causes (``ecs_verdict.suite``).

    Called in every process of a smoke run (the controller and each xdist worker, which load the
    same plugins), once, in ``pytest_configure``; the first plugin whose suite the run reaches
    answers, the others return None. No answer: generic names and no causes of a suite's own.
    """


@pytest.hookspec
def pytest_smoke_before_service_action(config: pytest.Config) -> None:
    """On the controller, once the verdict is decided and before the harness acts on the service.

    Called only when the run will act (``--continue-deployment``, ``--on-fail rollback``):
    the last moment the tested tasks are certainly still up. A suite whose tests write to the
    service takes back what they wrote here, through those tasks, instead of after the gate stopped them.
    """
