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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ecs_verdict.aws import AwsClients, aws_errors, service_not_found
from ecs_verdict.containers import ContainerChoice, choose_container
from ecs_verdict.deployment import Address, Deployment, TaskDefinitionRef
from ecs_verdict.deployment_records import DeploymentRecord, DeploymentRecords, records_worth_reading
from ecs_verdict.errors import CouldNotVerify
from ecs_verdict.kinds import Kind
from ecs_verdict.observation import (
    Observation,
    TaskInfo,
    parse_deployment,
    parse_event,
    parse_task,
)
from ecs_verdict.rollout_checks import check_rollback, no_ready_task, ready_primary_tasks, require_desired, require_primary
from ecs_verdict.targets import Target, format_base_url

DESCRIBE_TASKS_BATCH = 100  # the ECS API limit per describe_tasks call


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
    # What AWS answered, kept for evidence and lint (ecs_verdict.evidence.Seen): no second look.
    last_service: dict[str, Any] | None = None
    raw_tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The current service deployment's record where the account has them (else deployments alone).
    records: DeploymentRecords = field(default_factory=DeploymentRecords)
    _record: DeploymentRecord | None = None
    # Read the record on every change, not only when deployments show what it settles (a blue/green
    # gate needs its lifecycle hooks, which deployments never show).
    read_records: bool = False
    # How old the last full look is: the wait's own clock, so a test can make it count the wait's gaps alone.
    clock: Callable[[], float] = time.monotonic

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
            age = self.clock() - self._last_full_at
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
        self._last_full_at = self.clock()
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


@dataclass(frozen=True, slots=True)
class Addressing:
    """Targets for the tasks that have the address asked for, and why each other task has none."""

    targets: tuple[Target, ...]
    missing: tuple[CouldNotVerify, ...]  # kind no_public_ip / no_private_ip, details["task_id"]


def address_tasks(
    clients: AwsClients,
    tasks: Iterable[TaskInfo],
    *,
    container: str,
    port: int,
    address: Address,
    known_addresses: dict[str, tuple[str | None, str | None]] | None = None,
) -> Addressing:
    """Targets for the tasks whose address EC2 gives; the others named, not raised (one EC2 call).

    A task seen RUNNING can have lost its address (or its ENI) by the time EC2 answers,
    because ECS is stopping it: only a later look at the task says which. The caller decides.
    """
    tasks = tuple(tasks)
    addresses = lookup_addresses(clients, (task.eni_id for task in tasks if task.eni_id), known_addresses)
    targets: list[Target] = []
    missing: list[CouldNotVerify] = []
    for task in tasks:
        if task.eni_id and task.eni_id not in addresses:
            missing.append(CouldNotVerify(
                f"task {task.short_id}'s ENI {task.eni_id} is gone: the task is stopping",
                kind=Kind.NO_PUBLIC_IP if address == "public" else "no_private_ip",
                details={"task_id": task.task_id, "eni_id": task.eni_id},
            ))  # fmt: skip
            continue
        private_ip, public_ip = addresses.get(task.eni_id or "", (None, None))
        private_ip = private_ip or task.private_ip
        ip = public_ip if address == "public" else private_ip
        if not ip:
            missing.append(no_address(task, address))
            continue
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
    return Addressing(tuple(targets), tuple(missing))


def no_address(task: TaskInfo, address: Address, *, why: str = "") -> CouldNotVerify:
    """The task lacks the address asked for (``why``: what is known of the cause, e.g. the service's setting)."""
    details = {"task_id": task.task_id, "eni_id": task.eni_id}
    if address == "public":
        return CouldNotVerify(
            f"task {task.short_id} has no public IP (ENI {task.eni_id or 'unknown'}{why}): "
            "use --address private from inside the VPC, or enable assignPublicIp",
            kind=Kind.NO_PUBLIC_IP,
            details=details,
        )
    return CouldNotVerify(
        f"task {task.short_id} has no private IP yet (ENI {task.eni_id or 'unknown'}{why})", kind=Kind.NO_PRIVATE_IP,
        details=details,
    )


def build_targets(
    clients: AwsClients,
    tasks: Iterable[TaskInfo],
    *,
    container: str,
    port: int,
    address: Address,
    known_addresses: dict[str, tuple[str | None, str | None]] | None = None,
) -> tuple[Target, ...]:
    """Targets for ready tasks, addressed by public or private IP; the first task without one raises."""
    addressing = address_tasks(clients, tasks, container=container, port=port, address=address,
                               known_addresses=known_addresses)
    if addressing.missing:
        raise addressing.missing[0]
    return addressing.targets


def public_ip_disabled(raw_service: Mapping[str, Any] | None) -> bool:
    """The service gives its tasks no public IP (``assignPublicIp: DISABLED``): waiting will not bring one."""
    network = (raw_service or {}).get("networkConfiguration") or {}
    return (network.get("awsvpcConfiguration") or {}).get("assignPublicIp") == "DISABLED"


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

