"""The keys under which a smoke run keeps its state in ``config.stash`` (never module globals: xdist)."""

from __future__ import annotations

import pytest

from ecs_verdict.http import RetryBudget
from ecs_verdict.suite import SuiteProfile
from ecs_verdict.pytest_plugin.options import SmokeConfig
from ecs_verdict.pytest_plugin.preflight import RunState

smoke_run_key = pytest.StashKey[bool]()  # do this run's arguments reach the smoke suite?
config_key = pytest.StashKey[SmokeConfig]()  # the options, resolved once
suite_key = pytest.StashKey[SuiteProfile]()  # what the suite the run reaches said of itself (every process asks)
state_key = pytest.StashKey[RunState]()  # what the controller's discovery and wait found
# The run's one HTTP retry budget, made before the task lanes fork so that they all spend from it.
retry_budget_key = pytest.StashKey[RetryBudget]()
