"""From "cluster + service" to verified targets: only tasks of the PRIMARY deployment.

The runbook took ``taskArns[0]``, which during a rolling deploy can be a task of the
OLD deployment. Here a task is a target only when it belongs to the service
(``group == "service:<name>"``), to the PRIMARY deployment (same task definition and,
where ECS records it, ``startedBy`` == the deployment id), wants to run, runs, and is
HEALTHY when the task definition has a health check.

``ServiceObserver.poll()`` is one look at the service (about three AWS calls) that the
stability wait repeats; ``resolve_targets`` looks once and resolves addresses (one
batched EC2 call for all ENIs).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from plugins.core.aws import AwsClients, aws_errors, service_not_found
from plugins.core.deployment_records import DeploymentRecord, DeploymentRecords, records_worth_reading
from plugins.core.errors import CouldNotVerify, DeployFailed
from plugins.core.lint import health_check_shell_text, url_path_in
from plugins.core.observation import (
    DeploymentInfo,
    Observation,
    ServiceEvent,
    TaskInfo,
    family_revision,
    parse_deployment,
    parse_event,
    parse_task,
)
from plugins.core.targets import Target, format_base_url

Address = Literal["public", "private"]
ADDRESSES: tuple[Address, ...] = ("public", "private")
DESCRIBE_TASKS_BATCH = 100  # the ECS API limit per describe_tasks call
ROLLBACK_MARKERS = ("rolling back", "circuit breaker")
# Rollback events are written around the time the rollback deployment is created.
EVENT_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Deployment:
    """The verified state of the service: its PRIMARY deployment and the targets to test."""

    cluster: str
    service: str
    region: str
    deployment_id: str
    task_definition_arn: str
    rollout_state: str | None
    desired_count: int
    running_count: int
    container: str
    port: int
    health_check: Mapping[str, Any] | None
    targets: tuple[Target, ...]
    address: Address = "public"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for xdist workers and reports)."""
        return {
            "cluster": self.cluster,
            "service": self.service,
            "region": self.region,
            "deployment_id": self.deployment_id,
            "task_definition_arn": self.task_definition_arn,
            "rollout_state": self.rollout_state,
            "desired_count": self.desired_count,
            "running_count": self.running_count,
            "container": self.container,
            "port": self.port,
            "health_check": dict(self.health_check) if self.health_check is not None else None,
            "targets": [target.to_dict() for target in self.targets],
            "address": self.address,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deployment:
        """Rebuild from ``to_dict()`` output."""
        return cls(
            cluster=data["cluster"],
            service=data["service"],
            region=data["region"],
            deployment_id=data["deployment_id"],
            task_definition_arn=data["task_definition_arn"],
            rollout_state=data.get("rollout_state"),
            desired_count=int(data["desired_count"]),
            running_count=int(data["running_count"]),
            container=data["container"],
            port=int(data["port"]),
            health_check=data.get("health_check"),
            targets=tuple(Target.from_dict(item) for item in data["targets"]),
            address=data.get("address", "public"),
        )


@dataclass(frozen=True, slots=True)
class ContainerChoice:
    """The container the smoke tests talk to, from the task definition."""

    name: str
    port: int
    health_check: Mapping[str, Any] | None
    task_has_health_check: bool

    @property
    def health_check_path(self) -> str | None:
        """The path the container's health check probes (python urllib, curl, wget: any URL), else None."""
        text = health_check_shell_text(dict(self.health_check) if self.health_check else None)
        return url_path_in(text) if text is not None else None


@dataclass(slots=True)
class ServiceObserver:
    """Repeated looks at one service, remembering what does not change between polls.

    Stopped tasks, tasks of other services and task definitions are described once;
    the STOPPED list is only fetched when the running set or the counts moved.
    """

    clients: AwsClients
    cluster: str
    service: str
    polls: int = 0
    _stopped: dict[str, TaskInfo] = field(default_factory=dict)
    _foreign: set[str] = field(default_factory=set)
    _last_live: frozenset[str] = frozenset()
    _last_counts: tuple[int, int, int] | None = None
    _task_definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    _last_signature: tuple[Any, ...] | None = None
    _last_tasks: tuple[TaskInfo, ...] = ()
    _last_full_at: float = 0.0
    _last_failed: int = 0
    light_polls: int = 0
    # What AWS answered, kept for evidence and lint (plugins.core.evidence.Seen): no second look.
    last_service: dict[str, Any] | None = None
    raw_tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The current service deployment's record where the account has them (else deployments alone).
    records: DeploymentRecords = field(default_factory=DeploymentRecords)
    _record: DeploymentRecord | None = None
    # Read the record on every change, not only when deployments show what it settles (a blue/green
    # gate needs its lifecycle hooks, which deployments never show).
    read_records: bool = False

    @property
    def record(self) -> DeploymentRecord | None:
        """The current service deployment's record as the last poll read it (None: not read or none)."""
        return self._record

    @property
    def group(self) -> str:
        return f"service:{self.service}"

    def poll(self, *, light_if_unchanged: bool = False, full_every_s: float = 3.0,
             full_gap_s: float = 0.0) -> Observation:
        """One look: the service, its deployments and events, and its tasks (live and stopped).

        ``light_if_unchanged``: when describe_services shows the same deployments and counts
        as the last full look (and that look is under ``full_every_s`` old), reuse its tasks:
        one AWS call instead of three, so the wait can look often and still spend little.
        ``full_gap_s``: also reuse them while a roll-out is under way (it changes on every look)
        and the last full look is younger than this, unless describe_services shows a state that
        may be settled: then the tasks are read at once, so the end is never seen late.
        """
        ecs = self.clients.ecs
        with aws_errors(self.clients, cluster=self.cluster, service=self.service):
            raw_service = self._describe_service()
            self.last_service = raw_service
            counts = (int(raw_service.get("desiredCount", 0)), int(raw_service.get("runningCount", 0)),
                      int(raw_service.get("pendingCount", 0)))  # fmt: skip
            signature = _signature(raw_service, counts)
            worth = self.read_records or records_worth_reading(raw_service)
            self._record = (self.records.read(self.clients, raw_service, changed=signature != self._last_signature)
                            if worth else None)
            age = time.monotonic() - self._last_full_at
            unchanged = signature == self._last_signature and age < full_every_s
            moving = age < full_gap_s and not may_have_settled(raw_service)
            if light_if_unchanged and self.polls and (unchanged or moving):
                self.light_polls += 1
                return self._observation(raw_service, counts, self._last_tasks)
            live_arns = set(self._list_task_arns("RUNNING"))
            failed = _failed_tasks(raw_service)
            # A task can only have stopped unseen if ECS counted a failure or fewer tasks run now.
            changed = (self.polls == 0 or failed != self._last_failed or counts[1] < self._last_counts[1]
                       if self._last_counts is not None else True)
            self._last_failed = failed
            new_stopped: set[str] = set()
            if changed:
                new_stopped = set(self._list_task_arns("STOPPED")) - self._stopped.keys()
            # A task that left the RUNNING list since the last poll is described once
            # more, so its stoppedReason is seen even if it already aged out of lists.
            vanished = self._last_live - live_arns - self._stopped.keys()
            wanted = (live_arns | new_stopped | vanished) - self._foreign
            described = self._describe_tasks(ecs, sorted(wanted))
        self.polls += 1
        self._last_live = frozenset(live_arns)
        self._last_counts = counts
        self._last_signature = signature
        self._last_full_at = time.monotonic()
        live: list[TaskInfo] = []
        for task in described:
            if task.group != self.group:
                self._foreign.add(task.task_arn)
            elif task.last_status == "STOPPED":
                self._stopped[task.task_arn] = task
            else:
                live.append(task)
        self._last_tasks = tuple(sorted(live, key=lambda t: t.task_id)) + tuple(self._stopped.values())
        return self._observation(raw_service, counts, self._last_tasks)

    def _observation(self, raw_service: dict[str, Any], counts: tuple[int, int, int],
                     tasks: tuple[TaskInfo, ...]) -> Observation:
        return Observation(
            cluster=self.cluster,
            service=self.service,
            region=self.clients.region,
            status=str(raw_service.get("status", "")),
            desired=counts[0],
            running=counts[1],
            pending=counts[2],
            deployments=tuple(parse_deployment(item) for item in raw_service.get("deployments", [])),
            events=tuple(parse_event(item) for item in raw_service.get("events", [])[:20]),
            tasks=tasks,
            observed_at=datetime.now(timezone.utc),
            record=self._record,
        )

    def _describe_service(self) -> dict[str, Any]:
        response = self.clients.ecs.describe_services(cluster=self.cluster, services=[self.service])
        services = response.get("services", [])
        if not services:
            raise service_not_found(self.cluster, self.service, where=f" in region {self.clients.region}")
        raw = services[0]
        if raw.get("status") not in (None, "ACTIVE"):
            raise service_not_found(self.cluster, self.service, status=str(raw.get("status")))
        return raw

    def _list_task_arns(self, desired_status: str) -> list[str]:
        # serviceName narrows the list on real ECS; moto ignores it, hence the
        # group filter after describe_tasks.
        paginator = self.clients.ecs.get_paginator("list_tasks")
        arns: list[str] = []
        for page in paginator.paginate(cluster=self.cluster, serviceName=self.service, desiredStatus=desired_status):
            arns.extend(page.get("taskArns", []))
        return arns

    def _describe_tasks(self, ecs: Any, arns: list[str]) -> list[TaskInfo]:
        tasks: list[TaskInfo] = []
        for start in range(0, len(arns), DESCRIBE_TASKS_BATCH):
            batch = arns[start : start + DESCRIBE_TASKS_BATCH]
            response = ecs.describe_tasks(cluster=self.cluster, tasks=batch)
            for item in response.get("tasks", []):
                self.raw_tasks[str(item.get("taskArn", ""))] = item
                tasks.append(parse_task(item))
        return tasks

    def cached_task_definition(self, arn: str | None) -> dict[str, Any] | None:
        """The task definition if this observer already read it (no AWS call)."""
        return self._task_definitions.get(arn) if arn else None

    def task_definition(self, arn: str) -> dict[str, Any]:
        """The task definition (cached: a revision never changes)."""
        cached = self._task_definitions.get(arn)
        if cached is None:
            with aws_errors(self.clients, cluster=self.cluster, service=self.service):
                cached = self.clients.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
            self._task_definitions[arn] = cached
        return cached


def may_have_settled(raw_service: Mapping[str, Any]) -> bool:
    """describe_services alone: every task wanted runs and no older deployment runs any (worth a full look)."""
    deployments = raw_service.get("deployments", [])
    others_idle = all(int(d.get("runningCount", 0)) == 0 for d in deployments if d.get("status") != "PRIMARY")
    return others_idle and int(raw_service.get("runningCount", 0)) == int(raw_service.get("desiredCount", -1))


def _failed_tasks(raw_service: Mapping[str, Any]) -> int:
    return sum(int(d.get("failedTasks", 0)) for d in raw_service.get("deployments", []))


def _signature(raw_service: Mapping[str, Any], counts: tuple[int, int, int]) -> tuple[Any, ...]:
    """What must change in describe_services before the tasks are worth listing again."""
    deployments = tuple(
        (d.get("id"), d.get("status"), d.get("rolloutState"), d.get("runningCount"), d.get("pendingCount"),
         d.get("failedTasks"))
        for d in raw_service.get("deployments", [])
    )
    newest_event = (raw_service.get("events") or [{}])[0].get("id")
    return counts, deployments, newest_event


def choose_container(task_definition: Mapping[str, Any], container: str | None, port: int | None) -> ContainerChoice:
    """The named container, or the first one with a port mapping; its port unless one is given."""
    definitions = list(task_definition.get("containerDefinitions", []))
    task_has_health_check = any(item.get("healthCheck") for item in definitions)
    names = ", ".join(item.get("name", "?") for item in definitions) or "none"
    family = task_definition.get("family", "?")
    if container is not None:
        chosen = next((item for item in definitions if item.get("name") == container), None)
        if chosen is None:
            raise CouldNotVerify(
                f"container {container!r} is not in task definition {family}; containers: {names} (fix --ecs-container)",
                kind="container_not_found",
            )
    else:
        chosen = next((item for item in definitions if item.get("portMappings")), None)
        if chosen is None:
            raise CouldNotVerify(
                f"no container of task definition {family} maps a port (containers: {names}): pass --ecs-container and --port",
                kind="no_port",
            )
    mappings = chosen.get("portMappings") or []
    if port is None:
        if not mappings:
            raise CouldNotVerify(
                f"container {chosen['name']!r} maps no port: pass --port", kind="no_port"
            )
        port = int(mappings[0]["containerPort"])
    return ContainerChoice(
        name=str(chosen["name"]),
        port=port,
        health_check=chosen.get("healthCheck") or None,
        task_has_health_check=task_has_health_check,
    )


def ready_primary_tasks(observation: Observation, *, needs_health: bool) -> tuple[TaskInfo, ...]:
    """Tasks of the PRIMARY deployment that want to run, run, and (if checked) are HEALTHY."""
    primary = observation.primary
    if primary is None:
        return ()
    return tuple(
        task
        for task in observation.live_tasks_of(primary)
        if task.desired_status == "RUNNING"
        and task.last_status == "RUNNING"
        and (not needs_health or task.health_status == "HEALTHY")
    )


def require_primary(observation: Observation) -> DeploymentInfo:
    """The PRIMARY deployment (else the one running the record's target revision), or ``CouldNotVerify``."""
    primary = observation.primary
    record = observation.record
    if primary is None and record is not None and not (record.rolled_back or record.stopped):
        primary = next((item for item in observation.deployments
                        if item.task_definition_arn == record.target_task_definition_arn), None)
    if primary is None:
        raise CouldNotVerify(
            f"service {observation.service!r} reports no PRIMARY deployment; deployments: "
            f"{observation.describe_deployments() or 'none'}",
            kind="no_primary_deployment",
        )
    return primary


def require_desired(observation: Observation) -> None:
    """``CouldNotVerify`` for a service scaled to zero: there is nothing to test."""
    if observation.desired == 0:
        raise CouldNotVerify(
            f"service {observation.service!r} has desired count 0: nothing to test; scale it up "
            f"(aws ecs update-service --cluster {observation.cluster} --service {observation.service} --desired-count 1)",
            kind="desired_zero",
        )


def no_ready_task(observation: Observation, *, needs_health: bool) -> CouldNotVerify:
    """Why no task of the PRIMARY deployment qualifies, in one line plus per-task evidence."""
    primary = observation.primary
    assert primary is not None
    own = observation.live_tasks_of(primary)
    older = [task for task in observation.live_tasks if task not in own]
    states = ", ".join(task.describe_state() for task in own) or "none started"
    requirement = "RUNNING and HEALTHY" if needs_health else "RUNNING"
    message = (
        f"no running task: no task of the PRIMARY deployment ({primary.family_revision}) of service "
        f"{observation.service!r} is {requirement} yet (its tasks: {states}"
        + (f"; {len(older)} task(s) of older deployments still run" if older else "")
        + "): wait for the deploy (--wait-stable) or check the service events"
    )
    evidence = [event.message for event in observation.events[:3]]
    return CouldNotVerify(message, kind="no_running_task", evidence=evidence)


@dataclass(frozen=True, slots=True)
class TaskDefinitionRef:
    """``family:revision`` parsed from ``--expect-task-definition`` (a full ARN is accepted)."""

    family: str
    revision: int

    def matches(self, task_definition_arn: str) -> bool:
        return family_revision(task_definition_arn) == str(self)

    def __str__(self) -> str:
        return f"{self.family}:{self.revision}"


def parse_task_definition_ref(text: str) -> TaskDefinitionRef:
    """``family:7`` or ``arn:aws:ecs:…:task-definition/family:7``; ``ValueError`` names the form."""
    tail = family_revision(text.strip())
    family, _, revision = tail.rpartition(":")
    if not family or not revision.isdigit() or int(revision) < 1:
        raise ValueError(f"expected task definition as family:revision or a full ARN (e.g. civicforge-board-mvp:7), got {text!r}")
    return TaskDefinitionRef(family, int(revision))


def check_rollback(observation: Observation, primary: DeploymentInfo, expected: TaskDefinitionRef | None) -> None:
    """``DeployFailed`` for a failed rollout, a circuit-breaker rollback, or the wrong PRIMARY."""
    evidence = [f"deployments: {observation.describe_deployments()}"]
    record = observation.record
    if record is not None and (record.rolled_back or record.stopped):
        # The deployment record says it outright; the deployments list only implies it.
        failed_name = family_revision(record.target_task_definition_arn)
        how = "stopped" if record.stopped else "rolled back"
        now_running = (f"the service runs {primary.family_revision} again"
                       if primary.task_definition_arn != record.target_task_definition_arn
                       else f"service deployment {record.short_id} is {record.status}")
        reason = f" ({record.status_reason})" if record.status_reason else ""
        stopped = record.tasks_of_target(observation.stopped_tasks)
        raise DeployFailed(
            f"deploy of {failed_name} was {how}: {now_running}{reason}",
            kind="rolled_back",
            evidence=evidence + record.evidence() + _rollback_events(observation, primary)
            + [task.describe_stop() for task in stopped[:3]],
            details={"failed": failed_name, "running": primary.family_revision, "service_deployment": record.arn,
                     "status": record.status, "circuit_breaker": record.circuit_breaker_status},
        )
    if primary.rollout_state == "FAILED":
        raise DeployFailed(
            f"deployment {primary.id} ({primary.family_revision}) failed: {primary.rollout_state_reason or 'rolloutState FAILED'}",
            kind="rolled_back",
            evidence=evidence + _rollback_events(observation, primary),
            details={"deployment_id": primary.id, "task_definition": primary.family_revision},
        )
    failed = [item for item in observation.deployments if item.status == "ACTIVE" and item.rollout_state == "FAILED"]
    events = _rollback_events(observation, primary)
    if failed or events:
        failed_name = failed[0].family_revision if failed else (str(expected) if expected else "the new revision")
        reason = failed[0].rollout_state_reason if failed and failed[0].rollout_state_reason else None
        raise DeployFailed(
            f"deploy of {failed_name} was rolled back: the service runs {primary.family_revision} again"
            + (f" ({reason})" if reason else ""),
            kind="rolled_back",
            evidence=evidence + events,
            details={"failed": failed_name, "running": primary.family_revision},
        )
    if expected is not None and not expected.matches(primary.task_definition_arn):
        listed = [item for item in observation.deployments if expected.matches(item.task_definition_arn)]
        hint = (
            f"{expected} is listed as {listed[0].status}: it was replaced"
            if listed
            else f"no deployment of {expected}: was update-service run with it?"
        )
        raise DeployFailed(
            f"service runs {primary.family_revision}, expected {expected}: {hint}",
            kind="rolled_back" if listed else "task_definition_mismatch",
            evidence=evidence,
            details={"expected": str(expected), "actual": primary.family_revision},
        )


def _rollback_events(observation: Observation, primary: DeploymentInfo) -> list[str]:
    since = primary.created_at - EVENT_MARGIN if primary.created_at else None
    return [
        f"event: {event.message}"
        for event in observation.events
        if any(marker in event.message.lower() for marker in ROLLBACK_MARKERS)
        and (since is None or event.created_at is None or event.created_at >= since)
    ]


def lookup_addresses(clients: AwsClients, eni_ids: Iterable[str],
                     known: dict[str, tuple[str | None, str | None]] | None = None,
                     ) -> dict[str, tuple[str | None, str | None]]:
    """``{eni_id: (private_ip, public_ip)}`` with ONE describe_network_interfaces call.

    A filter (not ``NetworkInterfaceIds``) so an ENI deleted in between is just
    missing from the answer instead of failing the whole call. ``known``: addresses
    looked up before (an ENI keeps its addresses for its task's life); only the others
    are asked for, and complete answers are added to it.
    """
    wanted = sorted(set(eni_ids))
    cached = {eni: known[eni] for eni in wanted if known is not None and eni in known}
    ids = [eni for eni in wanted if eni not in cached]
    if not ids:
        return cached
    found: dict[str, tuple[str | None, str | None]] = dict(cached)
    kwargs: dict[str, Any] = {"Filters": [{"Name": "network-interface-id", "Values": ids}]}
    with aws_errors(clients):
        while True:
            response = clients.ec2.describe_network_interfaces(**kwargs)
            for eni in response.get("NetworkInterfaces", []):
                public_ip = (eni.get("Association") or {}).get("PublicIp")
                found[eni["NetworkInterfaceId"]] = (eni.get("PrivateIpAddress"), public_ip)
                if known is not None and public_ip and eni.get("PrivateIpAddress"):
                    known[eni["NetworkInterfaceId"]] = found[eni["NetworkInterfaceId"]]
            token = response.get("NextToken")
            if not token:
                return found
            kwargs["NextToken"] = token


def build_targets(
    clients: AwsClients,
    tasks: Iterable[TaskInfo],
    *,
    container: str,
    port: int,
    address: Address,
    known_addresses: dict[str, tuple[str | None, str | None]] | None = None,
) -> tuple[Target, ...]:
    """Targets for ready tasks, addressed by public or private IP (``known_addresses``: see lookup_addresses)."""
    tasks = tuple(tasks)
    addresses = lookup_addresses(clients, (task.eni_id for task in tasks if task.eni_id), known_addresses)
    targets: list[Target] = []
    for task in tasks:
        private_ip, public_ip = addresses.get(task.eni_id or "", (None, None))
        private_ip = private_ip or task.private_ip
        ip = public_ip if address == "public" else private_ip
        if not ip:
            if address == "public":
                raise CouldNotVerify(
                    f"task {task.short_id} has no public IP (ENI {task.eni_id or 'unknown'}): "
                    "use --address private from inside the VPC, or enable assignPublicIp",
                    kind="no_public_ip",
                    details={"task_id": task.task_id, "eni_id": task.eni_id},
                )
            raise CouldNotVerify(
                f"task {task.short_id} has no private IP yet (ENI {task.eni_id or 'unknown'})", kind="no_private_ip"
            )
        box = task.container(container)
        targets.append(
            Target(
                task_id=task.task_id,
                short_id=task.short_id,
                task_arn=task.task_arn,
                base_url=format_base_url(ip, port),
                ip=ip,
                private_ip=private_ip,
                public_ip=public_ip,
                eni_id=task.eni_id,
                image_digest=box.image_digest if box else None,
                task_definition_arn=task.task_definition_arn,
                started_at=task.started_at.isoformat() if task.started_at else None,
                source="ecs",
            )
        )
    return tuple(targets)


def deployment_from(
    observation: Observation, choice: ContainerChoice, targets: tuple[Target, ...], address: Address
) -> Deployment:
    """The ``Deployment`` value for an observation whose targets are resolved."""
    primary = require_primary(observation)
    return Deployment(
        cluster=observation.cluster,
        service=observation.service,
        region=observation.region,
        deployment_id=primary.id,
        task_definition_arn=primary.task_definition_arn,
        rollout_state=primary.rollout_state,
        desired_count=observation.desired,
        running_count=observation.running,
        container=choice.name,
        port=choice.port,
        health_check=choice.health_check,
        targets=targets,
        address=address,
    )


def observe(clients: AwsClients, cluster: str, service: str) -> Observation:
    """One look at the service (see ``ServiceObserver.poll``)."""
    return ServiceObserver(clients, cluster, service).poll()


def resolve_targets(
    clients: AwsClients,
    *,
    cluster: str,
    service: str,
    container: str | None = None,
    port: int | None = None,
    address: Address = "public",
    expect_task_definition: TaskDefinitionRef | None = None,
) -> Deployment:
    """Targets for the tasks of the service's PRIMARY deployment that are ready now.

    Raises ``CouldNotVerify`` (with one line and the fix) when the service cannot be
    found, is scaled to zero, has no ready task of its PRIMARY deployment, or a task
    lacks the requested address; ``DeployFailed`` when the deploy was rolled back (or
    the PRIMARY is not ``expect_task_definition``). Does not wait: see ``stability.wait_until_stable``.
    """
    observer = ServiceObserver(clients, cluster, service)
    observation = observer.poll()
    require_desired(observation)
    primary = require_primary(observation)
    # Without this the tests would pass against the previous release the service fell back to.
    check_rollback(observation, primary, expect_task_definition)
    choice = choose_container(observer.task_definition(primary.task_definition_arn), container, port)
    ready = ready_primary_tasks(observation, needs_health=choice.task_has_health_check)
    if not ready:
        raise no_ready_task(observation, needs_health=choice.task_has_health_check)
    targets = build_targets(clients, ready, container=choice.name, port=choice.port, address=address)
    return deployment_from(observation, choice, targets, address)


__all__ = [
    "Address",
    "ContainerChoice",
    "Deployment",
    "DeploymentInfo",
    "Observation",
    "ServiceEvent",
    "ServiceObserver",
    "TaskDefinitionRef",
    "TaskInfo",
    "build_targets",
    "check_rollback",
    "choose_container",
    "observe",
    "parse_task_definition_ref",
    "ready_primary_tasks",
    "resolve_targets",
]
