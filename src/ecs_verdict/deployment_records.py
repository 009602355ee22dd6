"""ECS deployment records: what the service's current deployment is trying to reach, and how it ended.

Newer ECS accounts answer ``describe_services`` with ``currentServiceDeployment`` (an ARN);
``describe_service_deployments`` then gives that deployment's status (PENDING, IN_PROGRESS,
SUCCESSFUL, STOPPED, STOP_REQUESTED, ROLLBACK_REQUESTED, ROLLBACK_IN_PROGRESS,
ROLLBACK_SUCCESSFUL, ROLLBACK_FAILED), its circuit breaker and its target service revision, and
``describe_service_revisions`` the revision's task definition and the image digests ECS pinned
for it. That says directly what the ``deployments`` list only implies (a rollback is an ACTIVE
FAILED entry plus events; the target is "the PRIMARY"). Where the records are absent (no
``currentServiceDeployment``) or refused (UnknownOperation on an older account, AccessDenied
for a role without the two actions, InvalidParameter...) the reader answers None and the
harness reads ``deployments`` as before.

Call budget: the records are read only when ``deployments`` shows something the record
settles (``records_worth_reading``: a FAILED rollout, or no PRIMARY), so a deploy that rolls out
cleanly costs no extra call. Then ``DeploymentRecords.read`` calls AWS when the current
deployment ARN is new, or when describe_services changed while that deployment is unfinished
(its status may have moved); a finished record and a service revision (immutable) are never
read twice. Once refused, the records are not asked for again in this run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from botocore.exceptions import ClientError

from ecs_verdict.aws import AwsClients, error_code, is_transient_aws_error


class RunsATaskDefinition(Protocol):
    """What ``tasks_of_target`` needs of a task (``observation.TaskInfo`` is one), so records need not import it."""

    @property
    def task_definition_arn(self) -> str: ...


T = TypeVar("T", bound=RunsATaskDefinition)

ROLLBACK_STATUSES = frozenset({"ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"})
STOPPED_STATUSES = frozenset({"STOPPED", "STOP_REQUESTED"})
FINISHED_STATUSES = frozenset({"SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"})
# Answers that mean "this account (or this role) has no deployment records": read deployments instead.
UNAVAILABLE_CODES = frozenset({
    "UnknownOperationException",
    "AccessDeniedException",
    "AccessDenied",
    "UnauthorizedOperation",
    "InvalidParameterException",
    "UnsupportedFeatureException",
    "ClientException",
})


@dataclass(frozen=True, slots=True)
class LifecycleHook:
    """One ``DeploymentLifecycleHookDetail`` of a service deployment (a hook ECS reached)."""

    hook_id: str
    target_type: str | None  # PAUSE | AWS_LAMBDA
    status: str | None  # AWAITING_ACTION | IN_PROGRESS | SUCCEEDED | FAILED | TIMED_OUT
    expires_at: datetime | None
    timeout_action: str | None  # ROLLBACK | CONTINUE

    @property
    def paused(self) -> bool:
        """A PAUSE hook waiting for ContinueServiceDeployment."""
        return self.target_type == "PAUSE" and self.status == "AWAITING_ACTION"

    def describe(self) -> str:
        """``ecs-pause-1a2b PAUSE AWAITING_ACTION`` (the form the record's evidence uses)."""
        kind = f" {self.target_type}" if self.target_type else ""
        return f"{self.hook_id}{kind} {self.status or '?'}"


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """The current service deployment and its target revision, as ECS recorded them."""

    arn: str
    status: str
    status_reason: str | None
    target_revision_arn: str
    target_task_definition_arn: str
    source_revision_arns: tuple[str, ...]
    circuit_breaker_status: str | None
    circuit_breaker_failures: int | None
    circuit_breaker_threshold: int | None
    rollback_revision_arn: str | None
    rollback_reason: str | None
    image_digests: tuple[tuple[str, str], ...]  # (container name, digest) the revision pinned
    lifecycle_hooks: tuple[str, ...] = ()  # "hookId status" per lifecycle hook
    triggered_alarms: tuple[str, ...] = ()  # deployment alarms that went off (an alarm rollback)
    hooks: tuple[LifecycleHook, ...] = ()  # lifecycleHookDetails, parsed
    lifecycle_stage: str | None = None  # where an IN_PROGRESS deployment is (SCALE_UP, POST_SCALE_UP, ...)
    strategy: str | None = None  # deploymentConfiguration.strategy: ROLLING | BLUE_GREEN | LINEAR | CANARY
    pause_stages: tuple[str, ...] = ()  # the stages its deploymentConfiguration holds with a PAUSE hook

    @property
    def paused_hook(self) -> LifecycleHook | None:
        """The PAUSE hook the deployment waits at (AWAITING_ACTION), if any."""
        return next((hook for hook in self.hooks if hook.paused), None) if self.status == "IN_PROGRESS" else None

    @property
    def rolled_back(self) -> bool:
        return self.status in ROLLBACK_STATUSES

    @property
    def stopped(self) -> bool:
        return self.status in STOPPED_STATUSES

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def short_id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    def digest_of(self, container: str) -> str | None:
        """The digest the revision pinned for ``container`` (None when it names none)."""
        return dict(self.image_digests).get(container)

    def tasks_of_target(self, tasks: Iterable[T]) -> tuple[T, ...]:
        """Tasks of the target revision: those running its task definition."""
        return tuple(task for task in tasks if task.task_definition_arn == self.target_task_definition_arn)

    def describe_circuit_breaker(self) -> str:
        """``circuit breaker TRIGGERED (2 failed tasks, threshold 2)``."""
        counts = []
        if self.circuit_breaker_failures is not None:
            counts.append(f"{self.circuit_breaker_failures} failed tasks")
        if self.circuit_breaker_threshold is not None:
            counts.append(f"threshold {self.circuit_breaker_threshold}")
        suffix = f" ({', '.join(counts)})" if counts else ""
        return f"circuit breaker {self.circuit_breaker_status or 'not reported'}{suffix}"

    def evidence(self) -> list[str]:
        """Lines for a report: the record's status, its circuit breaker, where it rolled back to."""
        target = self.target_task_definition_arn.rsplit("/", 1)[-1]
        reason = f": {self.status_reason}" if self.status_reason else ""
        lines = [
            f"service deployment {self.short_id}: {self.status}{reason} (target {target}, "
            f"revision {self.target_revision_arn.rsplit('/', 1)[-1]})",
            self.describe_circuit_breaker(),
        ]
        if self.rollback_revision_arn:
            why = f": {self.rollback_reason}" if self.rollback_reason else ""
            lines.append(f"rolled back to service revision {self.rollback_revision_arn.rsplit('/', 1)[-1]}{why}")
        if self.triggered_alarms:
            lines.append(f"deployment alarms TRIGGERED: {', '.join(self.triggered_alarms)}")
        lines += [f"lifecycle hook {hook}" for hook in self.lifecycle_hooks]
        return lines


def parse_record(raw: Mapping[str, Any], revision: Mapping[str, Any]) -> DeploymentRecord:
    """A ``ServiceDeployment`` of describe_service_deployments plus its target ``ServiceRevision``."""
    breaker = raw.get("deploymentCircuitBreaker") or {}
    rollback = raw.get("rollback") or {}
    images = tuple(
        (str(image.get("containerName", "")), str(image["imageDigest"]))
        for image in revision.get("containerImages", [])
        if image.get("imageDigest")
    )
    hooks = tuple(
        f"{hook.get('hookId', '?')} {hook.get('status', '?')}" for hook in raw.get("lifecycleHookDetails") or []
    )
    configuration = raw.get("deploymentConfiguration") or {}
    pause_stages = tuple(dict.fromkeys(
        str(stage) for hook in configuration.get("lifecycleHooks") or [] if hook.get("targetType") == "PAUSE"
        for stage in hook.get("lifecycleStages") or []))
    return DeploymentRecord(
        arn=str(raw.get("serviceDeploymentArn", "")),
        status=str(raw.get("status", "")),
        status_reason=raw.get("statusReason") or None,
        target_revision_arn=str((raw.get("targetServiceRevision") or {}).get("arn", "")),
        target_task_definition_arn=str(revision.get("taskDefinition", "")),
        source_revision_arns=tuple(str(item.get("arn", "")) for item in raw.get("sourceServiceRevisions") or []),
        circuit_breaker_status=breaker.get("status"),
        circuit_breaker_failures=breaker.get("failureCount"),
        circuit_breaker_threshold=breaker.get("threshold"),
        rollback_revision_arn=rollback.get("serviceRevisionArn"),
        rollback_reason=rollback.get("reason"),
        image_digests=images,
        lifecycle_hooks=hooks,
        triggered_alarms=tuple(str(name) for name in (raw.get("alarms") or {}).get("triggeredAlarmNames") or []),
        hooks=tuple(parse_hook(hook) for hook in raw.get("lifecycleHookDetails") or []),
        lifecycle_stage=raw.get("lifecycleStage") or None,
        strategy=configuration.get("strategy") or None,
        pause_stages=pause_stages,
    )


def parse_hook(raw: Mapping[str, Any]) -> LifecycleHook:
    """A ``DeploymentLifecycleHookDetail`` (``expiresAt`` as botocore parsed it)."""
    expires = raw.get("expiresAt")
    return LifecycleHook(
        hook_id=str(raw.get("hookId", "")),
        target_type=raw.get("targetType") or None,
        status=raw.get("status") or None,
        expires_at=expires if isinstance(expires, datetime) else None,
        timeout_action=raw.get("timeoutAction") or None,
    )


@dataclass(slots=True)
class DeploymentRecords:
    """Reads the current deployment record for one service, at most once per change; see the module docstring."""

    unavailable: str | None = None  # why the records are not read (e.g. "AccessDeniedException on ...")
    _records: dict[str, DeploymentRecord] = field(default_factory=dict)
    _revisions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def read(self, clients: AwsClients, raw_service: Mapping[str, Any], *, changed: bool) -> DeploymentRecord | None:
        """The record of ``raw_service['currentServiceDeployment']``, or None: read ``deployments`` instead.

        ``changed``: describe_services differs from the last look (an unfinished record is read again).
        Errors other than the "unavailable" codes and transient ones propagate as botocore raised them.
        """
        arn = raw_service.get("currentServiceDeployment")
        if not arn or self.unavailable is not None:
            return None
        cached = self._records.get(arn)
        if cached is not None and (cached.finished or not changed):
            return cached
        try:
            answer = clients.ecs.describe_service_deployments(serviceDeploymentArns=[arn])
            raw = next(iter(answer.get("serviceDeployments") or []), None)
            if raw is None:
                return cached
            revision = self._revision(clients, str((raw.get("targetServiceRevision") or {}).get("arn", "")))
        except ClientError as error:
            if error_code(error) in UNAVAILABLE_CODES:
                self.unavailable = f"{error_code(error)} on {getattr(error, 'operation_name', 'an ECS call')}"
                return None
            if is_transient_aws_error(error):
                return cached  # the next change tries again; deployments still answer meanwhile
            raise
        if revision is None:
            return cached
        record = parse_record(raw, revision)
        self._records[arn] = record
        return record

    def _revision(self, clients: AwsClients, arn: str) -> dict[str, Any] | None:
        if not arn:
            return None
        if arn not in self._revisions:
            answer = clients.ecs.describe_service_revisions(serviceRevisionArns=[arn])
            found = next(iter(answer.get("serviceRevisions") or []), None)
            if found is None:
                return None
            self._revisions[arn] = found
        return self._revisions[arn]


def records_worth_reading(raw_service: Mapping[str, Any]) -> bool:
    """Whether ``deployments`` shows what a record settles: a FAILED rollout (rollback?) or no PRIMARY (target?)."""
    if not raw_service.get("currentServiceDeployment"):
        return False
    deployments = raw_service.get("deployments") or []
    return (any(item.get("rolloutState") == "FAILED" for item in deployments)
            or not any(item.get("status") == "PRIMARY" for item in deployments))
