"""ECS native blue/green: test the green revision at its PAUSE hook, then continue the deployment or roll it back.

A service deploying with ``strategy: BLUE_GREEN`` and a ``PAUSE`` lifecycle hook (at
POST_SCALE_UP, say) starts the new revision's tasks (green) beside the serving ones (blue)
and waits: its service deployment shows the hook ``AWAITING_ACTION`` in
``lifecycleHookDetails``. ``--continue-deployment`` waits for that pause (not for blue to
drain: blue serves until the deploy is continued), tests green's tasks directly at their
addresses before any user traffic reaches them, and then acts on the hook with
``ContinueServiceDeployment``:

- exit 0: CONTINUE. A second PAUSE hook that follows (POST_TEST_TRAFFIC_SHIFT) is continued
  by the same run: the verdict is about green's tasks, and the test-traffic shift changes
  which listener reaches them, not the tasks. Except when the service has a test listener
  the run could not check green through yet (``leave_paused_at``): that hook is left
  AWAITING_ACTION for the gate run there, which checks green through the test listener too
  (``ecs_verdict.listeners``); its own timeout action decides if no run comes.
- exit 1: ROLLBACK: ECS returns to blue, which never stopped serving, and stops green.
- exit 6 (could not verify): nothing. The hook stays paused and its own timeout action decides.

After its last action the run follows the record (bounded by ``follow_s``) until the
deployment finishes, and the verdict records each action, when, and how the deployment ended.
Pure of pytest; the AWS client comes in as an argument.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import RetryError, Retrying, retry_if_exception_type, wait_fixed

from ecs_verdict.aws import AwsClients, error_code
from ecs_verdict.deployment_records import DeploymentRecord, parse_record
from ecs_verdict.kinds import Kind
from ecs_verdict.rollout_checks import tasks_not_ready
from ecs_verdict.errors import CouldNotVerify
from ecs_verdict.observation import DeploymentInfo, Observation

NO_PAUSED_HOOK = "no_paused_hook"
DEFAULT_FOLLOW_S = 60.0  # how long the run follows the deployment after its last action
FOLLOW_POLL_S = 0.5
CONTINUE, ROLLBACK = "CONTINUE", "ROLLBACK"


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class PausedHook:
    """The PAUSE hook a service deployment waits at; JSON-able (it crosses to xdist workers in the run state)."""

    service_deployment_arn: str
    hook_id: str
    stage: str | None
    expires_at: str | None
    timeout_action: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"service_deployment_arn": self.service_deployment_arn, "hook_id": self.hook_id, "stage": self.stage,
                "expires_at": self.expires_at, "timeout_action": self.timeout_action}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PausedHook:
        return cls(str(data["service_deployment_arn"]), str(data["hook_id"]), data.get("stage"),
                   data.get("expires_at"), data.get("timeout_action"))

    def describe(self) -> str:
        """``lifecycle hook ecs-pause-1a2b at POST_SCALE_UP``."""
        return f"lifecycle hook {self.hook_id} at {self.stage or 'an unknown stage'}"

    def left_paused(self, why: str) -> str:
        """The one line a could-not-verify run says about the hook it did not act on."""
        decides = f"its timeout action ({self.timeout_action or 'unknown'}" + (
            f" at {self.expires_at})" if self.expires_at else ")")
        return f"{self.describe()} left AWAITING_ACTION: {why}; {decides} decides"


def paused_hook_of(record: DeploymentRecord | None) -> PausedHook | None:
    """The record's paused hook as a value (None: the deployment waits at no PAUSE hook)."""
    hook = record.paused_hook if record is not None else None
    if record is None or hook is None:
        return None
    expires = hook.expires_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if hook.expires_at else None
    return PausedHook(record.arn, hook.hook_id, record.lifecycle_stage, expires, hook.timeout_action)


def paused_hook_note(record: DeploymentRecord | None, unavailable: str | None = None) -> str:
    """"" when the current deployment waits at a PAUSE hook; else what the wait still waits for.

    Raises ``CouldNotVerify(kind=Kind.NO_PAUSED_HOOK)`` when no pause is coming: no deployment
    records, a deployment that finished, one that declares no PAUSE hook, or one past them all.
    """
    if record is None:
        why = f"the deployment records cannot be read ({unavailable})" if unavailable else (
            "the service reports no current service deployment (describe-services has no currentServiceDeployment)")
        raise no_paused_hook(why)
    if record.paused_hook is not None:
        return ""
    if record.finished:
        raise no_paused_hook(f"service deployment {record.short_id} is {record.status}: nothing waits at a hook")
    if not record.pause_stages:
        strategy = record.strategy or "an unreported strategy"
        raise no_paused_hook(f"service deployment {record.short_id} ({strategy}) declares no PAUSE lifecycle hook")
    reached = {hook.hook_id for hook in record.hooks if hook.target_type == "PAUSE"}
    if len(reached) >= len(record.pause_stages):
        raise no_paused_hook(f"service deployment {record.short_id} is past its PAUSE hooks "
                             f"(now at {record.lifecycle_stage or 'an unreported stage'})")
    return (f"waiting for service deployment {record.short_id} to pause at "
            f"{', '.join(record.pause_stages)} (now at {record.lifecycle_stage or 'an unreported stage'})")


def no_paused_hook(why: str) -> CouldNotVerify:
    return CouldNotVerify(f"--continue-deployment found no paused lifecycle hook: {why}", kind=NO_PAUSED_HOOK)


def green_not_settled(observation: Observation, primary: DeploymentInfo, *, needs_health: bool) -> str:
    """What green (the PRIMARY) still lacks while the deployment is paused ("" when its tasks are ready).

    Blue's deployment stays listed and running: that is the point of blue/green, not a
    roll-out still moving, so only green's own tasks count.
    """
    return tasks_not_ready(observation, primary, desired=primary.desired, needs_health=needs_health,
                           what="green tasks")


@dataclass(frozen=True, slots=True)
class HookAction:
    """One ContinueServiceDeployment call the run made, and what ECS answered."""

    hook_id: str
    stage: str | None
    action: str
    at: str
    accepted: bool
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"hook_id": self.hook_id, "stage": self.stage, "action": self.action, "at": self.at,
                "accepted": self.accepted, "error": self.error}

    def describe(self) -> str:
        done = "done" if self.accepted else f"refused ({self.error})"
        return f"{self.action} lifecycle hook {self.hook_id} at {self.stage or '?'} at {self.at}: {done}"


@dataclass(frozen=True, slots=True)
class GateRecord:
    """What ``--continue-deployment`` did to the service deployment; the verdict's ``deployment_gate``."""

    service_deployment_arn: str
    hook: PausedHook
    actions: tuple[HookAction, ...] = ()
    final_status: str | None = None  # the record's status when the run stopped following it
    final_stage: str | None = None
    notes: tuple[str, ...] = ()
    polls: int = 0

    @property
    def refused(self) -> HookAction | None:
        return next((action for action in self.actions if not action.accepted), None)

    def to_dict(self) -> dict[str, Any]:
        return {"service_deployment_arn": self.service_deployment_arn, "paused_hook": self.hook.to_dict(),
                "actions": [action.to_dict() for action in self.actions], "final_status": self.final_status,
                "final_stage": self.final_stage, "notes": list(self.notes), "polls": self.polls}


class _Moving(Exception):
    """The deployment is between hooks or finishing; look again."""


@dataclass(slots=True)
class _Follow:
    clients: AwsClients
    arn: str
    polls: int = 0
    last: DeploymentRecord | None = None
    seen_hooks: set[str] = field(default_factory=set)

    def read(self) -> DeploymentRecord:
        self.polls += 1
        answer = self.clients.ecs.describe_service_deployments(serviceDeploymentArns=[self.arn])
        raw = next(iter(answer.get("serviceDeployments") or []), None)
        if raw is None:
            raise CouldNotVerify(f"service deployment {self.arn} is no longer reported", kind=Kind.AWS_ERROR)
        # The target revision is not needed to follow hooks: an empty revision keeps it one call a poll.
        self.last = parse_record(raw, {})
        return self.last

    def next_pause_or_end(self) -> DeploymentRecord:
        record = self.read()
        hook = record.paused_hook
        if record.finished or (hook is not None and hook.hook_id not in self.seen_hooks):
            return record
        raise _Moving(record.lifecycle_stage or record.status)


def act_on_hook(clients: AwsClients, hook: PausedHook, exit_code: int, *, follow_s: float = DEFAULT_FOLLOW_S,
                sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                leave_paused_at: frozenset[str] = frozenset()) -> GateRecord:
    """CONTINUE on exit 0 (and the PAUSE hooks that follow, but at a stage of ``leave_paused_at``), ROLLBACK on
    exit 1, nothing otherwise."""
    if exit_code not in (0, 1):
        return GateRecord(hook.service_deployment_arn, hook, notes=(hook.left_paused(
            f"the run could not verify the green revision (exit {exit_code})"),))
    action = CONTINUE if exit_code == 0 else ROLLBACK
    follow = _Follow(clients, hook.service_deployment_arn)
    actions: list[HookAction] = []
    notes: list[str] = []
    current: PausedHook | None = hook
    deadline = clock() + follow_s
    while current is not None:
        done = _call(clients, current, action)
        actions.append(done)
        follow.seen_hooks.add(current.hook_id)
        if not done.accepted:
            notes.append(current.left_paused(f"ContinueServiceDeployment {action} was refused ({done.error})"))
            break
        record = _follow_until(follow, deadline, sleep, clock, notes)
        current = paused_hook_of(record) if action == CONTINUE and record is not None else None
        if current is not None and current.stage in leave_paused_at:
            notes.append(current.left_paused("this run could not check green through the test listener (it reached "
                                             "blue until this hook): run the gate again now to check it there"))
            break
        if current is not None:
            notes.append(f"{current.describe()} continued by the same run: the verdict covers the green tasks, "
                         "which the test-traffic shift does not change")
    last = follow.last
    return GateRecord(hook.service_deployment_arn, hook, tuple(actions),
                      final_status=last.status if last else None,
                      final_stage=last.lifecycle_stage if last else None, notes=tuple(notes), polls=follow.polls)


def _call(clients: AwsClients, hook: PausedHook, action: str) -> HookAction:
    at = utc_now()
    try:
        clients.ecs.continue_service_deployment(serviceDeploymentArn=hook.service_deployment_arn,
                                                hookId=hook.hook_id, action=action)
    except ClientError as error:
        message = (error.response.get("Error") or {}).get("Message") or ""
        return HookAction(hook.hook_id, hook.stage, action, at, False, f"{error_code(error)}: {message}".strip())
    except BotoCoreError as error:
        return HookAction(hook.hook_id, hook.stage, action, at, False, f"{type(error).__name__}: {error}")
    return HookAction(hook.hook_id, hook.stage, action, at, True)


def _follow_until(follow: _Follow, deadline: float, sleep: Callable[[float], None], clock: Callable[[], float],
                  notes: list[str]) -> DeploymentRecord | None:
    """The record at the next PAUSE hook or at its end; None (with a note) when the budget ran out or AWS failed."""
    retrying = Retrying(sleep=sleep, stop=lambda _state: clock() >= deadline, wait=wait_fixed(FOLLOW_POLL_S),
                        retry=retry_if_exception_type(_Moving), reraise=False)
    try:
        return retrying(follow.next_pause_or_end)
    except RetryError:
        where = follow.last.lifecycle_stage or follow.last.status if follow.last else "unknown"
        notes.append(f"stopped following service deployment {follow.arn.rsplit('/', 1)[-1]} after {follow.polls} "
                     f"looks: still {follow.last.status if follow.last else '?'} at {where}; ECS finishes it")
    except (ClientError, BotoCoreError, CouldNotVerify) as error:
        notes.append(f"could not follow the service deployment after the action: {error}")
    return None
