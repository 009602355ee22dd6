"""Every key under which a smoke run keeps its state in ``config.stash`` or ``item.stash`` (never module globals: xdist)."""

from __future__ import annotations

import pytest

from ecs_verdict import timeline as timelines
from ecs_verdict import verdict as verdicts
from ecs_verdict.console_links import ConsoleContext
from ecs_verdict.coverage import LeftOut
from ecs_verdict.http import ExchangeLog, RetryBudget
from ecs_verdict.preflight import RunState
from ecs_verdict.redact import SecretRegistry
from ecs_verdict.run import CheckFailure
from ecs_verdict.settings import Settings
from ecs_verdict.suite import SuiteProfile
from ecs_verdict.targets import Target

# The run
smoke_run_key = pytest.StashKey[bool]()  # do this run's arguments reach the smoke suite?
config_key = pytest.StashKey[Settings]()  # the options, resolved once
suite_key = pytest.StashKey[SuiteProfile]()  # what the suite the run reaches said of itself (every process asks)
state_key = pytest.StashKey[RunState]()  # what the controller's discovery and wait found
# The run's one HTTP retry budget, made before the task lanes fork so that they all spend from it.
retry_budget_key = pytest.StashKey[RetryBudget]()
secrets_key = pytest.StashKey[SecretRegistry]()  # the run's one secret registry (fixtures.registry_of)
harness_error_key = pytest.StashKey[str]()  # the one line, set by the first harness error of the run
error_shown_key = pytest.StashKey[bool]()  # the terminal summary printed that line
# Task id -> the task that replaced it when ECS stopped it mid-run (pytest_plugin.task_fate); per process.
redirects_key = pytest.StashKey[dict[str, Target]]()
unregistered_key = pytest.StashKey[dict[str, int]]()  # folder -> how many tests in it ask for smoke_target

# What the tests reported (the controller's)
checks_key = pytest.StashKey[list[verdicts.CheckRecord]]()
check_events_key = pytest.StashKey[list[timelines.TimelineEvent]]()  # each check per task, for the timeline
failed_checks_key = pytest.StashKey[dict[str, CheckFailure]]()  # nodeid -> what its failure tells diagnosis
left_out_key = pytest.StashKey[list[LeftOut]]()
# Why the harness itself dropped a test (nodeid -> reason); anything else deselected was -k/-m/--deselect.
drop_reasons_key = pytest.StashKey[dict[str, str]]()
verdict_key = pytest.StashKey[verdicts.Verdict]()
console_key = pytest.StashKey[ConsoleContext]()

# Per test (item.stash)
exchanges_key = pytest.StashKey[ExchangeLog]()  # every HTTP exchange of the test
