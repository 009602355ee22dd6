"""A task that ECS stops during the run: its checks move to the replacement, or the run says why not.

Each test of an ECS task runs through pytest's own protocol here, as pytest-rerunfailures
runs it (``runtestprotocol(item, log=False)``, then the reports logged by this hook), so
a test that got no HTTP answer from its task can be looked at before anyone hears of it:

- the task was stopped from outside the service (scale-in or a new deployment, Spot, a
  person) and its replacement is healthy within the run's deadline: the test runs again on
  the replacement, every later test of that task goes there too (``smoke_target`` follows
  the run's redirects), the first attempt is dropped, and the report says so;
- the task crashed (its essential container exited, ran out of memory, failed its health
  checks): the first such test fails with the ``task_crashed`` cause, the task's later
  tests that got no answer are skipped, pointing at it (one cause, said once);
- no replacement was healthy in time: the first such test is could-not-verify
  (``task_stopped``), the later ones skipped likewise.

ECS is asked once per task per process (a forked lane, an xdist worker or the serial run),
with the process's own AWS clients: a forked lane never uses its parent's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from _pytest.runner import runtestprotocol

from ecs_verdict.aws import AwsClients, make_clients
from ecs_verdict.errors import HarnessOutcome
from ecs_verdict.kinds import Kind
from ecs_verdict.run import CheckFailure
from ecs_verdict.task_fate import Claims, Fate, ReplacementSearch, TaskFate, TaskOutcome, follow_task
from ecs_verdict.targets import Target
from ecs_verdict.pytest_plugin.fixtures import redirect_target, target_of
from ecs_verdict.pytest_plugin.reporting import HINT_PROPERTY, NOTE_PROPERTY, OUTCOME_PROPERTY, REPLACEMENT_PROPERTY
from ecs_verdict.pytest_plugin.stash import config_key, redirects_key, state_key

CLAIMS_INPUT_KEY = "smoke_replacement_claims"
MAX_MOVES = 3  # a replacement may be stopped in turn; a task that keeps moving is left to the deadline
NO_ANSWER_ATTRIBUTE = "smoke_no_answer"  # set on a report whose test got no HTTP answer (an httpx.TransportError)


def no_answer_of(excinfo: pytest.ExceptionInfo[BaseException] | None) -> str | None:
    """``"ConnectError: ..."`` when the test ended on an ``httpx.TransportError`` (or one caused it)."""
    error: BaseException | None = excinfo.value if excinfo is not None else None
    for _ in range(5):
        if error is None:
            return None
        if isinstance(error, httpx.TransportError):
            return f"{type(error).__name__}: {error}"[:300]
        error = error.__cause__ or error.__context__
    return None


class TaskFateWatch:
    """Registered in every process of a smoke run that discovered its targets through ECS."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.outcomes: dict[str, TaskOutcome] = {}
        self._clients: tuple[int, AwsClients] | None = None
        self._own_claims: Path | None = None

    # -- the claims folder: made by the controller before any lane forks or worker starts ---------------

    def claims(self) -> Claims:
        folder = getattr(self.config, "workerinput", {}).get(CLAIMS_INPUT_KEY)
        if folder is None:
            if self._own_claims is None:
                self._own_claims = Path(tempfile.mkdtemp(prefix="smoke-claims-"))
            folder = self._own_claims
        return Claims(Path(folder))

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if not hasattr(self.config, "workerinput"):
            self.claims()  # now, before the lanes fork: they share this folder

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[CLAIMS_INPUT_KEY] = str(self.claims().folder)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._own_claims is not None and not hasattr(config, "workerinput"):
            shutil.rmtree(self._own_claims, ignore_errors=True)

    # -- the protocol -------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if report.failed:
            no_answer = no_answer_of(call.excinfo)
            if no_answer is not None:
                setattr(report, NO_ANSWER_ATTRIBUTE, no_answer)
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        original = target_of(item)
        if original is None or original.source != "ecs":
            return None
        hook = item.ihook
        hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        for report in self._run(item, nextitem, original):
            hook.pytest_runtest_logreport(report=report)
        hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def _run(self, item: pytest.Item, nextitem: pytest.Item | None, original: Target) -> list[pytest.TestReport]:
        notes: list[str] = []
        moved: list[tuple[str, Target]] = []
        for _ in range(MAX_MOVES + 1):
            current = redirect_target(self.config, original)
            reports = runtestprotocol(item, nextitem=nextitem, log=False)
            if not any(getattr(report, NO_ANSWER_ATTRIBUTE, None) for report in reports):
                return self._annotated(reports, notes, moved)
            outcome = self._outcome_of(current)
            if outcome.replacement is not None:
                # The attempt on the stopped task is dropped; what it had to say (a clean-up left over) is not.
                notes += [value for report in reports for key, value in report.user_properties
                          if key == NOTE_PROPERTY and value not in notes]
                notes.append(outcome.note())
                moved.append((current.task_id, outcome.replacement))
                continue  # again, on the replacement (smoke_target follows the redirect)
            if outcome.fate.fate in (Fate.RUNNING, Fate.UNKNOWN):
                return self._annotated(reports, notes, moved)  # the network: the retry layer's to report
            return self._annotated(self._stopped(reports, current, outcome), notes, moved)
        return self._annotated(reports, notes, moved)

    def _annotated(self, reports: list[pytest.TestReport], notes: list[str], moved: list[tuple[str, Target]]
                   ) -> list[pytest.TestReport]:
        for report in reports:
            for note in notes:
                if report.when == "call" or report.failed:
                    report.user_properties.append((NOTE_PROPERTY, note))
            for stopped, target in moved:
                report.user_properties.append(
                    (REPLACEMENT_PROPERTY, json.dumps({"stopped": stopped, "replacement": target.to_dict()})))
        return reports

    def _stopped(self, reports: list[pytest.TestReport], task: Target, outcome: TaskOutcome
                 ) -> list[pytest.TestReport]:
        """The reports of a test whose task crashed or was never replaced: the cause once, then pointers to it."""
        crashed = outcome.fate.fate is Fate.CRASHED
        category = Kind.TASK_CRASHED if crashed else Kind.TASK_STOPPED
        for report in reports:
            no_answer = getattr(report, NO_ANSWER_ATTRIBUTE, None)
            if not no_answer:
                continue
            if outcome.reported:
                if report.when == "teardown":  # the test itself says it; its clean-up need not again
                    report.outcome, report.longrepr = "passed", None
                    continue
                report.outcome = "skipped"
                report.longrepr = (item_path(report), 0, f"Skipped: not run: task {task.short_id} "
                                   f"{outcome.what()} (reported once, under [{category}])")
                continue
            details = {**outcome.fate.to_dict(), "no_answer": no_answer}
            if not crashed:
                details["last_seen"] = outcome.last_seen
            failed = CheckFailure(kind=category, details=details)
            report.user_properties[:] = [(k, v) for k, v in report.user_properties if k != HINT_PROPERTY]
            report.user_properties += [(HINT_PROPERTY, failed),
                                       (OUTCOME_PROPERTY, "failed" if crashed else "error")]
            report.longrepr = f"task {task.short_id} {outcome.what()} ({no_answer})"
            outcome = self.outcomes[task.task_id] = dataclasses.replace(outcome, reported=True)
        return reports

    # -- asking ECS ----------------------------------------------------------------------------------

    def _aws(self) -> AwsClients:
        # A forked lane inherits its parent's clients (and their connection pool): never use those.
        if self._clients is None or self._clients[0] != os.getpid():
            self._clients = (os.getpid(), make_clients(self.config.stash[config_key].aws_region))
        return self._clients[1]

    def _outcome_of(self, task: Target) -> TaskOutcome:
        if task.task_id in self.outcomes:
            return self.outcomes[task.task_id]
        resolved = self.config.stash[config_key]
        state = self.config.stash[state_key]
        try:
            clients = self._aws()
        except HarnessOutcome as error:
            outcome = TaskOutcome(TaskFate(task.task_id, Fate.UNKNOWN, error=str(error)))
            self.outcomes[task.task_id] = outcome
            return outcome
        # The run's deadline: --stable-timeout from its start (the wait for the deploy spent part of it).
        deadline = state.started_monotonic + resolved.stable_timeout
        outcome = follow_task(clients, ReplacementSearch(resolved.selector, health_path=state.health_path), task,
                              {t.task_id for t in state.targets}, self.claims(), deadline=deadline)
        if outcome.replacement is not None:
            redirects_of(self.config)[task.task_id] = outcome.replacement
        self.outcomes[task.task_id] = outcome
        return outcome


def item_path(report: pytest.TestReport) -> str:
    return report.location[0] if report.location else report.nodeid.split("::", 1)[0]


def redirects_of(config: pytest.Config) -> dict[str, Target]:
    return config.stash.setdefault(redirects_key, {})


WATCH_PLUGIN = "smoke-task-fate"


def register_if_needed(config: pytest.Config) -> None:
    """Watch tasks in a smoke run that finds its targets through ECS (never for URLs given by hand)."""
    resolved = config.stash.get(config_key, None)
    if resolved is not None and resolved.uses_discovery and not config.pluginmanager.has_plugin(WATCH_PLUGIN):
        config.pluginmanager.register(TaskFateWatch(config), WATCH_PLUGIN)
