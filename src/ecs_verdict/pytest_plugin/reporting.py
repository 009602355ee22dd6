"""Reports a CI gate and a person can act on: verdict.json, summary.md, JUnit, Allure.

Adapts pytest's reports to the pytest-free run (``ecs_verdict.run``): each failed test
carries a typed ``CheckFailure`` in ``report.user_properties`` (JSON only while a report
crosses to the controller from an xdist worker or a forked lane: the serialisation hooks
below); the controller collects the verdict rows, then ``run.conclude`` diagnoses, decides
and acts, and ``reports.write_report_files`` writes and scrubs every report.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from ecs_verdict import timeline as timelines
from ecs_verdict import verdict as verdicts
from ecs_verdict.categories import NO_ANSWER
from ecs_verdict.coverage import LeftOut
from ecs_verdict.http import RetryCounts
from ecs_verdict.preflight import RunState
from ecs_verdict.redact import SecretRegistry
from ecs_verdict.reports import write_report_files
from ecs_verdict.run import CheckFailure, check_failure_of, conclude, fallback_verdict
from ecs_verdict.settings import Settings
from ecs_verdict.targets import Target
from ecs_verdict.pytest_plugin.fixtures import DEPLOYMENT_CHECK, exchanges_of, redirect_target, registry_of, target_of
from ecs_verdict.pytest_plugin.harness_errors import record_run_error
from ecs_verdict.pytest_plugin.suites import suite_of
from ecs_verdict.pytest_plugin.stash import (check_events_key, checks_key, console_key, drop_reasons_key,
                                             exchanges_key, failed_checks_key, harness_error_key, left_out_key,
                                             retry_budget_key, state_key, verdict_key)

SECRETS_OUTPUT_KEY = "smoke_secrets"
TEST_TRAFFIC_HOOKS = frozenset({"POST_TEST_TRAFFIC_SHIFT"})  # where the test listener first reaches green
RETRIES_OUTPUT_KEY = "smoke_retries"
HINT_PROPERTY = "smoke_failure"
# Carried on each report so the controller knows the check and its task without parsing test ids.
CHECK_PROPERTY = "smoke_check"
TASK_PROPERTY = "smoke_task_id"
DEPLOYMENT_PROPERTY = "smoke_deployment_check"
NOTE_PROPERTY = "smoke_note"  # something the report must say, e.g. a task ECS replaced mid-run
OUTCOME_PROPERTY = "smoke_outcome"  # the verdict row's outcome when the report's own would mislead (ecs_verdict.pytest_plugin.task_fate)
REPLACEMENT_PROPERTY = "smoke_replacement"  # {"stopped": task id, "replacement": Target.to_dict()} as JSON


# -- per test ----------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    registry = registry_of(item.config)
    if not any(key == CHECK_PROPERTY for key, _value in report.user_properties):
        report.user_properties.extend(check_properties(item))
    if report.failed:
        exchanges = exchanges_of(item)
        last = (f"{exchanges[-1].method} {exchanges[-1].url}", exchanges[-1].status) if exchanges else None
        error = call.excinfo.value if call.excinfo else None
        try:
            failed = check_failure_of(error, last, (call.start, call.stop))
        except ValueError as unknown:  # a failure_kind the harness does not know: loud, never a guess
            record_run_error(item.config, "pytest_runtest_makereport", unknown)
            failed = check_failure_of(None, last, (call.start, call.stop))
        report.user_properties.append((HINT_PROPERTY, failed))
    for note in (item.stash[exchanges_key].notes if exchanges_key in item.stash else []):
        if report.when == "call" or report.failed:
            report.user_properties.append((NOTE_PROPERTY, note))
    # Whatever a test printed or asserted reaches the terminal, JUnit and Allure from here.
    if len(registry) and report.longrepr is not None:
        report.longrepr = registry.redact(str(report.longrepr))
    if len(registry):
        report.sections = [(title, registry.redact(text)) for title, text in report.sections]
    return report


def check_properties(item: pytest.Item) -> list[tuple[str, str]]:
    """What a verdict row needs to know of a test: its check, its task, whether it is the deployment check."""
    properties = [(CHECK_PROPERTY, getattr(item, "originalname", item.name))]
    target = target_of(item)
    if target is not None:
        # The task the test really checked: a replacement when ECS stopped the first one mid-run.
        properties.append((TASK_PROPERTY, redirect_target(item.config, target).task_id))
    if item.get_closest_marker(DEPLOYMENT_CHECK) is not None:
        properties.append((DEPLOYMENT_PROPERTY, "true"))
    return properties


class CheckCollector:
    """Turns test reports into verdict check records (registered on the controller of a smoke run)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def _note(self, note: str) -> None:
        state = self.config.stash.get(state_key, None)
        if state is not None and note not in state.notes:
            state.notes.append(note)

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        """Every check left out of the run, on which task, and why (the report lists them)."""
        dropped = self.config.stash.get(drop_reasons_key, {})
        left_out = self.config.stash.setdefault(left_out_key, [])
        for item in items:
            properties = dict(check_properties(item))
            left_out.append(LeftOut(properties[CHECK_PROPERTY], properties.get(TASK_PROPERTY),
                                    dropped.get(item.nodeid) or selection_reason(self.config)))

    def _replaced(self, stopped_task_id: str, replacement: Target) -> None:
        """The task the checks moved to stands in the run's targets (verdict tasks, end sweep) for the stopped one."""
        state = self.config.stash.get(state_key, None)
        if state is None:
            return
        if any(t.task_id == replacement.task_id for t in state.targets):  # a scale-in: the stopped task just left
            state.targets = [t for t in state.targets if t.task_id != stopped_task_id]
        else:
            state.targets = [replacement if t.task_id == stopped_task_id else t for t in state.targets]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for key, value in report.user_properties:  # of any phase: a teardown's clean-up may leave a note
            if key == NOTE_PROPERTY:
                self._note(value)
            if key == REPLACEMENT_PROPERTY:
                moved = json.loads(value)
                self._replaced(moved["stopped"], Target.from_dict(moved["replacement"]))
        if report.when != "call" and not (report.failed or report.skipped):
            return
        properties = dict(report.user_properties)
        outcome = "error" if report.failed and report.when != "call" else report.outcome
        failed = failure_of(report)
        if outcome == "error" and failed is not None and failed.violation:
            outcome = "failed"  # the service answered wrongly while a fixture set up (a login 500, say)
        outcome = properties.get(OUTCOME_PROPERTY, outcome)
        message = ""
        if report.failed:
            message = _first_lines(str(report.longrepr))
        elif report.skipped and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2])
        record = verdicts.CheckRecord(
            name=properties.get(CHECK_PROPERTY, report.nodeid.split("::")[-1]),
            task_id=properties.get(TASK_PROPERTY),
            outcome=outcome,  # type: ignore[typeddict-item]
            duration_s=round(report.duration, 3),
            message=message,
        )
        if report.failed and failed is not None and failed.no_answer:
            # What the service would have answered is unknown: this check on this task could not be verified.
            record.update(outcome="error", category=NO_ANSWER, message=failed.no_answer)
        elif report.failed and failed is not None and failed.category in suite_of(self.config).not_verified_categories:
            # The check proved a suite cause that means "could not verify" (exit 6), not a broken service.
            record.update(outcome="error", category=failed.category)
        self.config.stash.setdefault(checks_key, []).append(record)
        start, stop = getattr(report, "start", None), getattr(report, "stop", None)
        if start is not None and stop is not None:
            task_id = properties.get(TASK_PROPERTY)
            self.config.stash.setdefault(check_events_key, []).append(timelines.check_event(
                properties.get(CHECK_PROPERTY, report.nodeid.split("::")[-1]), task_id[:8] if task_id else None,
                record["outcome"], start, stop))
        if failed is not None:
            self.config.stash.setdefault(failed_checks_key, {})[report.nodeid] = dataclasses.replace(
                failed, message=message, check=properties.get(CHECK_PROPERTY), task_id=properties.get(TASK_PROPERTY),
                deployment_check=DEPLOYMENT_PROPERTY in properties)


def selection_reason(config: pytest.Config) -> str:
    """How the person narrowed the run: ``deselected by -k 'health' -m 'readonly'``."""
    given = [f"{flag} {value!r}" for flag, value in (("-k", config.option.keyword), ("-m", config.option.markexpr))
             if value]
    if getattr(config.option, "deselect", None):
        given.append("--deselect")
    return "deselected by " + (" ".join(given) if given else "a plugin")


def failure_of(report: pytest.TestReport) -> CheckFailure | None:
    return next((value for key, value in report.user_properties if key == HINT_PROPERTY
                 and isinstance(value, CheckFailure)), None)


# -- the process boundary: a CheckFailure is JSON only while its report crosses to the controller ----------


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(config: pytest.Config, report: Any) -> Any:
    data = yield
    if isinstance(data, dict) and data.get("user_properties"):
        data["user_properties"] = [(key, value.to_dict() if isinstance(value, CheckFailure) else value)
                                   for key, value in data["user_properties"]]
    return data


@pytest.hookimpl(wrapper=True)
def pytest_report_from_serializable(config: pytest.Config, data: dict[str, Any]) -> Any:
    report = yield
    properties = getattr(report, "user_properties", None)
    if properties:
        # An unknown kind in the JSON is a ValueError here: loud, never a guess.
        report.user_properties = [(key, CheckFailure.from_dict(value) if key == HINT_PROPERTY
                                   and isinstance(value, dict) else value) for key, value in properties]
    return report


def _first_lines(text: str, limit: int = 600) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("All traceback entries")]
    # A traceback's "E   <message>" lines say what broke; pytest.fail(pytrace=False) gives the message alone.
    errors = [line[1:].strip() for line in lines if line.startswith("E ")]
    chosen = " | ".join(errors[:4]) if errors else " | ".join(line.strip() for line in lines[:4])
    return chosen[:limit]


# -- wiring -------------------------------------------------------------------------------------------


def configure_outputs(config: pytest.Config, resolved: Settings) -> None:
    """Default the Allure and JUnit outputs into the report folder (explicit options win)."""
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(CheckCollector(config), "smoke-check-collector")
    report_dir = Path(resolved.report_dir)
    if getattr(config.option, "allure_report_dir", None) is None:
        config.option.allure_report_dir = str(report_dir / "allure-results")
        config.option.clean_alluredir = not hasattr(config, "workerinput")
    if getattr(config.option, "xmlpath", None) is None:
        config.option.xmlpath = str(report_dir / "junit.xml")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Workers hand the secrets they learned, and the retries they spent, to the controller (which writes every report)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[SECRETS_OUTPUT_KEY] = registry_of(session.config).values()
        budget = session.config.stash.get(retry_budget_key, None)
        if budget is not None:
            workeroutput[RETRIES_OUTPUT_KEY] = asdict(budget.counts())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist: merge the secrets each worker learned into the controller's registry, and add up its retries."""
    output = getattr(node, "workeroutput", {})
    registry = registry_of(node.config)
    for value in output.get(SECRETS_OUTPUT_KEY, []):
        registry.add(value)
    budget = node.config.stash.get(retry_budget_key, None)
    if budget is not None and RETRIES_OUTPUT_KEY in output:
        budget.add(RetryCounts(**output[RETRIES_OUTPUT_KEY]))  # each worker had a budget of its own


# -- the reports ----------------------------------------------------------------------------------


def write_reports(config: pytest.Config, resolved: Settings, state: RunState, registry: SecretRegistry,
                  exit_status: int, harness_error: str | None = None) -> verdicts.Verdict:
    """``run.conclude`` on what the tests reported, then every report file; returns the verdict (its exit code is the run's)."""
    interrupted = int(exit_status) if exit_status in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR) \
        else None  # a run cut short proves nothing, whatever passed before it stopped
    budget = config.stash.get(retry_budget_key, None)
    conclusion = conclude(
        resolved, state, config.stash.get(checks_key, []), config.stash.get(failed_checks_key, {}),
        left_out=config.stash.get(left_out_key, []), interrupted=interrupted, harness_error=harness_error,
        retry_counts=budget.counts() if budget is not None else None,
        before_acting=lambda: config.hook.pytest_smoke_before_service_action(config=config), suite=suite_of(config))
    config.stash[console_key] = conclusion.console
    config.stash[verdict_key] = verdict = conclusion.verdict
    report_dir = Path(resolved.report_dir)
    allure_dir = Path(getattr(config.option, "allure_report_dir", "") or report_dir / "allure-results")
    # JUnit is written by pytest's own sessionfinish before this trylast hook runs: the scrub covers it.
    write_report_files(report_dir, allure_dir, verdict, state.targets,
                       [*timelines.from_dicts(state.timeline), *config.stash.get(check_events_key, [])], registry,
                       suite_of(config))
    return verdict


def write_fallback_verdict(config: pytest.Config, resolved: Settings, state: RunState,
                           registry: SecretRegistry, error: str) -> verdicts.Verdict:
    """After a harness error: the verdict so far (or the smallest honest one) turned to error, exit 6."""
    verdict = fallback_verdict(resolved, state, config.stash.get(checks_key, []), error,
                               config.stash.get(verdict_key, None), config.stash.get(console_key, None))
    config.stash[verdict_key] = verdict
    try:
        verdicts.write_verdict(Path(resolved.report_dir) / "verdict.json", verdict, registry)
    except OSError as write_error:
        config.stash[harness_error_key] = (f"{config.stash.get(harness_error_key, error)}; verdict.json could not be "
                                           f"written to {resolved.report_dir} ({write_error.strerror or write_error})")
    return verdict
