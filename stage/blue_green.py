"""ECS's native blue/green deployment, as the stage plays it: phases, PAUSE lifecycle hooks, continue or roll back.

A service whose ``deploymentConfiguration.strategy`` is ``BLUE_GREEN`` deploys a new
revision (green) beside the one that serves (blue): green's tasks start while blue keeps
its own, then the deployment walks ECS's lifecycle stages
(``ServiceDeploymentLifecycleStage`` in botocore's model): SCALE_UP, POST_SCALE_UP,
TEST_TRAFFIC_SHIFT, POST_TEST_TRAFFIC_SHIFT, PRODUCTION_TRAFFIC_SHIFT,
POST_PRODUCTION_TRAFFIC_SHIFT, BAKE_TIME, CLEAN_UP. A ``PAUSE`` lifecycle hook on a stage
holds the deployment there: ECS gives the hook an id and shows it ``AWAITING_ACTION`` in
``lifecycleHookDetails`` until ``ContinueServiceDeployment`` says CONTINUE (next stage) or
ROLLBACK (back to blue, green stopped), or its ``timeoutConfiguration`` runs out and its
``action`` is taken.

With ``StageOptions(load_balancer=True)`` green's tasks join the alternate target group and
the traffic shifts move the test, then the production listener rule to it
(``stage.load_balancer``); without, the shifts are stages and service events only. It runs PAUSE hooks only
(an ``AWS_LAMBDA`` hook is never invoked), and only on the POST_* stages, which come after
green's tasks started. Times run on the stage's clock: a hook's ``timeoutInMinutes`` and the
``bakeTimeInMinutes`` are multiplied by its time scale (x 0.01: 10 minutes is 6 s).

Called under the scheduler's lock, from its reconcile loop and from the stage's answer to
``ContinueServiceDeployment``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from stage.seed import SERVICE

if TYPE_CHECKING:
    from stage.scheduler import Deployment, Scheduler

BLUE_GREEN = "BLUE_GREEN"
PAUSE = "PAUSE"
AWAITING_ACTION = "AWAITING_ACTION"
# The stages a blue/green deployment walks once its tasks are started, in order.
STAGES = ("SCALE_UP", "POST_SCALE_UP", "TEST_TRAFFIC_SHIFT", "POST_TEST_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT",
          "POST_PRODUCTION_TRAFFIC_SHIFT", "BAKE_TIME", "CLEAN_UP")
PAUSABLE = frozenset({"POST_SCALE_UP", "POST_TEST_TRAFFIC_SHIFT", "POST_PRODUCTION_TRAFFIC_SHIFT"})
DEFAULT_HOOK_TIMEOUT_MINUTES = 1440  # botocore: timeoutInMinutes defaults to 24 hours
DEFAULT_TIMEOUT_ACTION = "ROLLBACK"
SHIFT_EVENTS = {"TEST_TRAFFIC_SHIFT": "test", "PRODUCTION_TRAFFIC_SHIFT": "production"}


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class HookDetail:
    """One ``DeploymentLifecycleHookDetail``: a PAUSE hook ECS reached."""

    hook_id: str
    stage: str
    timeout_action: str
    expires_at: datetime
    expires_monotonic: float
    status: str = AWAITING_ACTION  # AWAITING_ACTION | SUCCEEDED | TIMED_OUT

    def as_ecs(self) -> dict[str, Any]:
        return {"hookId": self.hook_id, "targetType": PAUSE, "status": self.status,
                "expiresAt": self.expires_at.timestamp(), "timeoutAction": self.timeout_action}


@dataclass
class BlueGreen:
    """Where one blue/green deployment is: its stage, the hooks it reached, its bake."""

    pauses: dict[str, tuple[float, str]]  # stage -> (timeout in stage seconds, timeout action)
    bake_s: float
    stage: str = "SCALE_UP"
    hooks: list[HookDetail] = field(default_factory=list)
    bake_until: float | None = None
    rolled_back: str | None = None  # why the deployment went back to blue

    def awaiting(self) -> HookDetail | None:
        return next((hook for hook in self.hooks if hook.status == AWAITING_ACTION), None)

    def hook_at(self, stage: str) -> HookDetail | None:
        return next((hook for hook in self.hooks if hook.stage == stage), None)


def from_configuration(configuration: dict[str, Any], time_scale: float) -> BlueGreen | None:
    """The blue/green state a new deployment starts in, or None when the service deploys ROLLING."""
    if configuration.get("strategy") != BLUE_GREEN:
        return None
    pauses: dict[str, tuple[float, str]] = {}
    for hook in configuration.get("lifecycleHooks") or []:
        if hook.get("targetType") != PAUSE:
            continue  # the stage invokes no Lambda
        timeout = hook.get("timeoutConfiguration") or {}
        seconds = float(timeout.get("timeoutInMinutes", DEFAULT_HOOK_TIMEOUT_MINUTES)) * 60 * time_scale
        for stage in hook.get("lifecycleStages") or []:
            if stage in PAUSABLE:
                pauses[stage] = (seconds, str(timeout.get("action", DEFAULT_TIMEOUT_ACTION)))
    bake_s = float(configuration.get("bakeTimeInMinutes", 0)) * 60 * time_scale
    return BlueGreen(pauses=pauses, bake_s=bake_s)


def advance(scheduler: Scheduler, green: Deployment) -> None:
    """Move ``green`` through its stages as far as it can go now (every reconcile calls it)."""
    state = green.blue_green
    assert state is not None
    clock = time.monotonic()
    waiting = state.awaiting()
    if waiting is not None:
        if clock < waiting.expires_monotonic:
            return
        waiting.status = "TIMED_OUT"
        scheduler.record_event(f"(service {SERVICE}) (deployment {green.id}) lifecycle hook {waiting.hook_id} at "
                         f"{waiting.stage} timed out: {waiting.timeout_action}.")
        if waiting.timeout_action == "ROLLBACK":
            roll_back(scheduler, green, f"lifecycle hook {waiting.hook_id} at {waiting.stage} timed out")
            return
        state.stage = _next(state.stage)
    while True:
        stage = state.stage
        if stage == "SCALE_UP":
            if not _green_ready(scheduler, green):
                return
        elif stage in PAUSABLE and stage in state.pauses and state.hook_at(stage) is None:
            _pause(scheduler, green, stage)
            return
        elif stage in SHIFT_EVENTS:
            if scheduler.load_balancer is not None:
                scheduler.load_balancer.shift(SHIFT_EVENTS[stage], green.id)
            scheduler.record_event(f"(service {SERVICE}) (deployment {green.id}) {SHIFT_EVENTS[stage]} traffic "
                             "shifted to the new service revision.")
        elif stage == "BAKE_TIME":
            if state.bake_until is None:
                state.bake_until = clock + state.bake_s
            if clock < state.bake_until:
                return
        elif stage == "CLEAN_UP":
            _clean_up(scheduler, green)
            return
        state.stage = _next(stage)
        green.updated_at = _now()


def continue_or_roll_back(scheduler: Scheduler, deployment: Deployment, hook_id: str, action: str
                          ) -> tuple[str, str] | None:
    """``ContinueServiceDeployment`` on the stage: None when done, else (error code, message) as ECS answers."""
    state = deployment.blue_green
    hook = next((item for item in state.hooks if item.hook_id == hook_id), None) if state else None
    if action not in ("CONTINUE", "ROLLBACK"):
        return "InvalidParameterException", f"action {action!r} is not one of CONTINUE, ROLLBACK."
    if state is None or hook is None:
        return "InvalidParameterException", f"hookId {hook_id!r} is not a lifecycle hook of this service deployment."
    if deployment.rollout_state != "IN_PROGRESS" or hook.status != AWAITING_ACTION:
        return ("ClientException", f"lifecycle hook {hook_id} is {hook.status}, not {AWAITING_ACTION}, or the service "
                                   "deployment is no longer IN_PROGRESS.")
    hook.status = "SUCCEEDED"
    scheduler.record_event(f"(service {SERVICE}) (deployment {deployment.id}) lifecycle hook {hook_id} at "
                     f"{hook.stage}: {action}.")
    if action == "ROLLBACK":
        roll_back(scheduler, deployment, f"ContinueServiceDeployment ROLLBACK at lifecycle hook {hook_id} "
                                         f"({hook.stage})")
    else:
        state.stage = _next(state.stage)
    scheduler.reconcile()
    return None


def roll_back(scheduler: Scheduler, green: Deployment, why: str) -> None:
    """Back to blue, which never stopped serving: it is the PRIMARY again and green's tasks stop."""
    state = green.blue_green
    assert state is not None
    blue = next((d for d in scheduler.deployments if d is not green and d.rollout_state == "COMPLETED"), None)
    state.rolled_back = why
    green.rollout_state = "FAILED"
    green.rollout_reason = f"ECS deployment rolled back: {why}."
    green.updated_at = _now()
    scheduler.record_event(f"(service {SERVICE}) (deployment {green.id}) deployment failed: {why}.")
    if scheduler.load_balancer is not None:
        scheduler.load_balancer.roll_back(green.id)
    if blue is None:
        return
    green.status, green.desired = "ACTIVE", 0
    blue.status = "PRIMARY"
    blue.updated_at = _now()
    scheduler.deployments = [blue, green] + [d for d in scheduler.deployments if d not in (blue, green)]
    scheduler.record_event(f"(service {SERVICE}) (deployment {green.id}) rolled back to deployment {blue.id}.")


def _next(stage: str) -> str:
    return STAGES[min(STAGES.index(stage) + 1, len(STAGES) - 1)]


def _green_ready(scheduler: Scheduler, green: Deployment) -> bool:
    ready = [task for task in scheduler.live_tasks(green) if task.status == "RUNNING" and scheduler.in_service(task)
             and (task.health == "HEALTHY" or scheduler.health_check(green.task_definition_arn) is None)]
    return len(ready) >= green.desired


def _pause(scheduler: Scheduler, green: Deployment, stage: str) -> None:
    state = green.blue_green
    assert state is not None
    timeout_s, action = state.pauses[stage]
    hook = HookDetail(hook_id=f"ecs-pause-{uuid.uuid4().hex[:20]}", stage=stage, timeout_action=action,
                      expires_at=_now() + timedelta(seconds=timeout_s),
                      expires_monotonic=time.monotonic() + timeout_s)
    state.hooks.append(hook)
    green.updated_at = _now()
    # A new event also tells a harness that watches describe_services to read the record again.
    scheduler.record_event(f"(service {SERVICE}) (deployment {green.id}) paused at {stage}: lifecycle hook "
                     f"{hook.hook_id} is {AWAITING_ACTION}.")


def _clean_up(scheduler: Scheduler, green: Deployment) -> None:
    """Retire blue: scale it to zero, and once its tasks are gone the deployment is COMPLETED."""
    blue = [d for d in scheduler.deployments if d is not green and d.rollout_state != "FAILED"]
    for deployment in blue:
        deployment.desired = 0
    live = [task for deployment in blue for task in scheduler.live_tasks(deployment)]
    if live:
        scheduler.scale_down(live)
        return
    scheduler.finish_rollout(green, retired=blue)
