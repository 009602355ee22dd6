"""The run's steps after the checks, pytest-free: findings -> diagnosis -> verdict -> actions on the service.

The pytest layer calls these with typed values: the run's ``Settings``, the preflight's
``RunState``, the verdict rows (``CheckRecord``) and each failed check's ``CheckFailure``.
A ``CheckFailure`` stays a value within a process; it becomes JSON only where a report
crosses a process (an xdist worker, a forked lane: ``to_dict``/``from_dict``).

- :func:`analyse`: every failure diagnosed with the evidence AWS holds, and the task
  definition linted (also on a green run);
- :func:`conclude`: the verdict, then what the run does to the service
  (``--continue-deployment``, ``--on-fail rollback``), then the verdict with what was done.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import httpx

from ecs_verdict import verdict as verdicts
from ecs_verdict.aws import make_clients
from ecs_verdict.blue_green import CONTINUE, PausedHook, act_on_hook
from ecs_verdict.categories import Diagnosis
from ecs_verdict.console_links import ConsoleContext, awslogs_options, run_window
from ecs_verdict.containers import choose_container
from ecs_verdict.coverage import LeftOut, describe_left_out, skipped_checks
from ecs_verdict.deployment import TaskDefinitionRef
from ecs_verdict.diagnosis import Failure, diagnose_all, failure_windows
from ecs_verdict.errors import HarnessOutcome
from ecs_verdict.findings import ContractViolation
from ecs_verdict.http import NoAnswer, RetryCounts, describe_error
from ecs_verdict.kinds import Kind
from ecs_verdict.lint import health_check_path, lint_task_definition
from ecs_verdict.listeners import passed_at_every_task
from ecs_verdict.preflight import RunState, wait_options
from ecs_verdict.rollback import not_rolled_back, roll_back
from ecs_verdict.settings import Settings
from ecs_verdict.stability import StableResult, WaitOptions, wait_for_deployment
from ecs_verdict.suite import NO_SUITE, SuiteProfile

TEST_TRAFFIC_HOOKS = frozenset({"POST_TEST_TRAFFIC_SHIFT"})  # where the test listener first reaches green

# -- a failed check, as a value ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckFailure:
    """What a failed check tells diagnosis: its kind, the request it made, whether it was a security check.

    Built where the test failed (from its exception and last exchange); the report's
    collector adds the check's name, task and message.
    """

    kind: Kind = Kind.CHECK_FAILED
    security: bool = False
    violation: bool = False  # the service answered wrongly (an AssertionError), not a harness or set-up error
    status: int | None = None
    request: str | None = None  # "GET http://..."
    no_answer: str | None = None  # no HTTP answer after the client's retries: could not verify, never a finding
    ran: tuple[float, float] | None = None  # epoch seconds: the task's logs are read around this
    details: dict[str, Any] = field(default_factory=dict)
    check: str | None = None
    task_id: str | None = None
    message: str = ""
    deployment_check: bool = False
    category: str | None = None  # the suite cause the check named itself (its ContractViolation's)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind.parse(self.kind))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for a report crossing to another process."""
        return {"kind": str(self.kind), "security": self.security, "violation": self.violation,
                "status": self.status, "request": self.request, "no_answer": self.no_answer,
                "ran": list(self.ran) if self.ran else None, "details": self.details, "check": self.check,
                "task_id": self.task_id, "message": self.message, "deployment_check": self.deployment_check,
                "category": self.category}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckFailure:
        """Back from ``to_dict``; an unknown kind is a ``ValueError`` naming it."""
        ran = data.get("ran")
        return cls(kind=Kind.parse(data.get("kind") or Kind.CHECK_FAILED), security=bool(data.get("security")),
                   violation=bool(data.get("violation")), status=data.get("status"), request=data.get("request"),
                   no_answer=data.get("no_answer"), ran=(float(ran[0]), float(ran[1])) if ran else None,
                   details=dict(data.get("details") or {}), check=data.get("check"), task_id=data.get("task_id"),
                   message=str(data.get("message") or ""), deployment_check=bool(data.get("deployment_check")),
                   category=data.get("category"))

    def __str__(self) -> str:  # JUnit writes a report's properties with str()
        return json.dumps(self.to_dict())

    def failure(self, fallback_check: str) -> Failure:
        """The ``Failure`` diagnosis reads."""
        kind = Kind.NO_ANSWER if self.no_answer else self.kind
        details = {**{k: v for k, v in (("status", self.status), ("request", self.request)) if v is not None},
                   **self.details}
        window = None
        if self.ran is not None:
            window = (datetime.fromtimestamp(self.ran[0], timezone.utc), datetime.fromtimestamp(self.ran[1], timezone.utc))
        return Failure(kind=kind, check=self.check or fallback_check, task_id=self.task_id,
                       message=self.no_answer or self.message, security=self.security, details=details, window=window,
                       category=self.category)


def check_failure_of(error: BaseException | None, last_request: tuple[str, int] | None,
                     ran: tuple[float, float]) -> CheckFailure:
    """A failed check's ``CheckFailure``, from the exception it ended on and its last exchange (method+URL, status).

    ``failure_kind`` on the exception (a suite's violation) names what it proves beyond itself.
    """
    no_answer = None
    if isinstance(error, httpx.TransportError):
        # NoAnswer names its request and attempts; another transport error (a client of the suite's own) its type.
        no_answer = str(error) if isinstance(error, NoAnswer) else describe_error(error)
    request, status = last_request if last_request is not None else (None, None)
    if isinstance(error, NoAnswer):
        request, status = f"{error.method} {error.url}", None
    return CheckFailure(kind=Kind.parse(getattr(error, "failure_kind", None) or Kind.CHECK_FAILED),
                        security=bool(getattr(error, "security", False)), violation=isinstance(error, AssertionError),
                        status=status, request=request, no_answer=no_answer, ran=ran,
                        check=getattr(error, "check", None),
                        # The cause a failed check named itself: the harness's ContractViolation carries it.
                        category=error.category if isinstance(error, ContractViolation) else None)


def why_not_run(state: RunState, *, harness_failed: bool, read_only: bool, deployment_check: bool,
                writes: bool) -> str | None:
    """Why a check is left out of the run after the preflight (None: it runs); the report lists the reason."""
    if harness_failed:
        return "not run: the harness failed first"  # nothing the checks say would count
    if state.blocks_tests and not deployment_check:
        return "not run: the deployment failed"
    if state.could_not_verify:
        return "not run: the deployment could not be verified"
    if read_only and writes:
        return "skipped by --read-only (they write)"
    return None


# -- diagnosis --------------------------------------------------------------------------------------


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


def failures_of(state: RunState, failed_checks: dict[str, CheckFailure],
                checks: Sequence[verdicts.CheckRecord] = ()) -> list[Failure]:
    """The preflight's outcome (when the evidence must say why) and every failed check, as ``Failure`` values.

    A check that failed through a load balancer's listener but passed at every task is ``lb_routing``.
    """
    failures: list[Failure] = []
    outcome = state.outcome
    listeners = {listener.target_id: listener for listener in state.lb_listeners}
    task_ids = [target.task_id for target in state.targets]
    if outcome is not None and (not outcome.could_not_verify or outcome.kind is Kind.DEADLINE):
        # A failed deploy, or a wait that ran out: the evidence says why. Every other
        # could-not-verify outcome names its own cause (verdict.decide).
        failures.append(Failure(kind=outcome.kind, check="deployment", task_id=None, message=outcome.message,
                                details=dict(outcome.details)))
    for nodeid, failed in failed_checks.items():
        if outcome is not None and failed.deployment_check:
            continue  # the same failure as the preflight outcome above, already diagnosed
        failure = failed.failure(nodeid.split("::")[-1])
        listener = listeners.get(failure.task_id or "")
        if listener is not None:  # no task behind it: no log window, and a routing fault when the tasks pass
            routed = (failure.kind is not Kind.NO_ANSWER
                      and passed_at_every_task(failure.check, checks, task_ids))
            failure = replace(failure, window=None, kind=Kind.LB_ROUTING if routed else failure.kind,
                              details={**failure.details, "listener": listener.to_dict()} if routed
                              else failure.details)
        failures.append(failure)
    return failures


def analyse(settings: Settings, state: RunState, failed_checks: dict[str, CheckFailure],
            suite: SuiteProfile = NO_SUITE, checks: Sequence[verdicts.CheckRecord] = ()) -> RunFindings:
    """Diagnose every failure and lint the task definition (also on a green run)."""
    findings = RunFindings()
    failures = failures_of(state, failed_checks, checks)
    selector = settings.selector
    if selector is None:
        findings.diagnoses = diagnose_all(failures, suite=suite) if failures else []
        return findings
    try:
        clients = state.clients or make_clients(settings.aws_region)  # the preflight's, in the controller
        definition = state.task_definition or _task_definition_of(clients, state, selector.cluster, selector.service)
    except Exception as error:  # noqa: BLE001 - a report must still be written
        findings.notes.append(f"could not read the task definition for lint and diagnosis: {error}")
        findings.diagnoses = diagnose_all(failures, suite=suite) if failures else []
        return findings
    if definition is None:  # the service itself could not be read: nothing to lint or gather
        findings.diagnoses = diagnose_all(failures, suite=suite) if failures else []
        return findings
    container = (state.deployment.container if state.deployment else None) or _container_of(definition, settings)
    findings.task_definition, findings.container = definition, container
    findings.warnings = [w.message for w in lint_task_definition(
        definition, container=container, health_path_status=_probe_health_check_path(definition, container, state))]
    if failures:
        from ecs_verdict.evidence import collect_evidence  # a failing run's only: not paid by a green one

        # A listener is no task: ECS has no task, log stream or stop reason for it.
        listener_ids = {listener.target_id for listener in state.lb_listeners}
        task_ids = sorted(({f.task_id for f in failures if f.task_id} - listener_ids)
                          | {t.task_id for t in state.targets})
        evidence = collect_evidence(ecs=clients.ecs, logs=clients.logs, cluster=selector.cluster,
                                    service=selector.service, task_ids=task_ids, task_definition=definition,
                                    container=container or "", around=datetime.now(timezone.utc), ecr=clients.ecr,
                                    seen=state.seen, task_windows=failure_windows(failures))
        findings.diagnoses = diagnose_all(failures, evidence, suite)
        findings.stopped_task_ids = frozenset(task.task_id for task in evidence.stopped_tasks)
    return findings


def _task_definition_of(clients: Any, state: RunState, cluster: str, service: str) -> dict[str, Any] | None:
    """The PRIMARY deployment's task definition (also when the wait ended before settling)."""
    arn = state.deployment.task_definition_arn if state.deployment else None
    if arn is None:
        if state.outcome is not None and state.outcome.could_not_verify and state.outcome.kind is not Kind.DEADLINE:
            return None
        services = clients.ecs.describe_services(cluster=cluster, services=[service]).get("services", [])
        primary = next((d for d in services[0].get("deployments", []) if d.get("status") == "PRIMARY"), None) \
            if services else None
        arn = primary["taskDefinition"] if primary else None
    if arn is None:
        return None
    return clients.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]


def _container_of(definition: dict[str, Any], settings: Settings) -> str | None:
    """The container the tests talk to, by the same rule discovery uses."""
    try:
        return choose_container(definition, settings.ecs_container, settings.target_port).name
    except HarnessOutcome:
        return None


def _probe_health_check_path(definition: dict[str, Any], container: str | None, state: RunState) -> dict[str, int]:
    """Ask one live task for the path its own health check probes (a 404 there restarts tasks)."""
    path = health_check_path(definition, container)
    targets = state.targets
    if not path or not targets:
        return {}
    if path == state.health_path and state.outcome is None:
        return {path: 200}  # the wait heard every target answer it on consecutive polls
    try:
        return {path: httpx.get(targets[0].base_url + path, timeout=3.0).status_code}
    except httpx.HTTPError:
        return {}


# -- acting on the service ----------------------------------------------------------------------------


@dataclass
class ServiceActions:
    """What the run did to the service after its verdict: the verdict fields, notes, a refused continue."""

    fields: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    refused: str | None = None  # ECS refused to continue a paused deployment the gate passed


def acts_on_the_service(settings: Settings) -> bool:
    return settings.continue_deployment or settings.on_fail != "none"


def _unchecked_listener_notes(state: RunState, checks: list[verdicts.CheckRecord]) -> list[str]:
    """A listener no check went through: said, since the tasks' checks alone decide the verdict then."""
    if state.outcome is not None:
        return []
    checked = {check["task_id"] for check in checks if check["outcome"] != "skipped"}
    return [f"no check ran through the load balancer's {listener.describe()}: only read-only checks go through it "
            "(writes pin a task), and none was selected" for listener in state.lb_listeners
            if listener.target_id not in checked]


def act_on_the_service(settings: Settings, state: RunState, exit_code: int) -> ServiceActions:
    """``--continue-deployment``: act on the paused hook; ``--on-fail rollback``: roll a failed gate back."""
    done = ServiceActions()
    if settings.continue_deployment:
        if state.paused_hook is None:
            if exit_code == 1:
                done.notes.append("--continue-deployment: the deploy failed before it paused at a hook: ECS's own "
                                  "circuit breaker and the hook's timeout decide")
            return done
        hold = TEST_TRAFFIC_HOOKS if state.hold_for_test_listener else frozenset()  # for a run through the test listener
        gate = act_on_hook(state.clients or make_clients(settings.aws_region), PausedHook.from_dict(state.paused_hook),
                           exit_code, leave_paused_at=hold)
        done.fields["deployment_gate"] = gate.to_dict()
        done.notes += [action.describe() for action in gate.actions] + list(gate.notes)
        refused = gate.refused
        if refused is not None and refused.action == CONTINUE:
            done.refused = refused.describe()
    selector = settings.selector
    if settings.rolls_back_on_fail and selector is not None:
        line = not_rolled_back(exit_code)
        if line is not None:
            done.notes += [line] if line else []
            return done
        clients = state.clients or make_clients(settings.aws_region)
        options = wait_options(settings)

        def wait(expected: TaskDefinitionRef) -> StableResult:
            # The rolling wait, for the task definition rolled back to: not the blue/green pause, nor a bake.
            return wait_for_deployment(clients, selector, WaitOptions(
                health_path=options.health_path, expect_task_definition=expected, timeout_s=options.timeout_s))

        record = roll_back(clients, cluster=selector.cluster, service=selector.service, failed=state.deployment,
                           wait=wait)
        done.fields["rollback"] = record.to_dict()
        done.notes.append(record.describe())
    return done


# -- the verdict --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Conclusion:
    """The run's verdict and what it was made from (the report writers need both)."""

    verdict: verdicts.Verdict
    findings: RunFindings
    console: ConsoleContext


def conclude(settings: Settings, state: RunState, checks: list[verdicts.CheckRecord],
             failed_checks: dict[str, CheckFailure], *, left_out: list[LeftOut], interrupted: int | None,
             harness_error: str | None, retry_counts: RetryCounts | None,
             before_acting: Callable[[], None] = lambda: None, suite: SuiteProfile = NO_SUITE) -> Conclusion:
    """Diagnose, decide, act on the service (calling ``before_acting`` first), and build the verdict.

    ``interrupted``: the exit status of a run cut short (it proves nothing, whatever passed).
    """
    began = time.monotonic()
    try:
        findings = analyse(settings, state, failed_checks, suite, checks)
    except Exception as error:  # noqa: BLE001 - the verdict must be written whatever diagnosis hit
        findings = RunFindings(notes=[f"diagnosis failed ({type(error).__name__}: {error}); see the checks"])
    findings.duration_s = time.monotonic() - began
    task_ids = [target.task_id for target in state.targets]

    def decide(refused: str | None = None) -> verdicts.Decision:
        return verdicts.decide(
            checks, outcome=state.outcome, diagnoses=findings.diagnoses, lint_warnings=findings.warnings,
            strict_lint=settings.strict, interrupted=interrupted, internal_error=harness_error,
            deployment_action_refused=refused, task_ids=task_ids, left_out=left_out, suite=suite)

    decision = decide()
    # Once the verdict is known and before it is written: continue or roll back, and record what was done.
    if acts_on_the_service(settings):
        before_acting()
    actions = act_on_the_service(settings, state, decision.exit_code)
    if actions.refused is not None:
        decision = decide(actions.refused)
    started_at, duration_s = datetime.fromisoformat(state.started_at), time.monotonic() - state.started_monotonic
    console = console_context(settings, state, findings, started_at, duration_s)
    deployment, targets = state.deployment, state.targets
    retry_notes = [retry_counts.describe()] if retry_counts and (retry_counts.retries or retry_counts.unanswered) \
        else []
    left_out_notes = describe_left_out([*left_out, *skipped_checks(checks)]) if state.outcome is None else []
    verdict = verdicts.build_verdict(
        started_at=started_at,
        duration_s=duration_s,
        console=console,
        target=verdicts.TargetRecord(
            region=state.region,
            cluster=deployment.cluster if deployment else settings.ecs_cluster,
            service=deployment.service if deployment else settings.ecs_service,
            deployment_id=deployment.deployment_id if deployment else None,
            task_definition=deployment.task_definition_arn if deployment else None,
            image_digest=settings.expect_image_digest or _common_digest(targets),
        ),
        tasks=[verdicts.TaskRecord(task_id=t.task_id, ip=t.ip, image_digest=t.image_digest, started_at=t.started_at)
               for t in targets],
        checks=checks,
        decision=decision,
        warnings=[*findings.warnings,
                  *(f"note: {note}" for note in [*state.notes, *findings.notes, *actions.notes,
                                                 *retry_notes, *left_out_notes,
                                                 *_unchecked_listener_notes(state, checks)])],
    )
    verdict.update(actions.fields)  # type: ignore[typeddict-item]
    if state.listeners:
        verdict["listeners"] = list(state.listeners)  # type: ignore[typeddict-unknown-key]
    if settings.canary:
        from ecs_verdict.metrics import publish_verdict_metrics  # a canary's only: not paid by every run

        # After the verdict is final, before it is written: a failed publish is a warning in it, not a failure.
        verdict["warnings"] += publish_verdict_metrics(verdict, region=settings.aws_region,
                                                       namespace=settings.metrics_namespace,
                                                       environment=settings.environment)
    # Beyond the documented fields: how long diagnosis and lint took (bench/bench_diagnosis.py).
    verdict["diagnosis_s"] = round(findings.duration_s, 3)  # type: ignore[typeddict-unknown-key]
    if retry_counts is not None:  # every lane's and worker's HTTP retries, for machines (the note says it for people)
        verdict["http_retries"] = asdict(retry_counts)  # type: ignore[typeddict-unknown-key]
    return Conclusion(verdict, findings, console)


def fallback_verdict(settings: Settings, state: RunState, checks: list[verdicts.CheckRecord], error: str,
                     earlier: verdicts.Verdict | None, console: ConsoleContext | None) -> verdicts.Verdict:
    """After a harness error: the verdict so far (or the smallest honest one) turned to error, exit 6."""
    if earlier is not None:
        decision = verdicts.decide(earlier["checks"], diagnoses=earlier["diagnoses"], internal_error=error)
        return verdicts.with_decision(earlier, decision, console)
    return verdicts.build_verdict(
        started_at=datetime.fromisoformat(state.started_at),
        duration_s=time.monotonic() - state.started_monotonic,
        target=verdicts.TargetRecord(region=state.region, cluster=settings.ecs_cluster, service=settings.ecs_service,
                                     deployment_id=None, task_definition=None, image_digest=None),
        tasks=[], checks=checks, decision=verdicts.decide(checks, internal_error=error),
    )


def console_context(settings: Settings, state: RunState, findings: RunFindings,
                    started_at: datetime, duration_s: float) -> ConsoleContext:
    """What the console links need, from what the run already read (no AWS call)."""
    deployment = state.deployment
    container = (deployment.container if deployment else None) or findings.container or settings.ecs_container
    definition = state.task_definition or findings.task_definition
    group, prefix = awslogs_options(definition, container) if container else (None, None)
    raw_service = state.seen.service if state.seen is not None else None
    service_deployment = (raw_service or {}).get("currentServiceDeployment") or (state.paused_hook or {}).get(
        "service_deployment_arn")
    return ConsoleContext(
        region=state.region, cluster=deployment.cluster if deployment else settings.ecs_cluster,
        service=deployment.service if deployment else settings.ecs_service, log_group=group,
        log_stream_prefix=prefix, container=container, service_deployment_arn=service_deployment,
        stopped_task_ids=findings.stopped_task_ids,
        window=run_window(started_at, duration_s))


def _common_digest(targets: list[Any]) -> str | None:
    digests = {t.image_digest for t in targets if t.image_digest}
    return digests.pop() if len(digests) == 1 else None
