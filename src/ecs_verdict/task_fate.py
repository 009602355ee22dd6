"""What happened to a task that stopped answering mid-run, and the task that replaced it (pytest-free).

A test that gets no HTTP answer from its task does not yet know whose fault that is.
ECS does: one ``DescribeTasks`` tells whether the task still runs (then it is the
network, left to the retry layer), was stopped from outside the service (a scale-in or a
new deployment, a Spot interruption, a person: the service did nothing wrong, so its
checks move to the replacement ECS starts), or stopped because its essential container
exited, crashed or ran out of memory (the service's failure). ECS also stops a task with
``ServiceSchedulerInitiated`` when it failed its container or ELB health checks: that is
the service's failure too, whatever the stop code.

``wait_for_replacement`` then waits, within the run's deadline, for a task of the PRIMARY
deployment that was not a target at the start, RUNNING and HEALTHY (when the task
definition has a health check), with an address, answering the health path. Tasks stopped
at once in different processes (forked lanes, xdist workers) each get their own: a
replacement is claimed with a file created exclusively in a folder all of them share.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError
from tenacity import RetryError, Retrying, retry_if_exception_type

from ecs_verdict.aws import AwsClients
from ecs_verdict.deployment import ServiceSelector
from ecs_verdict.discovery import resolve_targets
from ecs_verdict.errors import HarnessOutcome
from ecs_verdict.health_probe import HEALTH_TIMEOUT, get_health
from ecs_verdict.http import shared_ssl_context
from ecs_verdict.targets import Target, task_id_from_arn

# Stop codes ECS gives a task stopped from outside the service.
OUTSIDE_STOP_CODES = frozenset({"ServiceSchedulerInitiated", "SpotInterruption", "UserInitiated"})
# Stop codes of a task whose own container ended it.
CRASH_STOP_CODES = frozenset({"EssentialContainerExited", "TaskFailedToStart"})
# ServiceSchedulerInitiated with these reasons: ECS replaced the task because the service failed its checks.
HEALTH_STOP_REASONS = ("Task failed container health checks", "Task failed ELB health checks")
OUT_OF_MEMORY = "OutOfMemoryError"
REPLACEMENT_POLL_S = 0.5  # between two looks for a replacement (one ListTasks/DescribeTasks round each)


class Fate(enum.Enum):
    """What became of a task that stopped answering."""

    RUNNING = "running"  # ECS still runs it: the network, not the task
    STOPPED_FROM_OUTSIDE = "stopped_from_outside"  # scale-in, new deployment, Spot, a person
    CRASHED = "crashed"  # its essential container exited, crashed, ran out of memory or failed health checks
    UNKNOWN = "unknown"  # ECS could not say (the task is gone from its memory, or AWS did not answer)


@dataclass(frozen=True, slots=True)
class ContainerEnd:
    """How one container of the task ended (as ECS reports it)."""

    name: str
    exit_code: int | None
    reason: str | None

    def describe(self) -> str:
        code = f"exit code {self.exit_code}" if self.exit_code is not None else "no exit code"
        return f"container {self.name}: {code}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True, slots=True)
class TaskFate:
    """ECS's one answer about a task, classified."""

    task_id: str
    fate: Fate
    last_status: str | None = None
    desired_status: str | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    containers: tuple[ContainerEnd, ...] = ()
    error: str | None = None  # why ECS could not say (UNKNOWN only)

    @property
    def short_id(self) -> str:
        return self.task_id[:8]

    @property
    def essential(self) -> ContainerEnd | None:
        """The container that explains the stop: one that ran out of memory, else one with a non-zero exit."""
        return (next((c for c in self.containers if c.reason and OUT_OF_MEMORY in c.reason), None)
                or next((c for c in self.containers if c.exit_code not in (None, 0)), None)
                or next(iter(self.containers), None))

    def reason(self) -> str:
        """One line: why ECS stopped it, e.g. ``SpotInterruption: Your Spot Task was interrupted.``."""
        if self.fate is Fate.RUNNING:
            return f"still {self.last_status or 'RUNNING'}"
        if self.fate is Fate.UNKNOWN:
            return self.error or "ECS could not say"
        text = ": ".join(part for part in (self.stop_code, self.stopped_reason) if part)
        container = self.essential
        if self.fate is Fate.CRASHED and container is not None:
            text += f"; {container.describe()}"
        return text or "stopped"

    def to_dict(self) -> dict[str, Any]:
        container = self.essential
        return {"task_id": self.task_id, "fate": self.fate.value, "stop_code": self.stop_code,
                "stopped_reason": self.stopped_reason,
                "container": container.name if container else None,
                "exit_code": container.exit_code if container else None,
                "container_reason": container.reason if container else None}


def classify(task: Mapping[str, Any]) -> TaskFate:
    """The fate of ``task`` as ``DescribeTasks`` returned it (pure)."""
    task_id = task_id_from_arn(str(task.get("taskArn", "")))
    containers = tuple(ContainerEnd(str(c.get("name", "?")), c.get("exitCode"), c.get("reason"))
                       for c in task.get("containers", []))
    last, desired = task.get("lastStatus"), task.get("desiredStatus")
    code, reason = task.get("stopCode"), task.get("stoppedReason")
    stopping = last in ("DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED") or desired == "STOPPED"
    fields = dict(task_id=task_id, last_status=last, desired_status=desired, stop_code=code, stopped_reason=reason,
                  containers=containers)
    if not stopping:
        return TaskFate(fate=Fate.RUNNING, **fields)
    health_stop = any((reason or "").startswith(text) for text in HEALTH_STOP_REASONS)
    out_of_memory = any(OUT_OF_MEMORY in (c.reason or "") for c in containers)
    if code in CRASH_STOP_CODES or health_stop or out_of_memory:
        return TaskFate(fate=Fate.CRASHED, **fields)
    if code in OUTSIDE_STOP_CODES:
        return TaskFate(fate=Fate.STOPPED_FROM_OUTSIDE, **fields)
    if any(c.exit_code not in (None, 0, 143) for c in containers):
        return TaskFate(fate=Fate.CRASHED, **fields)  # no stop code yet, but the container died on its own
    return TaskFate(fate=Fate.UNKNOWN, error=f"stopping with stop code {code or 'none'}", **fields)


def ask_fate(clients: AwsClients, cluster: str, task: str) -> TaskFate:
    """One ``DescribeTasks`` for ``task`` (an ARN or an id), classified; UNKNOWN when AWS could not say."""
    task_id = task_id_from_arn(task)
    try:
        answer = clients.ecs.describe_tasks(cluster=cluster, tasks=[task])
    except (BotoCoreError, ClientError) as error:
        return TaskFate(task_id, Fate.UNKNOWN, error=f"DescribeTasks failed: {type(error).__name__}")
    found = answer.get("tasks") or []
    if not found:
        failure = next(iter(answer.get("failures") or []), {})
        return TaskFate(task_id, Fate.UNKNOWN, error=f"ECS no longer knows the task ({failure.get('reason', 'MISSING')})")
    return classify(found[0])


# -- the replacement -----------------------------------------------------------------------------------


class Claims:
    """Replacements handed out, in a folder every process of the run shares (made before they fork).

    A file per replacement, created exclusively, names the stopped task it replaces: a second
    stopped task cannot take it, and another process asking about the same stopped task finds
    the same replacement again.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def claim(self, stopped_task_id: str, replacement_task_id: str) -> bool:
        path = self.folder / replacement_task_id
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text(encoding="utf-8").strip() == stopped_task_id
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(stopped_task_id)
        return True


class NoReplacementYet(Exception):
    """No fresh, healthy, answering task yet; the message says what was seen (retried until the deadline)."""


@dataclass(frozen=True, slots=True)
class ReplacementSearch:
    """Where to look for a replacement and how to know it is ready."""

    selector: ServiceSelector
    health_path: str


def find_replacement_once(clients: AwsClients, search: ReplacementSearch, stopped_task_id: str,
                          known_task_ids: Collection[str], claims: Claims, http: httpx.Client) -> Target:
    """One look: a ready PRIMARY task not known at the start, answering the health path, claimed for us.

    After a scale-in (the service wants no more tasks than are ready, none of them new): a task
    known at the start that still runs. Raises ``NoReplacementYet`` naming what was seen otherwise.
    """
    try:
        selector = search.selector
        deployment = resolve_targets(clients, cluster=selector.cluster, service=selector.service,
                                     container=selector.container, port=selector.port, address=selector.address)
    except HarnessOutcome as outcome:
        raise NoReplacementYet(str(outcome)) from None
    except (BotoCoreError, ClientError) as error:
        raise NoReplacementYet(f"AWS: {type(error).__name__}") from None
    fresh = sorted((t for t in deployment.targets if t.task_id not in known_task_ids), key=lambda t: t.task_id)
    survivors = sorted((t for t in deployment.targets if t.task_id in known_task_ids and t.task_id != stopped_task_id),
                       key=lambda t: t.task_id)
    if not fresh and survivors and deployment.desired_count <= len(deployment.targets):
        # The service scaled in: it wants no more tasks than it runs, so no replacement comes. The task left the
        # service; its checks go to one that stays (the run checks that one too). Not claimed: it is nobody's.
        return survivors[0]
    if not fresh:
        raise NoReplacementYet("no new task of the PRIMARY deployment is RUNNING and HEALTHY yet "
                               f"({len(deployment.targets)} ready, the service wants {deployment.desired_count})")
    seen = []
    for candidate in fresh:
        answer = get_health(http, candidate, search.health_path)
        if answer.status is None or not 200 <= answer.status < 400:
            seen.append(answer.describe())
            continue
        if claims.claim(stopped_task_id, candidate.task_id):
            return candidate
        seen.append(f"task {candidate.short_id} already replaces another stopped task")
    raise NoReplacementYet("; ".join(seen))


def wait_for_replacement(clients: AwsClients, search: ReplacementSearch, stopped_task_id: str,
                         known_task_ids: Collection[str], claims: Claims, *, deadline: float,
                         clock: Callable[[], float] = time.monotonic,
                         sleep: Callable[[float], None] = time.sleep) -> Target | str:
    """The replacement of ``stopped_task_id`` once ready, or (at ``deadline``, a ``clock()`` time) what was last seen."""
    with httpx.Client(timeout=HEALTH_TIMEOUT, verify=shared_ssl_context(), follow_redirects=False) as http:
        retrying = Retrying(
            sleep=sleep,
            stop=lambda _state: clock() >= deadline,
            wait=lambda _state: max(0.0, min(REPLACEMENT_POLL_S, deadline - clock())),
            retry=retry_if_exception_type(NoReplacementYet),
        )
        try:
            return retrying(find_replacement_once, clients, search, stopped_task_id, known_task_ids, claims, http)
        except RetryError as error:
            last = error.last_attempt.exception() if error.last_attempt.failed else None
            return str(last) if last is not None else "no look finished before the deadline"


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """What this process learned about a task that stopped answering."""

    fate: TaskFate
    replacement: Target | None = None
    last_seen: str = ""  # what the wait for a replacement saw last, when none came
    reported: bool = False  # its cause was reported once already (later tests point at it)

    scaled_in: bool = False  # no replacement came: the service wants fewer tasks; ``replacement`` is one that stays
    waited_s: float = 0.0  # how long the wait for a replacement took

    def what(self) -> str:
        """What became of the task, for a report: crashed, or stopped and never replaced in time."""
        if self.fate.fate is Fate.CRASHED:
            return f"stopped mid-run: {self.fate.reason()}"
        return (f"stopped mid-run by ECS ({self.fate.reason()}) and no replacement was healthy before the "
                f"run's deadline: {self.last_seen}")

    def note(self) -> str:
        assert self.replacement is not None
        if self.scaled_in:
            return (f"task {self.fate.short_id} stopped mid-run by ECS: {self.fate.reason()}; the service scaled in "
                    f"(no replacement comes): its checks re-ran on task {self.replacement.short_id} "
                    f"({self.replacement.base_url}), which the run checks too")
        return (f"task {self.fate.short_id} stopped mid-run by ECS: {self.fate.reason()}; its checks re-ran on task "
                f"{self.replacement.short_id} ({self.replacement.base_url}, ready after {self.waited_s:.1f} s)")


def follow_task(clients: AwsClients, search: ReplacementSearch, task: Target, known_task_ids: Collection[str],
                claims: Claims, *, deadline: float) -> TaskOutcome:
    """What became of a task that stopped answering: its fate, and when ECS stopped it, its replacement (or why none).

    ``deadline`` is the run's (a ``time.monotonic()`` time): the wait for a replacement ends there.
    """
    fate = ask_fate(clients, search.selector.cluster, task.task_arn or task.task_id)
    if fate.fate is not Fate.STOPPED_FROM_OUTSIDE:
        return TaskOutcome(fate)
    began = time.monotonic()
    found = wait_for_replacement(clients, search, task.task_id, known_task_ids, claims, deadline=max(deadline, began))
    waited = time.monotonic() - began
    if isinstance(found, Target):
        return TaskOutcome(fate, replacement=found, scaled_in=found.task_id in known_task_ids, waited_s=waited)
    return TaskOutcome(fate, last_seen=f"{found} (waited {waited:.1f} s)", waited_s=waited)
