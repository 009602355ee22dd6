"""Gather the evidence a failed run needs, so nobody has to open the AWS console.

``collect_evidence`` takes boto3 clients (ECS, CloudWatch Logs, optionally ECR) and
returns one frozen ``Evidence``: each task's log lines around the failure, the
service's latest events and deployments, the tasks it stopped in the last hour
(with reasons and exit codes), the container health check, and image digests.

It never raises on an AWS error: diagnosis runs after something already went
wrong, and must not turn a failed run into a crash. Each error becomes a note.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ecs_verdict.lint import find_container, unwrap_task_definition

DEFAULT_LOG_WINDOW_S = 300
# Lines per task: one real FastAPI traceback is 73 lines, so 50 let one later, unrelated traceback
# hide the one that explained the failure. 500 hold several whole tracebacks, in one GetLogEvents call.
DEFAULT_MAX_LOG_LINES = 500
# A failing check's task is read up to this long after the check ended: its traceback is logged as
# it answers; anything much later (other tests' errors) is not its explanation. Covers clock skew too.
LOG_AFTER_FAILURE_S = 10
DEFAULT_MAX_SERVICE_EVENTS = 10
DEFAULT_STOPPED_LOOKBACK = timedelta(hours=1)
# Stopped tasks whose logs are also read: the newest few explain a crash loop.
DEFAULT_MAX_STOPPED_LOGS = 3
DESCRIBE_TASKS_BATCH = 100  # the ECS API limit

_AWS_ERRORS = (ClientError, BotoCoreError)


@dataclass(frozen=True, slots=True)
class ContainerExit:
    """Why one container of a stopped task ended."""

    name: str
    reason: str
    exit_code: int | None


@dataclass(frozen=True, slots=True)
class StoppedTask:
    """A task of the service that ECS stopped recently."""

    task_id: str
    stopped_reason: str
    stop_code: str
    stopped_at: datetime | None
    containers: tuple[ContainerExit, ...] = ()
    task_definition_arn: str = ""


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """The container health check from the task definition."""

    command: tuple[str, ...]
    interval: int | None
    retries: int | None
    start_period: int | None
    timeout: int | None = None

    def shell_text(self) -> str:
        """The command as people read it, e.g. ``CMD-SHELL curl -f http://...``."""
        return " ".join(self.command)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything gathered about one failure; empty parts mean nothing was found (see ``notes``)."""

    logs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    service_events: tuple[str, ...] = ()
    deployments: tuple[str, ...] = ()
    stopped_tasks: tuple[StoppedTask, ...] = ()
    health_check: HealthCheck | None = None
    running_digests: dict[str, str] = field(default_factory=dict)
    registry_digest: str | None = None
    notes: tuple[str, ...] = ()


def task_id_of(task: str) -> str:
    """The task id from a task ARN (``.../task/<cluster>/<id>``) or an id."""
    return task.rsplit("/", 1)[-1]


def _aws_error_note(action: str, error: Exception) -> str:
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "Unknown")
        return f"{action} failed: {code}"
    return f"{action} failed: {type(error).__name__}"


def _utc(moment: Any) -> datetime | None:
    if not isinstance(moment, datetime):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _health_check(container_def: dict[str, Any] | None) -> HealthCheck | None:
    check = (container_def or {}).get("healthCheck")
    if not check:
        return None
    return HealthCheck(
        command=tuple(check.get("command") or ()),
        interval=check.get("interval"),
        retries=check.get("retries"),
        start_period=check.get("startPeriod"),
        timeout=check.get("timeout"),
    )


def _parse_image(reference: str) -> tuple[str, str | None, str | None]:
    """Split ``[registry/]repo[:tag][@digest]`` into (repository, tag, digest)."""
    digest = None
    if "@" in reference:
        reference, digest = reference.split("@", 1)
    tag = None
    last = reference.rsplit("/", 1)[-1]
    if ":" in last:
        reference, tag = reference.rsplit(":", 1)
    # ECR registries look like <account>.dkr.ecr.<region>.amazonaws.com/<repo>.
    first, _, rest = reference.partition("/")
    repository = rest if rest and ("." in first or ":" in first) else reference
    return repository, tag, digest


@dataclass(frozen=True, slots=True)
class Seen:
    """What discovery already read from AWS: the service and every task it described.

    Given to :func:`collect_evidence`, it answers from these instead of asking again
    (describe_services, list_tasks(STOPPED), describe_tasks); tasks it lacks are described.
    """

    service: Mapping[str, Any] | None
    tasks: Mapping[str, Mapping[str, Any]]  # by task ARN, as describe_tasks returned them


class _Gatherer:
    """One gathering pass; collects notes instead of raising."""

    def __init__(self, *, ecs: Any, logs: Any, cluster: str, service: str, seen: Seen | None = None) -> None:
        self.ecs, self.logs, self.cluster, self.service = ecs, logs, cluster, service
        self.seen = seen
        self.notes: list[str] = []

    def service_state(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if self.seen is not None and self.seen.service is not None:
            found = [self.seen.service]
        else:
            try:
                found = self.ecs.describe_services(cluster=self.cluster, services=[self.service]).get("services") or []
            except _AWS_ERRORS as error:
                self.notes.append(_aws_error_note("describe_services", error))
                return (), ()
        if not found:
            self.notes.append(f"service {self.service} not found in cluster {self.cluster}")
            return (), ()
        raw_events = sorted(
            found[0].get("events") or [],
            key=lambda e: _utc(e.get("createdAt")) or datetime.min.replace(tzinfo=timezone.utc),
            reverse=True,
        )
        events = []
        for event in raw_events[:DEFAULT_MAX_SERVICE_EVENTS]:
            created = _utc(event.get("createdAt"))
            stamp = _iso(created) if created else "?"
            events.append(f"{stamp} {event.get('message', '')}")
        deployments = tuple(
            f"{d.get('status', '?')} {task_id_of(d.get('taskDefinition', '?'))} "
            f"rolloutState={d.get('rolloutState', '?')} running={d.get('runningCount', '?')}/{d.get('desiredCount', '?')}"
            + (f" ({d['rolloutStateReason']})" if d.get("rolloutStateReason") else "")
            for d in found[0].get("deployments") or []
        )
        return tuple(events), deployments

    def stopped_task_arns(self) -> list[str]:
        if self.seen is not None:
            return [arn for arn, task in self.seen.tasks.items() if task.get("desiredStatus") == "STOPPED"]
        try:
            # moto ignores serviceName here, and real ECS forgets it once a task is stopped
            # long enough: filter by the task's group after describing.
            listed = self.ecs.list_tasks(cluster=self.cluster, desiredStatus="STOPPED", maxResults=100)
        except _AWS_ERRORS as error:
            self.notes.append(_aws_error_note("list_tasks(STOPPED)", error))
            return []
        return list(listed.get("taskArns") or [])

    def describe(self, tasks: list[str]) -> list[dict[str, Any]]:
        described: list[dict[str, Any]] = []
        if self.seen is not None:
            known = {task_id_of(arn): dict(task) for arn, task in self.seen.tasks.items()}
            described = [known[task_id_of(task)] for task in tasks if task_id_of(task) in known]
            tasks = [task for task in tasks if task_id_of(task) not in known]
        for start in range(0, len(tasks), DESCRIBE_TASKS_BATCH):
            batch = tasks[start : start + DESCRIBE_TASKS_BATCH]
            try:
                described += self.ecs.describe_tasks(cluster=self.cluster, tasks=batch).get("tasks") or []
            except _AWS_ERRORS as error:
                self.notes.append(_aws_error_note("describe_tasks", error))
        return described

    def log_lines(self, group: str, stream: str, start: datetime, end: datetime, limit: int) -> tuple[str, ...]:
        try:
            response = self.logs.get_log_events(
                logGroupName=group,
                logStreamName=stream,
                startTime=int(start.timestamp() * 1000),
                endTime=int(end.timestamp() * 1000),
                limit=limit,
                startFromHead=False,  # the newest lines are the ones next to the failure
            )
        except _AWS_ERRORS as error:
            self.notes.append(_aws_error_note(f"get_log_events({stream})", error))
            return ()
        return tuple(str(e.get("message", "")).rstrip("\n") for e in response.get("events") or [])


def _stopped_task(task: dict[str, Any]) -> StoppedTask:
    containers = tuple(
        ContainerExit(name=c.get("name", "?"), reason=c.get("reason") or "", exit_code=c.get("exitCode"))
        for c in task.get("containers") or []
    )
    return StoppedTask(
        task_id=task_id_of(task.get("taskArn", "?")),
        stopped_reason=task.get("stoppedReason") or "",
        stop_code=task.get("stopCode") or "",
        stopped_at=_utc(task.get("stoppedAt")),
        containers=containers,
        task_definition_arn=task.get("taskDefinitionArn", ""),
    )


def _belongs_to(task: dict[str, Any], service: str) -> bool:
    return task.get("group") == f"service:{service}"


def _registry_digest(ecr: Any, reference: str, notes: list[str]) -> str | None:
    repository, tag, digest = _parse_image(reference)
    if digest is not None:
        return digest
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag or "latest"}])
    except _AWS_ERRORS as error:
        notes.append(_aws_error_note(f"ecr describe_images({repository}:{tag or 'latest'})", error))
        return None
    details = found.get("imageDetails") or []
    return details[0].get("imageDigest") if details else None


def collect_evidence(
    *,
    ecs: Any,
    logs: Any,
    cluster: str,
    service: str,
    task_ids: list[str],
    task_definition: dict[str, Any],
    container: str,
    around: datetime | None = None,
    ecr: Any = None,
    image_tag_repo: str | None = None,
    log_window_s: int = DEFAULT_LOG_WINDOW_S,
    max_log_lines: int = DEFAULT_MAX_LOG_LINES,
    max_stopped_logs: int = DEFAULT_MAX_STOPPED_LOGS,
    now: datetime | None = None,
    seen: Seen | None = None,
    task_windows: Mapping[str, tuple[datetime, datetime]] | None = None,
) -> Evidence:
    """Gather logs, service events, stopped tasks, health check and digests for a failure.

    Logs are read from ``<awslogs-stream-prefix>/<container>/<task-id>`` in the task
    definition's ``awslogs-group``, ``log_window_s`` either side of ``around`` (or the
    last ``log_window_s`` before now), newest ``max_log_lines`` lines per task, for
    ``task_ids`` and the newest ``max_stopped_logs`` stopped tasks. A task in
    ``task_windows`` (when its failing checks ran: first start, last end) is read from
    ``log_window_s`` before its first failure to ``LOG_AFTER_FAILURE_S`` after its last,
    so what it logged later for other reasons does not crowd out what explains them.
    ``image_tag_repo`` (``repo:tag`` or a full ECR image URI; default: the container's
    image) is looked up in ``ecr`` for the digest the tag points at now.
    AWS calls: describe_services, list_tasks, describe_tasks per 100 tasks (none of
    these with ``seen``, but for tasks it lacks), one get_log_events per stream, one
    ECR describe_images. Errors become ``notes``.
    """
    gatherer = _Gatherer(ecs=ecs, logs=logs, cluster=cluster, service=service, seen=seen)
    definition = unwrap_task_definition(task_definition)
    container_def = find_container(definition, container)
    if container_def is None:
        gatherer.notes.append(f"task definition has no container {container}")

    events, deployments = gatherer.service_state()

    wanted_ids = [task_id_of(t) for t in task_ids]
    stopped_arns = [a for a in gatherer.stopped_task_arns() if task_id_of(a) not in wanted_ids]
    described = gatherer.describe(wanted_ids + stopped_arns) if wanted_ids or stopped_arns else []

    current = _utc(now) or datetime.now(timezone.utc)
    cutoff = current - DEFAULT_STOPPED_LOOKBACK
    stopped: list[StoppedTask] = []
    running_digests: dict[str, str] = {}
    for task in described:
        task_id = task_id_of(task.get("taskArn", "?"))
        if task_id in wanted_ids:
            for c in task.get("containers") or []:
                if c.get("name") == container and c.get("imageDigest"):
                    running_digests[task_id] = c["imageDigest"]
        # desiredStatus, not lastStatus: ECS sets it as soon as a task is on its way out.
        if task.get("desiredStatus") != "STOPPED":
            continue
        if task_id not in wanted_ids and not _belongs_to(task, service):
            continue
        record = _stopped_task(task)
        # moto leaves stoppedAt unset: keep those rather than hide them.
        if record.stopped_at is None or record.stopped_at >= cutoff:
            stopped.append(record)
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    stopped.sort(key=lambda s: s.stopped_at or oldest, reverse=True)

    log_lines: dict[str, tuple[str, ...]] = {}
    options = ((container_def or {}).get("logConfiguration") or {}).get("options") or {}
    group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
    if container_def is not None and not (group and prefix):
        gatherer.notes.append(f"container {container} has no awslogs group/stream prefix: no logs read")
    elif container_def is not None:
        centre = _utc(around)
        window = timedelta(seconds=log_window_s)
        start, end = (centre - window, centre + window) if centre else (current - window, current)
        extra = [s.task_id for s in stopped if s.task_id not in wanted_ids][:max_stopped_logs]
        failed_at = {task_id_of(task): span for task, span in (task_windows or {}).items()}
        for task_id in wanted_ids + extra:
            stopped_at = next((s.stopped_at for s in stopped if s.task_id == task_id), None)
            task_start, task_end = start, end
            if task_id in failed_at:
                first, last = (_utc(moment) for moment in failed_at[task_id])
                task_start, task_end = first - window, last + timedelta(seconds=LOG_AFTER_FAILURE_S)  # type: ignore[operator]
            # A task that stopped before the window still explains it: read up to its stop.
            task_start = min(task_start, stopped_at - window) if stopped_at else task_start
            lines = gatherer.log_lines(group, f"{prefix}/{container}/{task_id}", task_start, task_end, max_log_lines)
            log_lines[task_id] = lines

    registry_digest = None
    if ecr is not None:
        reference = image_tag_repo or (container_def or {}).get("image")
        if reference:
            registry_digest = _registry_digest(ecr, reference, gatherer.notes)

    return Evidence(
        logs=log_lines,
        service_events=events,
        deployments=deployments,
        stopped_tasks=tuple(stopped),
        health_check=_health_check(container_def),
        running_digests=running_digests,
        registry_digest=registry_digest,
        notes=tuple(gatherer.notes),
    )


def stop_texts(evidence: Evidence) -> Iterable[tuple[str, str]]:
    """(task_id, text) for every stoppedReason and container reason, newest task first."""
    for task in evidence.stopped_tasks:
        if task.stopped_reason:
            yield task.task_id, task.stopped_reason
        for c in task.containers:
            if c.reason:
                yield task.task_id, c.reason
