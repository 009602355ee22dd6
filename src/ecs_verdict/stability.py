"""Wait until a deploy is really done, and stop at once when it cannot succeed.

The runbook's ``aws ecs wait services-stable`` polls every 15 s for up to 10 min and
calls a circuit-breaker rollback "stable". Here *stable* means: one deployment left,
the PRIMARY, rollout COMPLETED (where ECS reports it), running == desired, every
task of that deployment RUNNING (and HEALTHY where a health check exists), and every
target answering the health path with 200 on ``consecutive_ok`` polls in a row.

The wait ends early with ``DeployFailed`` on a rollback, on tasks that keep stopping
(or any "exec format error"), on a health path answering 404 while the server is up,
and on an image or task-definition mismatch. A passed deadline is ``CouldNotVerify``
carrying the last observed state.

A task seen RUNNING without its address is not an answer: ECS releases a stopping task's
IP (or deletes its ENI) while describe_tasks may still show it RUNNING, and a slow runner
lands its lookup in that gap. The wait reads the tasks afresh and looks again until the
task is seen stopped (its stop reason decides) or gets its address; only a task still
RUNNING without one at the deadline is ``no_public_ip``/``no_private_ip``. A service with
``assignPublicIp: DISABLED`` asked for public addresses is named at once: a setting, not a moment.

Call budget: a full poll is describe_services + list_tasks + describe_tasks (3 calls;
describe_tasks takes 100 tasks a call, so 24 tasks cost the same as 2), plus
list_tasks(STOPPED) only when ECS counted a failed task or fewer tasks run, plus one EC2
call for the ENIs not looked up before (one call for all of them). A full poll happens
only when describe_services shows a change (deployments, counts, a new event) or the
last one is 3 s old, and mid-roll-out (a change on every look) at most every 2 s unless
describe_services shows a state that may be settled; every other poll is that one
describe_services call. Polls back off from 0.25 s to a
0.6–0.75 s gap, so a long wait costs about 2 AWS calls a second, and the moment ECS
settles is seen within 0.75 s. The health streak that follows is HTTP only, 0.25 s
apart, every task at once.

Behind a load balancer (the service's ``loadBalancers`` name target groups), settled also
means every new task ``healthy`` in its target groups and the old targets draining
(``ecs_verdict.target_health``): DescribeTargetGroups once, then one DescribeTargetHealth
per target group per read, reads at least 2 s apart and none once the task set was judged
serving, so a wait on targets adds at most half a call a second per target group.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from tenacity import RetryCallState, RetryError, Retrying

from ecs_verdict.aws import AwsClients
from ecs_verdict.blue_green import green_not_settled, paused_hook_note
from ecs_verdict.containers import ContainerChoice, choose_container
from ecs_verdict.deployment import Address, Deployment, ServiceSelector, TaskDefinitionRef
from ecs_verdict.discovery import (Addressing, ServiceObserver, address_tasks, deployment_from, no_address,
                                    public_ip_disabled)
from ecs_verdict.errors import CouldNotVerify, DeployFailed, HarnessOutcome
from ecs_verdict.http import keepalive_limits
from ecs_verdict.health_probe import (DEFAULT_HEALTH_PATH, HEALTH_PATH_FROM_DEFAULT, HEALTH_PATH_FROM_TASK_DEFINITION,
                                       HEALTH_TIMEOUT, get_health_all, health_path_missing)
from ecs_verdict.kinds import Kind
from ecs_verdict.observation import DeploymentInfo, Observation, TaskInfo
from ecs_verdict.rollout_checks import (check_image, check_rollback, check_tasks_stopping, ready_primary_tasks,
                                         require_desired, require_primary, stop_evidence, tasks_not_ready)
from ecs_verdict.target_health import (READ_GAP_S, TargetHealthReader, TargetJudgement, judge_targets,
                                       service_load_balancers)
from ecs_verdict.targets import Target
from ecs_verdict.timeline import TimelineRecorder

DEFAULT_TIMEOUT_S = 600.0
FIRST_POLL_GAP_S = 0.25
# Most polls are one describe_services call (the tasks are listed again only when the
# service changed, or every FULL_POLL_EVERY_S): 0.75 s apart that stays near 2 calls a second.
MAX_POLL_GAP_S = 0.75
# Mid-roll-out every look shows a change; the tasks are read again at most this often then (a look
# that may show the end reads them at once).
FULL_POLL_GAP_S = 2.0
HEALTH_POLL_GAP_S = 0.25  # once ECS has settled, the rest of the health streak is HTTP only
# An AWS endpoint that has not answered once in this run is a wrong endpoint or no network, not a
# blip: after this many polls (each already botocore's own retries) the run says so, not at the deadline.
MAX_POLLS_NEVER_ANSWERED = 2
AWS_TRANSIENT_KINDS = frozenset({Kind.AWS_UNREACHABLE, Kind.THROTTLED, Kind.AWS_ERROR})


@dataclass(frozen=True, slots=True)
class Progress:
    """One line of what the wait sees, reported before each sleep."""

    elapsed_s: float
    running: int
    desired: int
    rollout_state: str | None
    healthy_tasks: int
    total_tasks: int
    note: str

    def describe(self) -> str:
        """``[  4.2s] rollout IN_PROGRESS, running 1/2, healthy 1/2: <note>``."""
        return (
            f"[{self.elapsed_s:6.1f}s] rollout {self.rollout_state or 'unknown'}, running {self.running}/{self.desired}, "
            f"healthy {self.healthy_tasks}/{self.total_tasks}: {self.note}"
        )


@dataclass(frozen=True, slots=True)
class StableResult:
    """A settled deployment with how long and how many calls it took."""

    deployment: Deployment
    elapsed_s: float
    aws_settled_after_s: float
    polls: int  # full polls (describe_services + tasks)
    aws_calls: int
    notes: tuple[str, ...] = ()
    light_polls: int = 0  # polls that were one describe_services call
    health_path: str = DEFAULT_HEALTH_PATH
    health_path_source: str = HEALTH_PATH_FROM_DEFAULT
    # Target group ARN -> the load balancers forwarding to it, as the target-health wait read them (none: no wait).
    load_balancers_of: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class NotSettled(Exception):
    """The deployment is still moving; the note says on what (retried until the deadline)."""


class AddressPending(NotSettled):
    """A ready task was seen RUNNING without the address asked for: its fate is not known yet.

    ECS releases a stopping task's address (and deletes its ENI) while describe_tasks may
    still show it RUNNING, so one look proves nothing, however fast or slow the machine.
    The wait looks again until the task is seen stopped (its reason then decides) or gets
    its address; only a task still RUNNING without one at the deadline is could-not-verify.
    """

    def __init__(self, gap: CouldNotVerify, looks: int) -> None:
        super().__init__(f"{gap} (seen RUNNING without it on {looks} look(s); looking again)")
        self.gap = gap
        self.looks = looks


class TargetsNotServing(NotSettled):
    """ECS has settled but the load balancer does not serve every new task yet (see ``ecs_verdict.target_health``).

    ``unhealthy``: a target ELB calls unhealthy, not decided yet; the finding if the deadline comes first.
    """

    def __init__(self, waiting_on: str, unhealthy: DeployFailed | None) -> None:
        super().__init__(waiting_on)
        self.unhealthy = unhealthy


def poll_gap(attempt: int, rng: random.Random) -> float:
    """Seconds before poll ``attempt + 1``: 0.25, 0.5, then 0.75 (each -20 % jitter)."""
    base = min(MAX_POLL_GAP_S, FIRST_POLL_GAP_S * 2 ** max(0, attempt - 1))
    return base * rng.uniform(0.8, 1.0)


def is_retryable(error: BaseException) -> bool:
    """Still moving, or AWS throttling / 5xx / no answer (reset, timeout) that outlived botocore's retries."""
    if isinstance(error, NotSettled):
        return True
    return isinstance(error, CouldNotVerify) and bool(error.details.get("transient"))


def is_aws_hiccup(error: BaseException | None) -> bool:
    """A transient AWS failure (not the deployment still moving)."""
    return isinstance(error, CouldNotVerify) and error.kind in AWS_TRANSIENT_KINDS and is_retryable(error)


def should_poll_again(clients: AwsClients) -> Callable[[RetryCallState], bool]:
    """tenacity's retry test: retryable, except an endpoint that never answered, past a second try."""

    def decide(retry_state: RetryCallState) -> bool:
        error = retry_state.outcome.exception() if retry_state.outcome is not None else None
        if error is None or not is_retryable(error):
            return False
        never_answered = isinstance(error, CouldNotVerify) and error.kind is Kind.AWS_UNREACHABLE \
            and clients.calls.answered() == 0
        return not never_answered or retry_state.attempt_number < MAX_POLLS_NEVER_ANSWERED

    return decide


@dataclass(frozen=True, slots=True)
class WaitOptions:
    """What the wait is asked for, already parsed (``ecs_verdict.settings`` validates each option once)."""

    health_path: str | None = None  # None: the path the task definition's health check probes
    expect_task_definition: TaskDefinitionRef | None = None
    expect_image_digest: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    consecutive_ok: int = 2
    test_during_bake: bool = False
    # Blue/green (--continue-deployment): settled means paused at a PAUSE hook with green's tasks ready.
    at_paused_hook: bool = False


@dataclass(slots=True)
class _Wait:
    """The state of one wait between polls (not shared, not a value)."""

    observer: ServiceObserver
    selector: ServiceSelector
    options: WaitOptions
    http: httpx.Client
    clock: Callable[[], float]
    started: float
    started_wall: datetime
    ok_streak: int = 0
    aws_settled_at: float | None = None
    last: Observation | None = None
    last_note: str = "no answer from AWS yet"
    notes: list[str] = field(default_factory=list)
    aws_hiccups: dict[str, int] = field(default_factory=dict)  # transient AWS failure -> polls it cost
    stopped_before: frozenset[str] | None = None
    _targets: tuple[frozenset[str], tuple[Target, ...]] | None = None
    # Tasks ECS has not called healthy yet: (set, full poll of an incomplete lookup or None, targets).
    _starting: tuple[frozenset[str], int | None, tuple[Target, ...]] | None = None
    _choice: ContainerChoice | None = None
    addresses: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # by ENI, looked up once
    timeline: TimelineRecorder | None = None  # what each poll showed, as change events (the run's timeline)
    # Ready tasks seen RUNNING without their address: how many fresh looks showed that (see AddressPending).
    unaddressed: dict[str, int] = field(default_factory=dict)
    _look_again: bool = False  # a task was first seen without its address: read the tasks afresh next poll
    _pending: tuple[frozenset[str], int, AddressPending] | None = None  # (ready set, full poll, outcome)
    # The load balancer's view (a service with loadBalancers): read at most every READ_GAP_S.
    _target_reader: TargetHealthReader | None = None
    _targets_serving: tuple[frozenset[str], bool] | None = None  # (ready task set, old drained) judged serving
    _target_read: tuple[float, tuple[frozenset[str], bool], TargetJudgement] | None = None
    _unhealthy_since: dict[str, float] = field(default_factory=dict)

    def elapsed(self) -> float:
        return self.clock() - self.started

    def load_balancers_of(self) -> dict[str, tuple[str, ...]]:
        return self._target_reader.load_balancers_of if self._target_reader is not None else {}

    @property
    def in_health_phase(self) -> bool:
        """AWS has settled and the targets answered: only the health streak is left to finish."""
        return self.aws_settled_at is not None and 0 < self.ok_streak < self.options.consecutive_ok

    def attempt(self) -> Deployment:
        """One poll: a settled Deployment, or NotSettled / DeployFailed / CouldNotVerify."""
        if self.in_health_phase and self.last is not None and self._targets is not None:
            # ECS said settled a moment ago; the rest of the streak is HTTP only.
            return self._finish(self.last, self._targets[1])
        # A light poll reuses the last task list: useless for learning what became of an addressless task.
        observation = self.observer.poll(light_if_unchanged=not self._look_again, full_gap_s=FULL_POLL_GAP_S)
        self._look_again = False
        self.last = observation
        if self.timeline is not None:
            self.timeline.observe(observation)
        if self.stopped_before is None:
            self.stopped_before = frozenset(task.task_arn for task in observation.stopped_tasks)
        require_desired(observation)
        primary = require_primary(observation)
        check_rollback(observation, primary, self.options.expect_task_definition)
        choice = choose_container(
            self.observer.task_definition(primary.task_definition_arn), self.selector.container, self.selector.port
        )
        try:
            check_tasks_stopping(observation, primary, self.stopped_before, self.started_wall)
        except DeployFailed:
            if choice.task_has_health_check:
                # Tasks that keep stopping over a health path the build lacks: name that cause.
                self._probe_starting(observation, choice)
            raise
        if self.options.at_paused_hook:
            waiting_on = (paused_hook_note(observation.record, self.observer.records.unavailable)
                          or green_not_settled(observation, primary, needs_health=choice.task_has_health_check))
        else:
            waiting_on = aws_not_settled(observation, primary, needs_health=choice.task_has_health_check,
                                         bake_is_settled=self.options.test_during_bake)
        if waiting_on:
            self.aws_settled_at = None
            ready = ready_primary_tasks(observation, needs_health=choice.task_has_health_check)
            if ready and len(ready) >= primary.desired:
                # The new tasks are up while ECS still drains the old ones: start their health
                # streak now, so the run can begin as soon as ECS says settled.
                self._choice = choice
                try:
                    # ECS rolls on only once the load balancer calls them healthy: an unhealthy one is the finding.
                    self._require_targets_serving(observation, choice, old_must_drain=False)
                except TargetsNotServing as targets:
                    raise TargetsNotServing(f"{waiting_on}; {targets}", targets.unhealthy) from None
                self._check_health(self._resolve(observation, choice), choice)
            else:
                self.ok_streak = 0
                if choice.task_has_health_check:
                    self._probe_starting(observation, choice)
            raise NotSettled(waiting_on)
        # Blue/green paused at a hook: blue serves production by design, so its targets stay registered.
        self._require_targets_serving(observation, choice, old_must_drain=not self.options.at_paused_hook)
        if self.aws_settled_at is None:
            self.aws_settled_at = self.elapsed()
        self._choice = choice
        return self._finish(observation, self._resolve(observation, choice))

    def _require_targets_serving(self, observation: Observation, choice: ContainerChoice, *,
                                 old_must_drain: bool) -> None:
        """With a load balancer, every new task ``healthy`` in its target groups (and no old target registered).

        Raises ``TargetsNotServing`` (wait on) or the unhealthy target's ``DeployFailed``.
        """
        balancers = service_load_balancers(self.observer.last_service)
        if not balancers:
            return
        ready = ready_primary_tasks(observation, needs_health=choice.task_has_health_check)
        key = (frozenset(task.task_arn for task in ready), old_must_drain)
        if self._targets_serving == key:
            return  # judged serving: the health streak that follows is HTTP only
        now = self.clock()
        if self._target_read is not None and self._target_read[1] == key and now - self._target_read[0] < READ_GAP_S:
            judgement = self._target_read[2]  # ELB re-judges every interval (5 s at least): no new read yet
        else:
            self._target_reader = self._target_reader or TargetHealthReader(self.observer.clients)
            reading = self._target_reader.read(arn for balancer in balancers for arn in balancer.target_group_arns)
            judgement = judge_targets(reading, balancers, ready, container_health_path=choice.health_check_path,
                                      unhealthy_since=self._unhealthy_since, now=now, old_must_drain=old_must_drain)
            self._target_read = (now, key, judgement)
        if judgement.finding is not None:
            raise judgement.finding
        if judgement.waiting_on:
            raise TargetsNotServing(judgement.waiting_on, judgement.unhealthy)
        self._targets_serving = key

    def _finish(self, observation: Observation, targets: tuple[Target, ...]) -> Deployment:
        assert self._choice is not None
        self._check_health(targets, self._choice)
        if self.ok_streak < self.options.consecutive_ok:
            raise NotSettled(f"health path answered on {self.ok_streak}/{self.options.consecutive_ok} polls in a row")
        check_image(targets, self.options.expect_image_digest, observation.record)
        return deployment_from(observation, self._choice, targets, self.selector.address)

    def _resolve(self, observation: Observation, choice: ContainerChoice) -> tuple[Target, ...]:
        ready = ready_primary_tasks(observation, needs_health=choice.task_has_health_check)
        arns = frozenset(task.task_arn for task in ready)
        if self._targets is None or self._targets[0] != arns:
            # A new task set means new IPs: look the ENIs up once for it.
            self.ok_streak = 0
            if self._pending is not None and self._pending[:2] == (arns, self.observer.polls):
                raise self._pending[2]  # no fresh look at the tasks since: EC2 would say the same
            addressing = self._address(ready, choice)
            if addressing.missing:
                raise self._address_pending(addressing.missing[0], arns)
            self._pending = None
            self.unaddressed.clear()
            self._targets = (arns, addressing.targets)
        return self._targets[1]

    def _address(self, tasks: tuple[TaskInfo, ...], choice: ContainerChoice) -> Addressing:
        return address_tasks(self.observer.clients, tasks, container=choice.name, port=choice.port,
                             address=self.selector.address, known_addresses=self.addresses)

    def _count_unaddressed(self, gaps: tuple[CouldNotVerify, ...]) -> None:
        """One more fresh look showed these tasks without their address; a first sighting asks for a fresh look."""
        for gap in gaps:
            task_id = str(gap.details.get("task_id", ""))
            self._look_again = self._look_again or task_id not in self.unaddressed
            self.unaddressed[task_id] = self.unaddressed.get(task_id, 0) + 1

    def _address_pending(self, gap: CouldNotVerify, arns: frozenset[str]) -> AddressPending:
        """Count one more fresh look at a task without its address; a setting that rules one out ends the wait."""
        task_id = str(gap.details.get("task_id", ""))
        if self.selector.address == "public" and public_ip_disabled(self.observer.last_service):
            task = next((t for t in self.last.tasks if t.task_id == task_id), None) if self.last else None
            if task is not None:
                raise no_address(task, "public", why="; the service's assignPublicIp is DISABLED") from gap
            raise gap
        self._count_unaddressed((gap,))
        pending = AddressPending(gap, self.unaddressed[task_id])
        self._pending = (arns, self.observer.polls, pending)
        return pending

    def health_path(self, choice: ContainerChoice | None = None) -> tuple[str, str]:
        """(path, where it came from): the one asked for, else the task definition's, else the default."""
        if self.options.health_path is not None:
            return self.options.health_path, "option"
        choice = choice or self._choice
        probed = choice.health_check_path if choice is not None else None
        if probed is not None:
            return probed, HEALTH_PATH_FROM_TASK_DEFINITION
        return DEFAULT_HEALTH_PATH, HEALTH_PATH_FROM_DEFAULT

    def _probe_starting(self, observation: Observation, choice: ContainerChoice) -> None:
        """Ask RUNNING tasks that ECS has not called healthy yet for the health path.

        A 404 there while the server is up is the health-path mismatch (runbook lesson 1):
        ECS would go on replacing such tasks until the deadline, so say it now. Anything
        else (refused, 5xx, 200) is left to ECS's own health check.
        """
        starting = tuple(task for task in observation.live_tasks_of(observation.primary)  # type: ignore[arg-type]
                         if task.last_status == "RUNNING" and task.health_status != "HEALTHY" and task.eni_id)
        arns = frozenset(task.task_arn for task in starting)
        if not arns:
            return
        cached = self._starting
        fresh = cached is None or cached[0] != arns or (cached[1] is not None and cached[1] != self.observer.polls)
        if fresh:
            # A starting task without its address is probed once it has one; ECS decides its fate meanwhile.
            addressing = self._address(starting, choice)
            self._count_unaddressed(addressing.missing)
            self._starting = (arns, self.observer.polls if addressing.missing else None, addressing.targets)
        assert self._starting is not None
        path, source = self.health_path(choice)
        for answer in get_health_all(self.http, self._starting[2], path):
            if answer.status == 404:
                raise health_path_missing(self.http, answer, path, choice, source=source)

    def _check_health(self, targets: tuple[Target, ...], choice: ContainerChoice) -> None:
        path, source = self.health_path(choice)
        answers = get_health_all(self.http, targets, path)
        for answer in answers:
            if answer.status == 404:
                raise health_path_missing(self.http, answer, path, choice, source=source)
        waiting = [answer for answer in answers if answer.transient]
        if waiting:
            self.ok_streak = 0
            self._record_streak()
            raise NotSettled("waiting for the health path: " + "; ".join(answer.describe() for answer in waiting))
        for answer in answers:
            if answer.status != 200:
                # A 500 is a finding for the smoke tests to report, not a reason to wait.
                note = f"{answer.describe()} (not 200; the smoke tests will report it)"
                if note not in self.notes:
                    self.notes.append(note)
        self.ok_streak += 1
        self._record_streak()

    def _record_streak(self) -> None:
        if self.timeline is not None:
            self.timeline.health(time.time(), self.ok_streak, self.options.consecutive_ok)

    def progress(self) -> Progress:
        observation = self.last
        if observation is None:
            return Progress(self.elapsed(), 0, 0, None, 0, 0, self.last_note)
        primary = observation.primary
        own = observation.live_tasks_of(primary) if primary else ()
        healthy = sum(1 for task in own if task.last_status == "RUNNING" and task.health_status in ("HEALTHY", None))
        return Progress(
            elapsed_s=self.elapsed(),
            running=observation.running,
            desired=observation.desired,
            rollout_state=primary.rollout_state if primary else None,
            healthy_tasks=healthy,
            total_tasks=primary.desired if primary else observation.desired,
            note=self.last_note,
        )


def aws_not_settled(observation: Observation, primary: DeploymentInfo, *, needs_health: bool,
                    bake_is_settled: bool = False) -> str:
    """What ECS still shows as moving ("" when the AWS side has settled).

    ``bake_is_settled`` (a canary): a rollout still IN_PROGRESS whose old deployments
    run no task is ECS baking the new one while its deployment alarms watch, and the
    canary is what those alarms listen to: it tests the new tasks now instead of
    waiting for a COMPLETED that waits for it.
    """
    others = [item for item in observation.deployments if item is not primary]
    baking = bake_is_settled and primary.rollout_state == "IN_PROGRESS" and all(
        item.running == 0 for item in others)
    if others and not baking:
        return "old deployment still listed: " + "; ".join(item.describe() for item in others)
    if primary.rollout_state not in (None, "COMPLETED") and not baking:
        return f"rollout {primary.rollout_state}"
    if observation.running != observation.desired:
        return f"running {observation.running} of {observation.desired} tasks"
    return tasks_not_ready(observation, primary, desired=observation.desired, needs_health=needs_health)


def wait_until_stable(
    clients: AwsClients,
    *,
    cluster: str,
    service: str,
    health_path: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    expect_task_definition: TaskDefinitionRef | None = None,
    expect_image_digest: str | None = None,
    address: Address = "public",
    container: str | None = None,
    port: int | None = None,
    http: httpx.Client | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    consecutive_ok: int = 2,
    rng: random.Random | None = None,
    observer: ServiceObserver | None = None,
    test_during_bake: bool = False,
    at_paused_hook: bool = False,
    timeline: TimelineRecorder | None = None,
) -> StableResult:
    """``wait_for_deployment`` with the selector and options spelled out (scripts, benches, tests)."""
    return wait_for_deployment(
        clients, ServiceSelector(cluster, service, container, port, address),
        WaitOptions(health_path=health_path, expect_task_definition=expect_task_definition,
                    expect_image_digest=expect_image_digest, timeout_s=timeout_s, consecutive_ok=consecutive_ok,
                    test_during_bake=test_during_bake, at_paused_hook=at_paused_hook),
        http=http, on_progress=on_progress, sleep=sleep, clock=clock, rng=rng, observer=observer, timeline=timeline)


def wait_for_deployment(
    clients: AwsClients,
    selector: ServiceSelector,
    options: WaitOptions,
    *,
    http: httpx.Client | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    observer: ServiceObserver | None = None,
    timeline: TimelineRecorder | None = None,
) -> StableResult:
    """Poll until the service's PRIMARY deployment is settled and answers; see the module docstring.

    ``timeline`` gets each observed change (also when the wait raises).
    Raises ``DeployFailed`` as soon as the deploy cannot succeed, ``CouldNotVerify``
    when AWS cannot be read or the deadline passes (with the last observed state).
    The options come parsed (``ecs_verdict.settings`` holds the one rule per option).
    """
    if options.consecutive_ok < 1:
        raise ValueError(f"consecutive_ok must be at least 1, got {options.consecutive_ok}")
    timeout_s = options.timeout_s
    own_http = http is None
    client = http if http is not None else httpx.Client(timeout=HEALTH_TIMEOUT, follow_redirects=False,
                                                        limits=keepalive_limits())
    calls_before = clients.calls.total()
    start = clock()
    # A caller's own observer keeps what AWS answered after the wait, also when it raised.
    observer = observer or ServiceObserver(clients, selector.cluster, selector.service, clock=clock)
    observer.read_records = observer.read_records or options.at_paused_hook  # the hooks are only in the record
    state = _Wait(observer, selector, options, client, clock, start, datetime.now().astimezone(), timeline=timeline)
    deadline = start + timeout_s
    jitter = rng or random.Random()

    def wait_strategy(retry_state: RetryCallState) -> float:
        gap = HEALTH_POLL_GAP_S if state.in_health_phase else poll_gap(retry_state.attempt_number, jitter)
        return max(0.0, min(gap, deadline - clock()))

    def before_sleep(retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        state.last_note = str(error) if error is not None else state.last_note
        if is_aws_hiccup(error):
            name = str(error.details.get("error") or error.details.get("code") or error.kind)  # type: ignore[union-attr]
            state.aws_hiccups[name] = state.aws_hiccups.get(name, 0) + 1
        if on_progress is not None:
            on_progress(state.progress())

    retrying = Retrying(
        sleep=sleep,
        stop=lambda _retry_state: clock() >= deadline,
        wait=wait_strategy,
        retry=should_poll_again(clients),
        before_sleep=before_sleep,
    )
    try:
        deployment = retrying(state.attempt)
    except RetryError as error:
        last = error.last_attempt.exception() if error.last_attempt.failed else None
        raise deadline_passed(state, timeout_s, last) from None
    finally:
        if own_http:
            client.close()
    if state.aws_hiccups:
        state.notes.append(aws_hiccups_note(state.aws_hiccups))
    return StableResult(
        deployment=deployment,
        elapsed_s=state.elapsed(),
        aws_settled_after_s=state.aws_settled_at if state.aws_settled_at is not None else state.elapsed(),
        polls=state.observer.polls,
        light_polls=state.observer.light_polls,
        aws_calls=clients.calls.total() - calls_before,
        notes=tuple(state.notes),
        health_path=state.health_path()[0],
        health_path_source=state.health_path()[1],
        load_balancers_of=state.load_balancers_of(),
    )


def aws_hiccups_note(hiccups: dict[str, int]) -> str:
    """``AWS failed 3 poll(s) transiently (ConnectionClosedError x2, ThrottlingException x1); the wait polled again``."""
    counts = ", ".join(f"{name} x{count}" for name, count in sorted(hiccups.items(), key=lambda item: -item[1]))
    return f"AWS failed {sum(hiccups.values())} poll(s) transiently ({counts}); the wait polled again"


def deadline_passed(state: _Wait, timeout_s: float, last: BaseException | None) -> HarnessOutcome:
    """The deadline outcome, carrying the last observed state.

    A target the load balancer still called unhealthy is that finding (the service's doing: exit 1);
    one still ``initial`` is "not stable" like any other wait that ran out.

    AWS still failing when the deadline came is AWS's could-not-verify (its own category,
    the last error named), not the deployment's "not stable"; a task still without its
    address is the address error.
    """
    if isinstance(last, AddressPending):
        return address_never_came(state, timeout_s, last)
    if isinstance(last, TargetsNotServing) and last.unhealthy is not None:
        finding = last.unhealthy
        finding.evidence.append(f"still unhealthy when the {timeout_s:.0f} s wait ended")
        return finding
    if is_aws_hiccup(last):
        assert isinstance(last, CouldNotVerify)
        evidence = [f"transient AWS failures during the wait: {aws_hiccups_note(state.aws_hiccups)}"]
        if state.last is not None:
            evidence.append(f"last seen: {state.last.describe()}")
        return CouldNotVerify(f"{last} (still failing when the {timeout_s:.0f} s wait ended)", kind=last.kind,
                              evidence=evidence, details={**last.details, "transient": False})
    waiting_on = str(last) if last is not None else state.last_note
    evidence = [f"waiting on: {waiting_on}"]
    if state.last is not None:
        evidence.append(f"last seen: {state.last.describe()}")
        evidence += stop_evidence(state.last.stopped_tasks, limit=3)
    return CouldNotVerify(
        f"deploy not stable after {timeout_s:.0f} s (deadline): {waiting_on}",
        kind=Kind.DEADLINE,
        evidence=evidence,
        details={"timeout_s": timeout_s, "polls": state.observer.polls},
    )


def address_never_came(state: _Wait, timeout_s: float, pending: AddressPending) -> CouldNotVerify:
    """A ready task still RUNNING without its address when the deadline passed: the address error, with the looks."""
    gap = pending.gap
    evidence = [f"seen RUNNING without it on {pending.looks} fresh look(s) at the tasks in {timeout_s:.0f} s"]
    if state.last is not None:
        evidence.append(f"last seen: {state.last.describe()}")
    return CouldNotVerify(
        f"{gap} (still so at the {timeout_s:.0f} s deadline)",
        kind=gap.kind,
        evidence=[*evidence, *gap.evidence],
        details={**gap.details, "looks": pending.looks, "timeout_s": timeout_s, "polls": state.observer.polls},
    )
