"""The health path, asked over HTTP: one GET per target, all targets at once, and a 404 explained.

The wait's HTTP side (no AWS call): a connection failure is an answer with no status,
502/503/504 are transient, and a 404 while the server is up is a finding that names the
known health path that does answer.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from ecs_verdict.containers import ContainerChoice
from ecs_verdict.errors import DeployFailed
from ecs_verdict.http import get_tolerating_one_reset
from ecs_verdict.kinds import Kind
from ecs_verdict.targets import Target


DEFAULT_HEALTH_PATH = "/health"
HEALTH_PATH_FROM_TASK_DEFINITION = "task definition"
HEALTH_PATH_FROM_DEFAULT = "default"
KNOWN_HEALTH_PATHS = ("/health", "/api/health", "/healthz")
TRANSIENT_STATUSES = frozenset({502, 503, 504})
HEALTH_TIMEOUT = httpx.Timeout(3.0, connect=2.0)
HEALTH_THREADS = 32  # health GETs in flight at once (the wait's HTTP side; no AWS call)
@dataclass(frozen=True, slots=True)
class HealthAnswer:
    """One GET of the health path on one target."""

    target: Target
    url: str
    status: int | None
    error: str | None

    @property
    def transient(self) -> bool:
        return self.status is None or self.status in TRANSIENT_STATUSES

    def describe(self) -> str:
        what = f"answered {self.status}" if self.status is not None else self.error
        return f"task {self.target.short_id} {self.url}: {what}"


def get_health(http: httpx.Client, target: Target, path: str) -> HealthAnswer:
    """GET ``path`` on ``target``; a connection failure is an answer with ``status=None`` (one reset is not)."""
    url = target.base_url + path
    try:
        response = get_tolerating_one_reset(http, url, timeout=HEALTH_TIMEOUT)
    except httpx.TransportError as error:
        return HealthAnswer(target, url, None, type(error).__name__)
    return HealthAnswer(target, url, response.status_code, None)


def get_health_all(http: httpx.Client, targets: tuple[Target, ...], path: str) -> list[HealthAnswer]:
    """``get_health`` on every target at once (in target order): 24 tasks answer in the time of one.

    The threads end before this returns: nothing keeps running between polls (a forked lane
    must not copy a thread's half-held lock).
    """
    if len(targets) < 2:
        return [get_health(http, target, path) for target in targets]
    with ThreadPoolExecutor(max_workers=min(HEALTH_THREADS, len(targets)), thread_name_prefix="health") as pool:
        return list(pool.map(lambda target: get_health(http, target, path), targets))


def health_path_missing(http: httpx.Client, answer: HealthAnswer, path: str, choice: ContainerChoice, *,
                        source: str = "option") -> DeployFailed:
    """The health path is 404 while the server answers: name a known path that works, if any."""
    working = [
        other for other in KNOWN_HEALTH_PATHS
        if other != path and get_health(http, answer.target, other).status == 200
    ]  # fmt: skip
    if not working:
        fix = f"none of {', '.join(p for p in KNOWN_HEALTH_PATHS if p != path)} answers 200 either"
    elif source == HEALTH_PATH_FROM_TASK_DEFINITION:
        # The harness probed what ECS probes: the task definition is what needs the fix.
        fix = f"{', '.join(working)} answers 200: make the task definition's health check probe {working[0]}"
    else:
        fix = f"{', '.join(working)} answers 200: use --health-path {working[0]}"
    evidence = [answer.describe()]
    if choice.health_check_path == path:
        evidence.append(f"the task definition's container health check probes the same path ({path})")
    return DeployFailed(
        f"health path {path} answered 404 on task {answer.target.short_id} ({answer.url}) while the server is up; {fix}",
        kind=Kind.HEALTH_PATH_404,
        evidence=evidence,
        details={"path": path, "working_paths": working, "url": answer.url},
    )
