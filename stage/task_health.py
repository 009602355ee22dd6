"""The task definition's container health check, judged the way ECS judges it, on the stage's clock."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

MIN_HEALTH_CHECK_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """The task definition's container health check, on the stage's clock.

    Two factors make the clock: ``time_scale`` shortens the interval and the timeout
    (30 s checks x 0.01 = every 0.3 s), ``start_period_scale`` the startPeriod. They are
    separate because the startPeriod is the app's time to boot, which does not shrink
    with the stage's clock: counted in real seconds (x 1.0) a build that needs 15 s of
    its 60 s is HEALTHY, as on ECS; a smaller factor is for tests of tasks that never
    answer, which would otherwise wait out the whole startPeriod.
    """

    path: str | None  # None: the command cannot succeed in this image (curl/wget)
    interval: float  # the next four as the task definition declares them (seconds, count)
    timeout: float
    retries: int
    start_period: float
    time_scale: float = 1.0
    start_period_scale: float = 1.0

    @classmethod
    def from_task_definition(
        cls, container: dict[str, Any], time_scale: float, start_period_scale: float
    ) -> HealthCheck | None:
        check = container.get("healthCheck")
        if not check:
            return None
        command = " ".join(check["command"][1:])
        # The image is python:3.11-slim: it has no curl or wget (runbook lesson 1).
        has_tool = not re.search(r"\b(curl|wget)\b", command)
        match = re.search(r"https?://[^/'\" ]+(/[^'\" )]*)?", command)
        path = (match.group(1) or "/") if (match and has_tool) else None
        # ECS's defaults for fields a task definition leaves out.
        return cls(
            path=path,
            interval=check.get("interval", 30),
            timeout=check.get("timeout", 5),
            retries=check.get("retries", 3),
            start_period=check.get("startPeriod", 0),
            time_scale=time_scale,
            start_period_scale=start_period_scale,
        )

    @property
    def interval_s(self) -> float:
        return self.interval * self.time_scale

    @property
    def timeout_s(self) -> float:
        # A live Python app answers in milliseconds, but not in 50 ms on a busy machine.
        return max(MIN_HEALTH_CHECK_TIMEOUT_S, self.timeout * self.time_scale)

    @property
    def start_period_s(self) -> float:
        return self.start_period * self.start_period_scale

    @property
    def judged_within_s(self) -> float:
        """The longest a started task can take to become HEALTHY or be stopped as UNHEALTHY."""
        return self.start_period_s + self.retries * (self.interval_s + self.timeout_s)

    def describe(self) -> str:
        """One line for a person: what the stage's clock makes of the declared check."""
        return (
            f"health checks every {self.interval_s:g} s (interval {self.interval:g} s x {self.time_scale:g}), "
            f"timeout {self.timeout_s:g} s, {self.retries} retries; startPeriod {self.start_period:g} s "
            f"counted as {self.start_period_s:.1f} s (x {self.start_period_scale:g})"
        )

    def passes(self, ip: str, port: int) -> bool:
        if self.path is None:
            return False
        try:
            with urllib.request.urlopen(f"http://{ip}:{port}{self.path}", timeout=self.timeout_s):
                return True
        except (urllib.error.URLError, OSError, ValueError):
            return False
