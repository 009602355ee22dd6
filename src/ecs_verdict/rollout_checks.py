"""What one look at the service proves about the rollout: done, failed, rolled back, stopping, wrong image.

Pure judgements over an ``Observation`` (and the targets): each either returns what it
found or raises the outcome that ends the wait - ``DeployFailed`` when the deploy cannot
succeed, ``CouldNotVerify`` when there is nothing to test. The wait (``stability``) calls
them on every poll; none makes an AWS call.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from ecs_verdict.deployment import TaskDefinitionRef
from ecs_verdict.deployment_records import DeploymentRecord
from ecs_verdict.errors import CouldNotVerify, DeployFailed
from ecs_verdict.kinds import Kind
from ecs_verdict.observation import DeploymentInfo, Observation, TaskInfo, family_revision
from ecs_verdict.targets import Target


ROLLBACK_MARKERS = ("rolling back", "circuit breaker")
# Rollback events are written around the time the rollback deployment is created.
EVENT_MARGIN = timedelta(seconds=60)
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


def tasks_not_ready(observation: Observation, primary: DeploymentInfo, *, desired: int, needs_health: bool,
                    what: str = "tasks") -> str:
    """What ``primary``'s tasks still lack ("" once ``desired`` of them, and all of them, are ready)."""
    own = observation.live_tasks_of(primary)
    ready = ready_primary_tasks(observation, needs_health=needs_health)
    if len(ready) < desired or len(ready) < len(own):
        states = ", ".join(task.describe_state() for task in own) or "none"
        wanted = "RUNNING and HEALTHY" if needs_health else "RUNNING"
        return f"{len(ready)} of {desired} {what} {wanted} ({states})"
    return ""


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
            kind=Kind.NO_PRIMARY_DEPLOYMENT,
        )
    return primary


def require_desired(observation: Observation) -> None:
    """``CouldNotVerify`` for a service scaled to zero: there is nothing to test."""
    if observation.desired == 0:
        raise CouldNotVerify(
            f"service {observation.service!r} has desired count 0: nothing to test; scale it up "
            f"(aws ecs update-service --cluster {observation.cluster} --service {observation.service} --desired-count 1)",
            kind=Kind.DESIRED_ZERO,
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
    return CouldNotVerify(message, kind=Kind.NO_RUNNING_TASK, evidence=evidence)


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
            kind=Kind.ROLLED_BACK,
            evidence=evidence + record.evidence() + _rollback_events(observation, primary)
            + [task.describe_stop() for task in stopped[:3]],
            details={"failed": failed_name, "running": primary.family_revision, "service_deployment": record.arn,
                     "status": record.status, "circuit_breaker": record.circuit_breaker_status},
        )
    if primary.rollout_state == "FAILED":
        raise DeployFailed(
            f"deployment {primary.id} ({primary.family_revision}) failed: {primary.rollout_state_reason or 'rolloutState FAILED'}",
            kind=Kind.ROLLED_BACK,
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
            kind=Kind.ROLLED_BACK,
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
            kind=Kind.ROLLED_BACK if listed else Kind.TASK_DEFINITION_MISMATCH,
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


STOPPED_TASKS_LIMIT = 2  # stopped tasks of the new deployment that mean "it keeps failing"
FATAL_STOP_MARKERS = ("exec format error",)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
def parse_image_digest(text: str) -> str:
    """``sha256:<64 hex>`` (the prefix may be left out); ``ValueError`` otherwise."""
    digest = text.strip().lower()
    if not digest.startswith("sha256:"):
        digest = f"sha256:{digest}"
    if not _DIGEST.match(digest):
        raise ValueError(f"expected an image digest like sha256:<64 hex characters>, got {text!r}")
    return digest


def short_digest(digest: str | None) -> str:
    """``sha256:3f2a1b2c4d5e…`` for messages (None -> "no digest")."""
    if not digest:
        return "no digest"
    return digest[:19] + "…" if len(digest) > 19 else digest


def check_tasks_stopping(
    observation: Observation, primary: DeploymentInfo, stopped_before: frozenset[str], since: datetime
) -> None:
    """``DeployFailed`` when the new deployment's tasks keep stopping (or one hit exec format error)."""
    stopped = observation.stopped_tasks_of(primary)
    fatal = [task for task in stopped if any(m in text.lower() for text in task.stop_texts() for m in FATAL_STOP_MARKERS)]
    if fatal:
        raise DeployFailed(
            f"task {fatal[0].short_id} of {primary.family_revision} cannot start: exec format error "
            "(image built for another CPU architecture; build with --platform linux/amd64)",
            kind=Kind.TASKS_STOPPING,
            evidence=stop_evidence(stopped),
            details={"stopped_tasks": [task.task_id for task in stopped], "cause": "exec_format"},
        )
    in_progress = primary.rollout_state not in (None, "COMPLETED")
    recent = [task for task in stopped if task.task_arn not in stopped_before or in_progress or _after(task, since)]
    if len(recent) >= STOPPED_TASKS_LIMIT or (in_progress and primary.failed_tasks >= STOPPED_TASKS_LIMIT and recent):
        raise DeployFailed(
            f"tasks of {primary.family_revision} keep stopping: {len(recent)} stopped "
            f"({primary.failed_tasks} failed per ECS), last: {_newest(recent).stopped_reason or 'no reason given'}",
            kind=Kind.TASKS_STOPPING,
            evidence=stop_evidence(recent),
            details={"stopped_tasks": [task.task_id for task in recent]},
        )


def stop_evidence(tasks: tuple[TaskInfo, ...] | list[TaskInfo], limit: int = 5) -> list[str]:
    """One line per stopped task, newest first, at most ``limit`` plus a count of the rest."""
    newest = sorted(tasks, key=lambda task: task.stopped_at.timestamp() if task.stopped_at else 0.0, reverse=True)
    lines = [task.describe_stop() for task in newest[:limit]]
    if len(newest) > limit:
        lines.append(f"... and {len(newest) - limit} more stopped task(s) of this deployment")
    return lines


def _newest(tasks: list[TaskInfo]) -> TaskInfo:
    return max(tasks, key=lambda task: task.stopped_at.timestamp() if task.stopped_at else 0.0)


def _after(task: TaskInfo, since: datetime) -> bool:
    return task.stopped_at is not None and task.stopped_at >= since


def check_image(targets: tuple[Target, ...], expected: str | None, record: DeploymentRecord | None = None) -> None:
    """``DeployFailed(kind=Kind.IMAGE_MISMATCH)`` naming each task's digest, the expected one and what ECS pinned."""
    if expected is None:
        return
    wrong = [target for target in targets if target.image_digest != expected]
    if wrong:
        lines = [
            f"task {target.short_id} runs {target.image_digest or 'an image with no reported digest'}, expected {expected}"
            for target in wrong
        ]
        # What ECS resolved the image to when the deploy began: a stale digest there was stale at build time.
        pinned = dict(record.image_digests) if record is not None else {}
        first = wrong[0]
        raise DeployFailed(
            f"task {first.short_id} runs {short_digest(first.image_digest)}, expected {short_digest(expected)} "
            f"({len(wrong)} of {len(targets)} tasks run another image)",
            kind=Kind.IMAGE_MISMATCH,
            evidence=lines,
            details={"expected": expected, "actual": {t.task_id: t.image_digest for t in wrong},
                     **({"pinned_by_service_revision": pinned} if pinned else {})},
        )
