"""Values for one look at an ECS service, parsed from boto3 response dicts.

Kept apart from the AWS calls (``discovery.ServiceObserver``) so the rules that
decide which task belongs to which deployment are testable with plain data shaped
exactly like boto3 responses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ecs_verdict.targets import short_task_id, task_id_from_arn

if TYPE_CHECKING:
    from ecs_verdict.deployment_records import DeploymentRecord

# Real ECS sets startedBy to the deployment id for tasks a service starts.
SERVICE_STARTED_BY_PREFIX = "ecs-svc/"


@dataclass(frozen=True, slots=True)
class DeploymentInfo:
    """One entry of ``describe_services()['services'][0]['deployments']``."""

    id: str
    status: str
    task_definition_arn: str
    rollout_state: str | None
    rollout_state_reason: str | None
    desired: int
    running: int
    pending: int
    failed_tasks: int
    created_at: datetime | None

    @property
    def family_revision(self) -> str:
        return family_revision(self.task_definition_arn)

    def describe(self) -> str:
        """``PRIMARY orders-api:7 IN_PROGRESS 1/2``."""
        rollout = f" {self.rollout_state}" if self.rollout_state else ""
        failed = f", {self.failed_tasks} failed" if self.failed_tasks else ""
        return f"{self.status} {self.family_revision}{rollout} {self.running}/{self.desired}{failed}"


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """One container of a described task."""

    name: str
    last_status: str | None
    exit_code: int | None
    reason: str | None
    image_digest: str | None
    health_status: str | None


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """One described task, with what stability and discovery need."""

    task_arn: str
    task_id: str
    short_id: str
    task_definition_arn: str
    group: str | None
    started_by: str | None
    last_status: str
    desired_status: str
    health_status: str | None
    stopped_reason: str | None
    stop_code: str | None
    started_at: datetime | None
    stopped_at: datetime | None
    eni_id: str | None
    private_ip: str | None
    containers: tuple[ContainerInfo, ...]

    def container(self, name: str) -> ContainerInfo | None:
        """The container called ``name`` (None if the task has none)."""
        return next((box for box in self.containers if box.name == name), None)

    def belongs_to(self, deployment: DeploymentInfo) -> bool:
        """Same task definition and, where ECS recorded it, started by this deployment."""
        if self.task_definition_arn != deployment.task_definition_arn:
            return False
        if self.started_by and self.started_by.startswith(SERVICE_STARTED_BY_PREFIX):
            return self.started_by == deployment.id
        return True

    def describe_state(self) -> str:
        """``3f2a1b2c RUNNING/HEALTHY`` (health left out when ECS reports none)."""
        health = f"/{self.health_status}" if self.health_status and self.health_status != "UNKNOWN" else ""
        return f"{self.short_id} {self.last_status}{health}"

    def describe_stop(self) -> str:
        """Why the task stopped: reason, stop code, and each container's reason and exit code."""
        parts = [f"task {self.short_id} stopped: {self.stopped_reason or 'no reason given'}"]
        if self.stop_code:
            parts.append(f"stop code {self.stop_code}")
        for box in self.containers:
            if box.reason or box.exit_code is not None:
                exit_text = f" (exit code {box.exit_code})" if box.exit_code is not None else ""
                parts.append(f"container {box.name}: {box.reason or 'exited'}{exit_text}")
        return "; ".join(parts)

    def stop_texts(self) -> tuple[str, ...]:
        """Every free-text reason ECS gave for this task stopping."""
        texts = [self.stopped_reason or ""] + [box.reason or "" for box in self.containers]
        return tuple(text for text in texts if text)


@dataclass(frozen=True, slots=True)
class ServiceEvent:
    """One service event (newest first in ``Observation.events``)."""

    created_at: datetime | None
    message: str


@dataclass(frozen=True, slots=True)
class Observation:
    """One look at a service: counts, deployments, recent events, tasks (live and stopped)."""

    cluster: str
    service: str
    region: str
    status: str
    desired: int
    running: int
    pending: int
    deployments: tuple[DeploymentInfo, ...]
    events: tuple[ServiceEvent, ...]
    tasks: tuple[TaskInfo, ...]
    observed_at: datetime
    record: DeploymentRecord | None = None  # the current service deployment, where ECS keeps records

    @property
    def primary(self) -> DeploymentInfo | None:
        return next((item for item in self.deployments if item.status == "PRIMARY"), None)

    @property
    def live_tasks(self) -> tuple[TaskInfo, ...]:
        return tuple(task for task in self.tasks if task.last_status != "STOPPED")

    @property
    def stopped_tasks(self) -> tuple[TaskInfo, ...]:
        return tuple(task for task in self.tasks if task.last_status == "STOPPED")

    def live_tasks_of(self, deployment: DeploymentInfo) -> tuple[TaskInfo, ...]:
        return tuple(task for task in self.live_tasks if task.belongs_to(deployment))

    def stopped_tasks_of(self, deployment: DeploymentInfo) -> tuple[TaskInfo, ...]:
        return tuple(task for task in self.stopped_tasks if task.belongs_to(deployment))

    def describe_deployments(self) -> str:
        return "; ".join(item.describe() for item in self.deployments)

    def describe(self) -> str:
        """The last observed state in one line, for deadlines and progress."""
        primary = self.primary
        rollout = primary.rollout_state if primary and primary.rollout_state else "unknown"
        tasks = ", ".join(task.describe_state() for task in self.live_tasks) or "none"
        return (
            f"running {self.running}/{self.desired}, rollout {rollout}, deployments: "
            f"{self.describe_deployments() or 'none'}; tasks: {tasks}"
        )


def family_revision(task_definition_arn: str) -> str:
    """``arn:...:task-definition/family:7`` -> ``family:7`` (text without ``/`` is returned as is)."""
    return task_definition_arn.rsplit("/", 1)[-1]


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None


def _text_or_none(value: Any) -> str | None:
    # moto reports "" where real ECS leaves the field out.
    return str(value) if value not in (None, "") else None


def _timestamp(value: Any) -> datetime | None:
    # Always timezone-aware, so times from different sources compare without TypeError.
    parsed: datetime | None = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def parse_deployment(raw: Mapping[str, Any]) -> DeploymentInfo:
    """A deployment entry of ``describe_services``."""
    return DeploymentInfo(
        id=str(raw.get("id", "")),
        status=str(raw.get("status", "")),
        task_definition_arn=str(raw.get("taskDefinition", "")),
        rollout_state=_text_or_none(raw.get("rolloutState")),
        rollout_state_reason=_text_or_none(raw.get("rolloutStateReason")),
        desired=int(raw.get("desiredCount", 0)),
        running=int(raw.get("runningCount", 0)),
        pending=int(raw.get("pendingCount", 0)),
        failed_tasks=int(raw.get("failedTasks", 0)),
        created_at=_timestamp(raw.get("createdAt")),
    )


def parse_event(raw: Mapping[str, Any]) -> ServiceEvent:
    """A service event of ``describe_services``."""
    return ServiceEvent(created_at=_timestamp(raw.get("createdAt")), message=str(raw.get("message", "")))


def _eni_details(raw_task: Mapping[str, Any]) -> tuple[str | None, str | None]:
    for attachment in raw_task.get("attachments", []):
        if attachment.get("type") not in (None, "ElasticNetworkInterface", "eni"):
            continue
        details = {item.get("name"): item.get("value") for item in attachment.get("details", [])}
        if details.get("networkInterfaceId"):
            return details["networkInterfaceId"], details.get("privateIPv4Address")
    return None, None


def parse_task(raw: Mapping[str, Any]) -> TaskInfo:
    """A task of ``describe_tasks``."""
    task_arn = str(raw["taskArn"])
    task_id = task_id_from_arn(task_arn)
    eni_id, private_ip = _eni_details(raw)
    containers = tuple(
        ContainerInfo(
            name=str(box.get("name", "")),
            last_status=_text_or_none(box.get("lastStatus")),
            exit_code=_int_or_none(box.get("exitCode")),
            reason=_text_or_none(box.get("reason")),
            image_digest=_text_or_none(box.get("imageDigest")),
            health_status=_text_or_none(box.get("healthStatus")),
        )
        for box in raw.get("containers", [])
    )
    return TaskInfo(
        task_arn=task_arn,
        task_id=task_id,
        short_id=short_task_id(task_id),
        task_definition_arn=str(raw.get("taskDefinitionArn", "")),
        group=_text_or_none(raw.get("group")),
        started_by=_text_or_none(raw.get("startedBy")),
        last_status=str(raw.get("lastStatus", "")),
        desired_status=str(raw.get("desiredStatus", "")),
        health_status=_text_or_none(raw.get("healthStatus")),
        stopped_reason=_text_or_none(raw.get("stoppedReason")),
        stop_code=_text_or_none(raw.get("stopCode")),
        started_at=_timestamp(raw.get("startedAt")),
        stopped_at=_timestamp(raw.get("stoppedAt")),
        eni_id=eni_id,
        private_ip=private_ip,
        containers=containers,
    )
