"""A target group's health checks, judged the way an Application Load Balancer judges them.

ELB probes every registered target on the target group's own health check (path, port,
interval, timeout, healthy and unhealthy threshold counts, matcher), independently of
ECS's container health check. A target starts ``initial`` (``Elb.RegistrationInProgress``,
then ``Elb.InitialHealthChecking``), turns ``healthy`` after HealthyThresholdCount passes in
a row and ``unhealthy`` after UnhealthyThresholdCount failures in a row, each failure with
ELB's reason code and description (``TargetHealth`` in the ELB API reference):

- ``Target.ResponseCodeMismatch``: "Health checks failed with these codes: [404]"
- ``Target.Timeout``: "Request timed out"
- ``Target.FailedHealthChecks``: "Health checks failed" (connection refused, malformed answer)

A deregistered target is ``draining`` (``Target.DeregistrationInProgress``) for the target
group's deregistration delay, then gone (``unused``, ``Target.NotRegistered``).
Intervals and timeouts run on the stage's clock (x time_scale), as the container checks do.
"""

from __future__ import annotations

import http.client
import socket
import time
from dataclasses import dataclass
from typing import Any

# ALB's defaults for a target group that leaves them out (CreateTargetGroup).
DEFAULT_INTERVAL_S = 30
DEFAULT_TIMEOUT_S = 5
DEFAULT_HEALTHY_THRESHOLD = 5
DEFAULT_UNHEALTHY_THRESHOLD = 2
DEFAULT_DEREGISTRATION_DELAY_S = 300
# As task_health: a live Python app answers in milliseconds, but not in 50 ms on a busy machine.
MIN_PROBE_TIMEOUT_S = 1.0
# 5 s (ALB's least) x 0.01 would be 50 ms: every target probed 20 times a second on a shared runner.
MIN_PROBE_INTERVAL_S = 0.3

INITIAL, HEALTHY, UNHEALTHY, DRAINING, UNUSED = "initial", "healthy", "unhealthy", "draining", "unused"
REGISTRATION_IN_PROGRESS = ("Elb.RegistrationInProgress", "Target registration is in progress")
INITIAL_HEALTH_CHECKING = ("Elb.InitialHealthChecking", "Initial health checks in progress")
DEREGISTRATION_IN_PROGRESS = ("Target.DeregistrationInProgress", "Target deregistration is in progress")
NOT_REGISTERED = ("Target.NotRegistered", "Target is not registered to the target group")
TIMEOUT = ("Target.Timeout", "Request timed out")
FAILED_HEALTH_CHECKS = ("Target.FailedHealthChecks", "Health checks failed")
RESPONSE_CODE_MISMATCH = "Target.ResponseCodeMismatch"


def code_mismatch(status: int) -> tuple[str, str]:
    return RESPONSE_CODE_MISMATCH, f"Health checks failed with these codes: [{status}]"


def matcher_codes(matcher: str) -> frozenset[int]:
    """ELB's ``Matcher.HttpCode``: "200", "200,202" or "200-299"."""
    codes: set[int] = set()
    for part in matcher.split(","):
        low, _, high = part.strip().partition("-")
        codes.update(range(int(low), int(high or low) + 1))
    return frozenset(codes)


@dataclass(frozen=True, slots=True)
class TargetGroupCheck:
    """A target group's health check settings, on the stage's clock."""

    path: str
    port: str  # "traffic-port" or a number
    interval: int
    timeout: int
    healthy_threshold: int
    unhealthy_threshold: int
    matcher: str
    deregistration_delay: int = DEFAULT_DEREGISTRATION_DELAY_S
    time_scale: float = 1.0

    @classmethod
    def from_target_group(cls, group: dict[str, Any], time_scale: float,
                          deregistration_delay: int = DEFAULT_DEREGISTRATION_DELAY_S) -> TargetGroupCheck:
        """From a ``DescribeTargetGroups`` entry."""
        return cls(
            path=str(group.get("HealthCheckPath") or "/"),
            port=str(group.get("HealthCheckPort") or "traffic-port"),
            interval=int(group.get("HealthCheckIntervalSeconds") or DEFAULT_INTERVAL_S),
            timeout=int(group.get("HealthCheckTimeoutSeconds") or DEFAULT_TIMEOUT_S),
            healthy_threshold=int(group.get("HealthyThresholdCount") or DEFAULT_HEALTHY_THRESHOLD),
            unhealthy_threshold=int(group.get("UnhealthyThresholdCount") or DEFAULT_UNHEALTHY_THRESHOLD),
            matcher=str((group.get("Matcher") or {}).get("HttpCode") or "200"),
            deregistration_delay=deregistration_delay,
            time_scale=time_scale,
        )

    @property
    def interval_s(self) -> float:
        return max(MIN_PROBE_INTERVAL_S, self.interval * self.time_scale)

    @property
    def timeout_s(self) -> float:
        return max(MIN_PROBE_TIMEOUT_S, self.timeout * self.time_scale)

    @property
    def draining_s(self) -> float:
        return self.deregistration_delay * self.time_scale

    def probe_port(self, traffic_port: int) -> int:
        return traffic_port if self.port == "traffic-port" else int(self.port)

    def probe(self, address: str, traffic_port: int) -> tuple[str, str] | None:
        """One health check request: None when it passes, else ELB's (reason code, description)."""
        connection = http.client.HTTPConnection(address, self.probe_port(traffic_port), timeout=self.timeout_s)
        try:
            connection.request("GET", self.path, headers={"User-Agent": "ELB-HealthChecker/2.0"})
            status = connection.getresponse().status
        except (socket.timeout, TimeoutError):
            return TIMEOUT
        except (OSError, http.client.HTTPException):
            return FAILED_HEALTH_CHECKS
        finally:
            connection.close()
        return None if status in matcher_codes(self.matcher) else code_mismatch(status)


@dataclass
class TargetState:
    """One registered target's health as ELB keeps it."""

    address: str
    port: int
    state: str = INITIAL
    reason: tuple[str, str] | None = REGISTRATION_IN_PROGRESS
    passes: int = 0  # in a row
    failures: int = 0  # in a row
    draining_until: float | None = None
    probed: bool = False
    owner: str = ""  # the task it stands for (the stage's bookkeeping, not ELB's)

    def record(self, result: tuple[str, str] | None, check: TargetGroupCheck) -> None:
        """Count one probe's result and move the state as ELB does."""
        if self.state == DRAINING:
            return
        self.probed = True
        if result is None:
            self.passes, self.failures = self.passes + 1, 0
            if self.state != HEALTHY and self.passes >= check.healthy_threshold:
                self.state, self.reason = HEALTHY, None
            elif self.state == INITIAL:
                self.reason = INITIAL_HEALTH_CHECKING
            return
        self.passes, self.failures = 0, self.failures + 1
        if self.failures >= check.unhealthy_threshold:
            self.state, self.reason = UNHEALTHY, result
        elif self.state == INITIAL:
            self.reason = INITIAL_HEALTH_CHECKING
        elif self.state == UNHEALTHY:
            self.reason = result  # still unhealthy: the latest failure is the reason shown

    def drain(self, check: TargetGroupCheck) -> None:
        self.state, self.reason = DRAINING, DEREGISTRATION_IN_PROGRESS
        self.draining_until = time.monotonic() + check.draining_s

    def as_elb(self, check: TargetGroupCheck, zone: str) -> dict[str, Any]:
        """A ``TargetHealthDescription`` (botocore's shape of that name)."""
        health: dict[str, Any] = {"State": self.state}
        if self.reason is not None:
            health["Reason"], health["Description"] = self.reason
        return {
            "Target": {"Id": self.address, "Port": self.port, "AvailabilityZone": zone},
            "HealthCheckPort": str(check.probe_port(self.port)),
            "TargetHealth": health,
        }
