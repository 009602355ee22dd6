"""Load-balancer target health: part of "the deploy is done", and a finding when a target is unhealthy.

A service behind a load balancer is only serving when its tasks pass the *target group's*
health check, which is not the container's: another path, port, matcher, and a network path
from the load balancer that a security group can block. ECS registers each task (its private
IP and the container port, target type ``ip``) in the target group of every
``loadBalancers`` entry of the service; for ECS native blue/green an entry names two groups
(``targetGroupArn`` and ``advancedConfiguration.alternateTargetGroupArn``) and a task is in
one of them.

The wait (``ecs_verdict.stability``) asks, once ECS has settled: is every task of the new
deployment ``healthy`` in a group of every entry, and is no other target still registered
(old ones draining or gone)? ``initial`` is waited for. ``unhealthy`` is ELB's judgement,
with its own reason code and description (``TargetHealth`` in the ELB API reference), and
becomes a ``DeployFailed`` (exit 1):

- at once when the task's container is HEALTHY and ELB got a 4xx (``Target.ResponseCodeMismatch``):
  the app is up and refuses the target group's path, which no waiting changes;
- otherwise once it has stayed unhealthy, with the container HEALTHY, for the group's own
  recovery time (HealthyThresholdCount x interval + timeout: what ELB needs to call a target
  healthy again), since a target that failed its checks while the app booted is unhealthy
  for that long after the app is up;
- and at the deadline, whatever its reason.

A target still ``initial`` at the deadline is the wait's "not stable" (exit 6): ELB had not
judged it, so nothing is known.

AWS calls: ``DescribeTargetGroups`` once for the health check settings (every group in one
call), then one ``DescribeTargetHealth`` per target group per read, every target at once;
reads are at least ``READ_GAP_S`` apart (ELB re-judges a target every interval, 5 s at least).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ecs_verdict.aws import AwsClients, aws_errors
from ecs_verdict.errors import DeployFailed
from ecs_verdict.kinds import Kind
from ecs_verdict.observation import TaskInfo

READ_GAP_S = 2.0
HEALTHY, INITIAL, UNHEALTHY, DRAINING, UNUSED = "healthy", "initial", "unhealthy", "draining", "unused"
RESPONSE_CODE_MISMATCH = "Target.ResponseCodeMismatch"
TIMEOUT = "Target.Timeout"


@dataclass(frozen=True, slots=True)
class ServiceLoadBalancer:
    """One ``loadBalancers`` entry of the service: the groups a task of it may be in, and the port."""

    target_group_arns: tuple[str, ...]  # targetGroupArn, then blue/green's alternateTargetGroupArn
    container_name: str | None
    container_port: int | None


def service_load_balancers(service: dict[str, Any] | None) -> tuple[ServiceLoadBalancer, ...]:
    """The target-group entries of a ``describe_services`` service (a Classic Load Balancer entry has none)."""
    entries = []
    for entry in (service or {}).get("loadBalancers") or []:
        arn = entry.get("targetGroupArn")
        if not arn:
            continue
        alternate = (entry.get("advancedConfiguration") or {}).get("alternateTargetGroupArn")
        port = entry.get("containerPort")
        entries.append(ServiceLoadBalancer((arn, alternate) if alternate else (arn,), entry.get("containerName"),
                                           int(port) if port is not None else None))
    return tuple(entries)


@dataclass(frozen=True, slots=True)
class TargetGroupSettings:
    """A target group's health check, from ``DescribeTargetGroups`` (the evidence a finding carries)."""

    arn: str
    name: str
    protocol: str
    path: str
    port: str  # "traffic-port" or a number
    interval_s: int
    timeout_s: int
    healthy_threshold: int
    unhealthy_threshold: int
    matcher: str
    # The load balancers with a rule forwarding to it (ecs_verdict.listeners finds the listener from them).
    load_balancer_arns: tuple[str, ...] = ()

    @classmethod
    def from_elb(cls, group: dict[str, Any]) -> TargetGroupSettings:
        return cls(
            arn=str(group.get("TargetGroupArn", "")),
            name=str(group.get("TargetGroupName", "")),
            protocol=str(group.get("HealthCheckProtocol") or group.get("Protocol") or "HTTP"),
            path=str(group.get("HealthCheckPath") or "/"),
            port=str(group.get("HealthCheckPort") or "traffic-port"),
            interval_s=int(group.get("HealthCheckIntervalSeconds") or 30),
            timeout_s=int(group.get("HealthCheckTimeoutSeconds") or 5),
            healthy_threshold=int(group.get("HealthyThresholdCount") or 5),
            unhealthy_threshold=int(group.get("UnhealthyThresholdCount") or 2),
            matcher=str((group.get("Matcher") or {}).get("HttpCode") or (group.get("Matcher") or {}).get("GrpcCode")
                        or "200"),
            load_balancer_arns=tuple(dict.fromkeys(group.get("LoadBalancerArns") or ())),
        )

    @property
    def recovery_s(self) -> float:
        """How long ELB needs to call a target healthy again once its checks pass."""
        return self.healthy_threshold * self.interval_s + self.timeout_s

    def describe(self) -> str:
        """``target group web-tg: HTTP GET /health on traffic-port every 30 s, timeout 5 s, ...``."""
        return (f"target group {self.name}: {self.protocol} GET {self.path} on {self.port} every {self.interval_s} s, "
                f"timeout {self.timeout_s} s, healthy after {self.healthy_threshold}, unhealthy after "
                f"{self.unhealthy_threshold}, success codes {self.matcher}")

    def to_dict(self) -> dict[str, Any]:
        return {"arn": self.arn, "name": self.name, "protocol": self.protocol, "path": self.path, "port": self.port,
                "interval_s": self.interval_s, "timeout_s": self.timeout_s,
                "healthy_threshold": self.healthy_threshold, "unhealthy_threshold": self.unhealthy_threshold,
                "matcher": self.matcher}


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """One ``TargetHealthDescription``."""

    address: str
    port: int | None
    state: str
    reason: str | None = None
    description: str | None = None

    @classmethod
    def from_elb(cls, item: dict[str, Any]) -> TargetHealth:
        target, health = item.get("Target") or {}, item.get("TargetHealth") or {}
        port = target.get("Port")
        return cls(str(target.get("Id", "")), int(port) if port is not None else None, str(health.get("State", "")),
                   health.get("Reason"), health.get("Description"))

    def describe(self) -> str:
        """``10.0.1.5:8000 unhealthy (Target.Timeout: Request timed out)``."""
        why = f" ({self.reason}: {self.description})" if self.reason else ""
        return f"{self.address}:{self.port} {self.state}{why}"

    def code_4xx(self) -> bool:
        """A ResponseCodeMismatch whose codes are all 4xx: the app answered, and refused the path."""
        if self.reason != RESPONSE_CODE_MISMATCH or not self.description:
            return False
        codes = [part.strip() for part in self.description.partition("[")[2].rstrip("]").split(",")]
        return bool(codes) and all(code.isdigit() and 400 <= int(code) < 500 for code in codes)


@dataclass(frozen=True, slots=True)
class TargetReading:
    """One read of every target group of the service."""

    groups: dict[str, TargetGroupSettings]
    health: dict[str, tuple[TargetHealth, ...]]  # group ARN -> its targets


class TargetHealthReader:
    """The AWS calls: settings once, then health per group (one call each, every target)."""

    def __init__(self, clients: AwsClients) -> None:
        self._clients = clients
        self._settings: dict[str, TargetGroupSettings] = {}

    @property
    def load_balancers_of(self) -> dict[str, tuple[str, ...]]:
        """Target group ARN -> the load balancers forwarding to it, as the settings' one read found them."""
        return {arn: settings.load_balancer_arns for arn, settings in self._settings.items()}

    def read(self, group_arns: Iterable[str]) -> TargetReading:
        arns = list(dict.fromkeys(group_arns))
        elbv2 = self._clients.client("elbv2")
        with aws_errors(self._clients):
            unknown = [arn for arn in arns if arn not in self._settings]
            for start in range(0, len(unknown), 20):  # DescribeTargetGroups takes 20 ARNs a call
                answer = elbv2.describe_target_groups(TargetGroupArns=unknown[start:start + 20])
                for group in answer["TargetGroups"]:
                    settings = TargetGroupSettings.from_elb(group)
                    self._settings[settings.arn] = settings
            health = {arn: tuple(TargetHealth.from_elb(item) for item in
                                 elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"])
                      for arn in arns}
        return TargetReading({arn: self._settings[arn] for arn in arns if arn in self._settings}, health)


@dataclass(frozen=True, slots=True)
class TargetJudgement:
    """What the targets say: "" and no finding when every new task is serving."""

    waiting_on: str = ""
    finding: DeployFailed | None = None  # an unhealthy target, decided now
    unhealthy: DeployFailed | None = None  # an unhealthy target not decided yet: the finding at the deadline


def judge_targets(reading: TargetReading, balancers: tuple[ServiceLoadBalancer, ...], tasks: tuple[TaskInfo, ...],
                  *, container_health_path: str | None, unhealthy_since: dict[str, float], now: float,
                  old_must_drain: bool = True) -> TargetJudgement:
    """Judge the new deployment's ``tasks`` (RUNNING, container HEALTHY where checked) against ``reading``.

    ``unhealthy_since`` (by task id, the caller's across reads) is when each task's target was
    first seen unhealthy; it is updated here.
    """
    waiting: list[str] = []
    pending_finding: DeployFailed | None = None
    addresses = {task.private_ip for task in tasks if task.private_ip}
    for balancer in balancers:
        for task in tasks:
            found = _target_of(task, balancer, reading)
            if found is None:
                waiting.append(f"task {task.short_id} ({task.private_ip}) not registered in "
                               f"{_names(balancer, reading)} yet")
                continue
            group, target = found
            if target.state == HEALTHY:
                unhealthy_since.pop(task.task_id, None)
                continue
            if target.state != UNHEALTHY:
                waiting.append(f"task {task.short_id} target {target.describe()} in {group.name}")
                continue
            since = unhealthy_since.setdefault(task.task_id, now)
            finding = unhealthy_target(task, target, group, container_health_path)
            if target.code_4xx() or now - since >= group.recovery_s:
                return TargetJudgement(finding=finding)
            pending_finding = pending_finding or finding
            waiting.append(f"task {task.short_id} target {target.describe()} in {group.name} "
                           f"(ELB needs {group.recovery_s:g} s of passing checks to call it healthy again)")
        if old_must_drain:
            for arn in balancer.target_group_arns:
                for target in reading.health.get(arn, ()):
                    if target.address not in addresses and target.state not in (DRAINING, UNUSED):
                        name = reading.groups[arn].name if arn in reading.groups else arn
                        waiting.append(f"old target {target.describe()} still registered in {name}")
    if waiting:
        return TargetJudgement(waiting_on="load balancer: " + "; ".join(waiting[:4])
                               + (f" (+{len(waiting) - 4} more)" if len(waiting) > 4 else ""),
                               unhealthy=pending_finding)
    return TargetJudgement()


def _target_of(task: TaskInfo, balancer: ServiceLoadBalancer, reading: TargetReading
               ) -> tuple[TargetGroupSettings, TargetHealth] | None:
    """The task's target in one of the entry's groups (its private IP on the container port), not draining."""
    for arn in balancer.target_group_arns:
        for target in reading.health.get(arn, ()):
            same_port = balancer.container_port is None or target.port in (None, balancer.container_port)
            if target.address == task.private_ip and same_port and target.state not in (DRAINING, UNUSED):
                group = reading.groups.get(arn) or TargetGroupSettings.from_elb({"TargetGroupArn": arn,
                                                                                "TargetGroupName": arn})
                return group, target
    return None


def _names(balancer: ServiceLoadBalancer, reading: TargetReading) -> str:
    return " or ".join(reading.groups[arn].name if arn in reading.groups else arn for arn in balancer.target_group_arns)


def unhealthy_target(task: TaskInfo, target: TargetHealth, group: TargetGroupSettings,
                     container_health_path: str | None) -> DeployFailed:
    """The finding: ELB's reason and description, the group's settings, and both health paths."""
    evidence = [f"ELB: {target.describe()}", group.describe()]
    if container_health_path is not None:
        evidence.append(f"the task definition's container health check probes {container_health_path}")
    return DeployFailed(
        f"task {task.short_id} ({target.address}:{target.port}) is unhealthy in target group {group.name}: "
        f"{target.reason or 'no reason given'}: {target.description or ''}".rstrip(": "),
        kind=Kind.LB_TARGET_UNHEALTHY,  # diagnosis names the category from ELB's reason
        evidence=evidence,
        details={"task_id": task.task_id, "target": f"{target.address}:{target.port}", "reason": target.reason,
                 "description": target.description, "target_group": group.to_dict(),
                 "container_health_check_path": container_health_path},
    )

