"""Reports a CI gate and a person can act on: verdict.json, summary.md, JUnit, Allure.

Runs on the controller at the end of a smoke run. Workers send what only they
know (the secrets they learned, failure hints) through ``workeroutput`` and
``report.user_properties``; the controller then diagnoses the failures once,
writes the reports and scrubs every file under the report folder with the
union of all secrets, so nothing a worker learned leaks into a file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from ecs_verdict import verdict as verdicts
from ecs_verdict.aws import make_clients
from ecs_verdict.blue_green import CONTINUE, PausedHook, act_on_hook
from ecs_verdict import timeline as timelines
from ecs_verdict.allure3 import (CONTAINER_SUFFIX, RESULT_SUFFIX, TASK_LABEL, causes, label_failed_result,
                                   last_exchange, trim_quiet_fixtures, write_allure3_extras)
from ecs_verdict.categories import NO_ANSWER, Diagnosis
from ecs_verdict.console_links import ConsoleContext, awslogs_options, run_window
from ecs_verdict.diagnosis import Failure, diagnose_all, failure_windows
from ecs_verdict.containers import choose_container
from ecs_verdict.coverage import LeftOut, describe_left_out, skipped_checks
from ecs_verdict.deployment import TaskDefinitionRef
from ecs_verdict.errors import EXIT_COULD_NOT_VERIFY, HarnessOutcome
from ecs_verdict.http import NoAnswer, RetryCounts, describe_error
from ecs_verdict.lint import health_check_path, lint_task_definition
from ecs_verdict.listeners import passed_at_every_task
from ecs_verdict.redact import SecretRegistry, scrub_patterns
from ecs_verdict.rollback import not_rolled_back, roll_back
from ecs_verdict.stability import StableResult, wait_until_stable
from ecs_verdict.targets import Target
from ecs_verdict.pytest_plugin.fixtures import (DEPLOYMENT_CHECK, exchanges_key, exchanges_of, redirect_target, registry_of,
                              target_of)
from ecs_verdict.pytest_plugin.harness_errors import harness_error_key
from ecs_verdict.pytest_plugin.options import SmokeConfig
from ecs_verdict.pytest_plugin.preflight import RunState
from ecs_verdict.pytest_plugin.stash import retry_budget_key, state_key

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
checks_key = pytest.StashKey[list[verdicts.CheckRecord]]()
check_events_key = pytest.StashKey[list[timelines.TimelineEvent]]()  # each check per task, for the timeline
hints_key = pytest.StashKey[dict[str, dict[str, Any]]]()
left_out_key = pytest.StashKey[list[LeftOut]]()
# Why the harness itself dropped a test (nodeid -> reason); anything else deselected was -k/-m/--deselect.
drop_reasons_key = pytest.StashKey[dict[str, str]]()


# -- per test ----------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    registry = registry_of(item.config)
    if not any(key == CHECK_PROPERTY for key, _value in report.user_properties):
        report.user_properties.extend(check_properties(item))
    if report.failed:
        exchanges = exchanges_of(item)
        last = exchanges[-1] if exchanges else None
        error = call.excinfo.value if call.excinfo else None
        hint = {
            "security": bool(getattr(error, "security", False)),
            "check": getattr(error, "check", None),
            "kind": getattr(error, "failure_kind", None),  # what a violation proves beyond itself, if anything
            "violation": isinstance(error, AssertionError),
            "status": last.status if last else None,
            "request": f"{last.method} {last.url}" if last else None,
            # No HTTP answer (after the client's retries): could not verify, never a finding.
            NO_ANSWER: _no_answer_text(error) if isinstance(error, httpx.TransportError) else None,
            "ran": [call.start, call.stop],  # epoch seconds: the task's logs are read around this
        }
        if isinstance(error, NoAnswer):
            hint["request"] = f"{error.method} {error.url}"
            hint["status"] = None
        report.user_properties.append((HINT_PROPERTY, json.dumps(hint)))
    for note in (item.stash[exchanges_key].notes if exchanges_key in item.stash else []):
        if report.when == "call" or report.failed:
            report.user_properties.append((NOTE_PROPERTY, note))
    # Whatever a test printed or asserted reaches the terminal, JUnit and Allure from here.
    if len(registry) and report.longrepr is not None:
        report.longrepr = registry.redact(str(report.longrepr))
    if len(registry):
        report.sections = [(title, registry.redact(text)) for title, text in report.sections]
    return report


def _no_answer_text(error: httpx.TransportError) -> str:
    """NoAnswer names its request and attempts; another transport error (a client of the suite's own) its type."""
    return str(error) if isinstance(error, NoAnswer) else describe_error(error)


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
        hint = _hint_of(report)
        if outcome == "error" and hint.get("violation"):
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
        if report.failed and hint.get(NO_ANSWER):
            # What the service would have answered is unknown: this check on this task could not be verified.
            record.update(outcome="error", category=NO_ANSWER, message=hint[NO_ANSWER])
        self.config.stash.setdefault(checks_key, []).append(record)
        start, stop = getattr(report, "start", None), getattr(report, "stop", None)
        if start is not None and stop is not None:
            task_id = properties.get(TASK_PROPERTY)
            self.config.stash.setdefault(check_events_key, []).append(timelines.check_event(
                properties.get(CHECK_PROPERTY, report.nodeid.split("::")[-1]), task_id[:8] if task_id else None,
                record["outcome"], start, stop))
        for key, value in report.user_properties:
            if key == HINT_PROPERTY:
                self.config.stash.setdefault(hints_key, {})[report.nodeid] = {
                    **json.loads(value), "message": message, "test": properties.get(CHECK_PROPERTY),
                    "task_id": properties.get(TASK_PROPERTY), "deployment_check": DEPLOYMENT_PROPERTY in properties}


def selection_reason(config: pytest.Config) -> str:
    """How the person narrowed the run: ``deselected by -k 'health' -m 'readonly'``."""
    given = [f"{flag} {value!r}" for flag, value in (("-k", config.option.keyword), ("-m", config.option.markexpr))
             if value]
    if getattr(config.option, "deselect", None):
        given.append("--deselect")
    return "deselected by " + (" ".join(given) if given else "a plugin")


def _hint_of(report: pytest.TestReport) -> dict[str, Any]:
    return next((json.loads(value) for key, value in report.user_properties if key == HINT_PROPERTY), {})


def _first_lines(text: str, limit: int = 600) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("All traceback entries")]
    # A traceback's "E   <message>" lines say what broke; pytest.fail(pytrace=False) gives the message alone.
    errors = [line[1:].strip() for line in lines if line.startswith("E ")]
    chosen = " | ".join(errors[:4]) if errors else " | ".join(line.strip() for line in lines[:4])
    return chosen[:limit]


# -- wiring -------------------------------------------------------------------------------------------


def configure_outputs(config: pytest.Config, resolved: SmokeConfig) -> None:
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


@dataclass
class RunFindings:
    diagnoses: list[Diagnosis] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0  # diagnosis and lint together (bench/bench_diagnosis.py reads it)
    stopped_task_ids: frozenset[str] = frozenset()  # what the evidence found stopped: their ECS pages get links
    # The task definition and container diagnosis read (also when the deploy failed before discovery
    # knew them): where the tasks' log streams are.
    task_definition: dict[str, Any] | None = None
    container: str | None = None


def write_reports(config: pytest.Config, resolved: SmokeConfig, state: RunState, registry: SecretRegistry,
                  exit_status: int, harness_error: str | None = None) -> verdicts.Verdict:
    """Diagnose, then write verdict.json, summary.md and the Allure extras; scrub every report file.

    Returns the verdict; its ``exit_code`` is the run's.
    """
    checks = config.stash.get(checks_key, [])
    hints = config.stash.get(hints_key, {})
    began = time.monotonic()
    try:
        findings = analyse(resolved, state, checks, hints)
    except Exception as error:  # noqa: BLE001 - the verdict must be written whatever diagnosis hit
        findings = RunFindings(notes=[f"diagnosis failed ({type(error).__name__}: {error}); see the checks"])
    findings.duration_s = time.monotonic() - began
    report_dir = Path(resolved.report_dir)
    deployment = state.deployment
    targets = state.targets
    interrupted = int(exit_status) if exit_status in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR) \
        else None  # a run cut short proves nothing, whatever passed before it stopped
    task_ids = [target.task_id for target in state.targets]
    left_out = config.stash.get(left_out_key, [])
    decision = verdicts.decide(
        checks, outcome=state.outcome, diagnoses=findings.diagnoses, lint_warnings=findings.warnings,
        strict_lint=resolved.strict, interrupted=interrupted, internal_error=harness_error, task_ids=task_ids,
        left_out=left_out)
    # Once the verdict is known and before it is written: continue or roll back, and record what was done.
    if resolved.continue_deployment or resolved.on_fail != "none":
        config.hook.pytest_smoke_before_service_action(config=config)
    actions = act_on_the_service(resolved, state, decision.exit_code)
    if actions.refused is not None:
        decision = verdicts.decide(
            checks, outcome=state.outcome, diagnoses=findings.diagnoses, lint_warnings=findings.warnings,
            strict_lint=resolved.strict, interrupted=interrupted, internal_error=harness_error,
            deployment_action_refused=actions.refused, task_ids=task_ids, left_out=left_out)
    started_at, duration_s = datetime.fromisoformat(state.started_at), time.monotonic() - state.started_monotonic
    console = console_context(resolved, state, findings, started_at, duration_s)
    config.stash[console_key] = console
    verdict = verdicts.build_verdict(
        started_at=started_at,
        duration_s=duration_s,
        console=console,
        target=verdicts.TargetRecord(
            region=state.region,
            cluster=deployment.cluster if deployment else resolved.ecs_cluster,
            service=deployment.service if deployment else resolved.ecs_service,
            deployment_id=deployment.deployment_id if deployment else None,
            task_definition=deployment.task_definition_arn if deployment else None,
            image_digest=resolved.expect_image_digest or _common_digest(targets),
        ),
        tasks=[
            verdicts.TaskRecord(task_id=t.task_id, ip=t.ip, image_digest=t.image_digest, started_at=t.started_at)
            for t in targets
        ],
        checks=checks,
        decision=decision,
        warnings=[*findings.warnings,
                  *(f"note: {note}" for note in [*state.notes, *findings.notes, *actions.notes,
                                                 *_retry_notes(config), *_left_out_notes(state, left_out, checks),
                                                 *_unchecked_listener_notes(state, checks)])],
    )
    verdict.update(actions.fields)  # type: ignore[typeddict-item]
    if state.listeners:
        verdict["listeners"] = list(state.listeners)  # type: ignore[typeddict-unknown-key]
    if resolved.canary:
        from ecs_verdict.metrics import publish_verdict_metrics  # a canary's only: not paid by every run

        # After the verdict is final, before it is written: a failed publish is a warning in it, not a failure.
        verdict["warnings"] += publish_verdict_metrics(verdict, region=resolved.aws_region,
                                                       namespace=resolved.metrics_namespace,
                                                       environment=resolved.environment)
    # Beyond the documented fields: how long diagnosis and lint took (bench/bench_diagnosis.py).
    verdict["diagnosis_s"] = round(findings.duration_s, 3)  # type: ignore[typeddict-unknown-key]
    budget = config.stash.get(retry_budget_key, None)
    if budget is not None:  # every lane's and worker's HTTP retries, for machines (the note says it for people)
        verdict["http_retries"] = asdict(budget.counts())  # type: ignore[typeddict-unknown-key]
    config.stash[verdict_key] = verdict
    verdicts.write_verdict(report_dir / "verdict.json", verdict, registry)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    summary = verdicts.write_summary(report_dir / "summary.md", verdict, registry, step_summary)
    # Redacted before they are drawn or escaped: an escaped or reshaped secret would slip past the last scrub.
    events = [replace(event, state=registry.redact(event.state), detail=registry.redact(event.detail))
              for event in [*timelines.from_dicts(state.timeline), *config.stash.get(check_events_key, []),
                            timelines.verdict_event(time.time(), verdict["verdict"], verdict["exit_code"])]]
    summary += append_timeline(report_dir / "summary.md", events, registry, step_summary)
    allure_dir = Path(getattr(config.option, "allure_report_dir", "") or report_dir / "allure-results")
    write_allure_extras(allure_dir, verdict, targets)
    clean_verdict = registry.redact_obj(verdict)
    write_allure3_extras(allure_dir, clean_verdict, summary,
                         timelines.timeline_html(events, _timeline_title(clean_verdict)),
                         now_ms=int(time.time() * 1000))
    label_allure_failures(allure_dir, clean_verdict, registry, total_tasks=len(targets))
    # JUnit is written by pytest's own sessionfinish before this trylast hook runs.
    scrub_tree(report_dir, registry)
    if allure_dir.resolve() != (report_dir / "allure-results").resolve():
        scrub_tree(allure_dir, registry)
    return verdict


def _retry_notes(config: pytest.Config) -> list[str]:
    """The run's HTTP retries, every lane's together, when there were any: every retry shows."""
    budget = config.stash.get(retry_budget_key, None)
    if budget is None:
        return []
    counts = budget.counts()
    return [counts.describe()] if counts.retries or counts.unanswered else []


def _unchecked_listener_notes(state: RunState, checks: list[verdicts.CheckRecord]) -> list[str]:
    """A listener no check went through: said, since the tasks' checks alone decide the verdict then."""
    if state.outcome is not None:
        return []
    checked = {check["task_id"] for check in checks if check["outcome"] != "skipped"}
    return [f"no check ran through the load balancer's {listener.describe()}: only read-only checks go through it "
            "(writes pin a task), and none was selected" for listener in state.lb_listeners
            if listener.target_id not in checked]


def _left_out_notes(state: RunState, left_out: list[LeftOut], checks: list[verdicts.CheckRecord]) -> list[str]:
    """What a narrowed run did not check, and why; nothing when the deploy itself stopped the tests."""
    if state.outcome is not None:
        return []
    return describe_left_out([*left_out, *skipped_checks(checks)])


def write_fallback_verdict(config: pytest.Config, resolved: SmokeConfig, state: RunState,
                           registry: SecretRegistry, error: str) -> verdicts.Verdict:
    """After a harness error: the verdict so far (or the smallest honest one) turned to error, exit 6."""
    checks = config.stash.get(checks_key, [])
    earlier = config.stash.get(verdict_key, None)
    if earlier is not None:
        decision = verdicts.decide(earlier["checks"], diagnoses=earlier["diagnoses"], internal_error=error)
        verdict = verdicts.with_decision(earlier, decision, config.stash.get(console_key, None))
    else:
        verdict = verdicts.build_verdict(
            started_at=datetime.fromisoformat(state.started_at),
            duration_s=time.monotonic() - state.started_monotonic,
            target=verdicts.TargetRecord(region=state.region, cluster=resolved.ecs_cluster,
                                         service=resolved.ecs_service, deployment_id=None, task_definition=None,
                                         image_digest=None),
            tasks=[], checks=checks, decision=verdicts.decide(checks, internal_error=error),
        )
    config.stash[verdict_key] = verdict
    try:
        verdicts.write_verdict(Path(resolved.report_dir) / "verdict.json", verdict, registry)
    except OSError as write_error:
        config.stash[harness_error_key] = (f"{config.stash.get(harness_error_key, error)}; verdict.json could not be "
                                           f"written to {resolved.report_dir} ({write_error.strerror or write_error})")
    return verdict


verdict_key = pytest.StashKey[verdicts.Verdict]()
console_key = pytest.StashKey[ConsoleContext]()


def console_context(resolved: SmokeConfig, state: RunState, findings: RunFindings,
                    started_at: datetime, duration_s: float) -> ConsoleContext:
    """What the console links need, from what the run already read (no AWS call)."""
    deployment = state.deployment
    container = (deployment.container if deployment else None) or findings.container or resolved.ecs_container
    definition = state.task_definition or findings.task_definition
    group, prefix = awslogs_options(definition, container) if container else (None, None)
    raw_service = state.seen.service if state.seen is not None else None
    service_deployment = (raw_service or {}).get("currentServiceDeployment") or (state.paused_hook or {}).get(
        "service_deployment_arn")
    return ConsoleContext(
        region=state.region, cluster=deployment.cluster if deployment else resolved.ecs_cluster,
        service=deployment.service if deployment else resolved.ecs_service, log_group=group,
        log_stream_prefix=prefix, container=container, service_deployment_arn=service_deployment,
        stopped_task_ids=findings.stopped_task_ids,
        window=run_window(started_at, duration_s))


@dataclass
class ServiceActions:
    """What the run did to the service after its verdict: the verdict fields, notes, a refused continue."""

    fields: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    refused: str | None = None  # ECS refused to continue a paused deployment the gate passed


def act_on_the_service(resolved: SmokeConfig, state: RunState, exit_code: int) -> ServiceActions:
    """``--continue-deployment``: act on the paused hook; ``--on-fail rollback``: roll a failed gate back."""
    done = ServiceActions()
    if resolved.continue_deployment:
        if state.paused_hook is None:
            if exit_code == 1:
                done.notes.append("--continue-deployment: the deploy failed before it paused at a hook: ECS's own "
                                  "circuit breaker and the hook's timeout decide")
            return done
        hold = TEST_TRAFFIC_HOOKS if state.hold_for_test_listener else frozenset()  # for a run through the test listener
        gate = act_on_hook(state.clients or make_clients(resolved.aws_region), PausedHook.from_dict(state.paused_hook),
                           exit_code, leave_paused_at=hold)
        done.fields["deployment_gate"] = gate.to_dict()
        done.notes += [action.describe() for action in gate.actions] + list(gate.notes)
        refused = gate.refused
        if refused is not None and refused.action == CONTINUE:
            done.refused = refused.describe()
    if resolved.rolls_back_on_fail:
        line = not_rolled_back(exit_code)
        if line is not None:
            done.notes += [line] if line else []
            return done
        clients = state.clients or make_clients(resolved.aws_region)
        cluster, service = resolved.ecs_cluster or "", resolved.ecs_service or ""

        def wait(expected: TaskDefinitionRef) -> StableResult:
            return wait_until_stable(clients, cluster=cluster, service=service, health_path=resolved.health_path,
                                     timeout_s=resolved.stable_timeout, expect_task_definition=expected,
                                     address=resolved.address, container=resolved.ecs_container,
                                     port=resolved.target_port)

        record = roll_back(clients, cluster=cluster, service=service, failed=state.deployment, wait=wait)
        done.fields["rollback"] = record.to_dict()
        done.notes.append(record.describe())
    return done


def analyse(resolved: SmokeConfig, state: RunState, checks: list[verdicts.CheckRecord],
            hints: dict[str, dict[str, Any]]) -> RunFindings:
    """Diagnose every failure and lint the task definition (also on a green run)."""
    findings = RunFindings()
    failures: list[Failure] = []
    if state.outcome and (state.outcome["exit_code"] != EXIT_COULD_NOT_VERIFY or state.outcome["kind"] == "deadline"):
        # A failed deploy, or a wait that ran out: the evidence says why. Every other
        # could-not-verify outcome names its own cause (verdict.decide).
        failures.append(Failure(kind=state.outcome["kind"], check="deployment",
                                task_id=None, message=state.outcome["message"],
                                details=dict(state.outcome.get("details") or {})))
    listeners = {listener.target_id: listener for listener in state.lb_listeners}
    task_ids = [target.task_id for target in state.targets]
    for nodeid, hint in hints.items():
        if state.outcome and hint.get("deployment_check"):
            continue  # the same failure as the preflight outcome above, already diagnosed
        kind = NO_ANSWER if hint.get(NO_ANSWER) else (hint.get("kind") or "check_failed")
        check = hint.get("test") or nodeid.split("::")[-1]
        details = {**{k: hint[k] for k in ("status", "request") if hint.get(k) is not None},
                   **(hint.get("details") or {})}
        listener = listeners.get(hint.get("task_id") or "")
        if listener is not None and kind != NO_ANSWER and passed_at_every_task(check, checks, task_ids):
            kind, details = "lb_routing", {**details, "listener": listener.to_dict()}
        failures.append(Failure(kind=kind, check=check,
                                task_id=hint.get("task_id"), message=hint.get(NO_ANSWER) or hint.get("message", ""),
                                security=bool(hint.get("security")), details=details,
                                window=_window_of(hint) if listener is None else None))
    if not resolved.uses_discovery:
        findings.diagnoses = diagnose_all(failures) if failures else []
        return findings
    cluster, service = resolved.ecs_cluster or "", resolved.ecs_service or ""
    try:
        clients = state.clients or make_clients(resolved.aws_region)  # the preflight's, in the controller
        definition = state.task_definition or _task_definition_of(clients, state, cluster, service)
    except Exception as error:  # noqa: BLE001 - a report must still be written
        findings.notes.append(f"could not read the task definition for lint and diagnosis: {error}")
        findings.diagnoses = diagnose_all(failures) if failures else []
        return findings
    if definition is None:  # the service itself could not be read: nothing to lint or gather
        findings.diagnoses = diagnose_all(failures) if failures else []
        return findings
    container = (state.deployment.container if state.deployment else None) or _container_of(definition, resolved)
    findings.task_definition, findings.container = definition, container
    findings.warnings = [w.message for w in lint_task_definition(
        definition, container=container, health_path_status=_probe_health_check_path(definition, container, state))]
    if failures:
        from ecs_verdict.evidence import collect_evidence  # a failing run's only: not paid by a green one

        # A listener is no task: ECS has no task, log stream or stop reason for it.
        task_ids = sorted(({f.task_id for f in failures if f.task_id} - set(listeners)) | set(task_ids))
        evidence = collect_evidence(ecs=clients.ecs, logs=clients.logs, cluster=cluster, service=service,
                                    task_ids=task_ids, task_definition=definition, container=container or "",
                                    around=datetime.now(timezone.utc), ecr=clients.ecr, seen=state.seen,
                                    task_windows=failure_windows(failures))
        findings.diagnoses = diagnose_all(failures, evidence)
        findings.stopped_task_ids = frozenset(task.task_id for task in evidence.stopped_tasks)
    return findings


def _window_of(hint: dict[str, Any]) -> tuple[datetime, datetime] | None:
    ran = hint.get("ran")
    if not (isinstance(ran, list) and len(ran) == 2 and all(isinstance(t, (int, float)) for t in ran)):
        return None
    return (datetime.fromtimestamp(ran[0], timezone.utc), datetime.fromtimestamp(ran[1], timezone.utc))


def _task_definition_of(clients: Any, state: RunState, cluster: str, service: str) -> dict[str, Any] | None:
    """The PRIMARY deployment's task definition (also when the wait ended before settling)."""
    arn = state.deployment.task_definition_arn if state.deployment else None
    if arn is None:
        if state.outcome and state.outcome["exit_code"] == 6 and state.outcome["kind"] != "deadline":
            return None
        services = clients.ecs.describe_services(cluster=cluster, services=[service]).get("services", [])
        primary = next((d for d in services[0].get("deployments", []) if d.get("status") == "PRIMARY"), None) \
            if services else None
        arn = primary["taskDefinition"] if primary else None
    if arn is None:
        return None
    return clients.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]


def _container_of(definition: dict[str, Any], resolved: SmokeConfig) -> str | None:
    """The container the tests talk to, by the same rule discovery uses."""
    try:
        return choose_container(definition, resolved.ecs_container, resolved.target_port).name
    except HarnessOutcome:
        return None


def _probe_health_check_path(definition: dict[str, Any], container: str | None, state: RunState) -> dict[str, int]:
    """Ask one live task for the path its own health check probes (a 404 there restarts tasks)."""
    import httpx

    path = health_check_path(definition, container)
    targets = state.targets
    if not path or not targets:
        return {}
    if path == state.health_path and not state.outcome:
        return {path: 200}  # the wait heard every target answer it on consecutive polls
    try:
        return {path: httpx.get(targets[0].base_url + path, timeout=3.0).status_code}
    except httpx.HTTPError:
        return {}


def _common_digest(targets: list[Any]) -> str | None:
    digests = {t.image_digest for t in targets if t.image_digest}
    return digests.pop() if len(digests) == 1 else None


def append_timeline(summary_path: Path, events: list[timelines.TimelineEvent], registry: SecretRegistry,
                    step_summary: str | None) -> str:
    """Append the timeline (a Mermaid gantt) to summary.md and the step summary; return what was appended."""
    block = scrub_patterns(registry.redact(timelines.summary_section(events)))
    if not block:
        return ""
    with open(summary_path, "a", encoding="utf-8") as out:
        out.write(block)
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as out:
            out.write(block)
    return block


def _timeline_title(verdict: verdicts.Verdict) -> str:
    target = verdict["target"]
    return (f"{target.get('service') or '?'}, deployment {target.get('deployment_id') or '?'}: "
            f"{verdict['verdict'].upper()} (exit {verdict['exit_code']})")


def write_allure_extras(allure_dir: Path, verdict: verdicts.Verdict, targets: list[Any]) -> None:
    """environment.properties and (in GitHub Actions) executor.json; controller only."""
    allure_dir.mkdir(parents=True, exist_ok=True)
    target = verdict["target"]
    environment = {
        "region": target.get("region"), "cluster": target.get("cluster"), "service": target.get("service"),
        "deployment_id": target.get("deployment_id"), "task_definition": target.get("task_definition"),
        "image_digest": target.get("image_digest"), "targets": ", ".join(t.base_url for t in targets),
        "verdict": verdict["verdict"],
    }
    lines = [f"{key}={_escape_property(str(value))}" for key, value in environment.items() if value]
    (allure_dir / "environment.properties").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        server, repo, run = (os.environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
        executor = {"name": "GitHub Actions", "type": "github", "buildName": f"{repo} run {run}",
                    "buildUrl": f"{server}/{repo}/actions/runs/{run}", "reportName": "CivicForge smoke"}
        (allure_dir / "executor.json").write_text(json.dumps(executor, indent=2), encoding="utf-8")


def _escape_property(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", " ").replace(":", "\\:").replace("=", "\\=")


def label_allure_failures(allure_dir: Path, verdict: verdicts.Verdict, registry: SecretRegistry,
                          total_tasks: int = 0) -> None:
    """Each failed result gets its cause first (label, message, description, links); quiet set-up fixtures go.

    The ``smoke_category`` label is what the Allure 3 categories (allurerc.mjs) match on.
    """
    merged = causes(registry.redact_obj(verdict))
    by_task = {task_id: cause for cause in merged for task_id in cause.task_ids}
    general = next((cause for cause in merged if not cause.task_ids), None)
    for path in allure_dir.glob(f"*{RESULT_SUFFIX}"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("status") not in ("failed", "broken"):
            continue
        task_id = next((label["value"] for label in data.get("labels", []) if label.get("name") == TASK_LABEL), None)
        cause = (by_task.get(task_id) if task_id else None) or general
        if cause is not None:
            label_failed_result(data, cause, total_tasks, registry.redact(last_exchange(data, allure_dir)))
            path.write_text(json.dumps(data), encoding="utf-8")
    for path in allure_dir.glob(f"*{CONTAINER_SUFFIX}"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if trim_quiet_fixtures(data):
            path.write_text(json.dumps(data), encoding="utf-8")


def scrub_tree(folder: Path, registry: SecretRegistry) -> None:
    """Replace every registered secret in every text file under ``folder``."""
    if not len(registry) or not folder.exists():
        return
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        clean = registry.redact(text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")
