"""The named states a deployment can be in, each one a failure the runbook lived through.

A scenario is a list of deployments for the scheduler (which task definition,
how many tasks, what each task does) plus the history ECS would show
(service events, stopped tasks). Fault switches apply to the tasks of the
deploy under test: every task of the PRIMARY deployment, or one of them in
``one_bad_task``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from stage.faults import STAGE_FAULTS, Faults, parse_faults
from stage.scheduler import Deployment, TaskPlan, deployment_id
from stage.seed import SERVICE, Seeded

SCENARIOS: dict[str, str] = {
    "healthy": "the new deployment's tasks (--tasks, default 2), rollout COMPLETED",
    "rolling": "old deployment serving, new one IN_PROGRESS; after --rolling-delay its tasks take over",
    "one_bad_task": "the --fault switches (default urlsafe) apply to one task only, the second (index 1)",
    "restart_loop": "the new deployment's tasks never answer, fail health checks, and are replaced with new IPs",
    "exec_format": "the new deployment's tasks stop at start: exec format error (image built for ARM)",
    "stale_image": "tasks run an image digest other than the one the deploy pushed as :latest",
    "rolled_back": "the circuit breaker rolled the deploy back: rolloutState FAILED, service on the previous revision",
    "alarm_rollback": "the canary stack is installed and its alarm guards deploys (rollback on); a deploy of a faulty "
                      "build (default participant_can_invite) bakes IN_PROGRESS until the alarm fires, then is rolled back",
    "blue_green": "BLUE_GREEN strategy: the new (green) tasks run beside the old (blue) ones, the deploy paused at a "
                  "PAUSE lifecycle hook at POST_SCALE_UP (another at POST_TEST_TRAFFIC_SHIFT) until it is continued",
    "blue_green_bad": "like blue_green, but green is a faulty build (default participant_can_invite: only a smoke check "
                      "sees it)",
}
# A blue/green service's deploymentConfiguration (scenarios blue_green and blue_green_bad): what
# `aws ecs update-service --deployment-configuration` would set. The hooks' timeoutInMinutes and the
# bake run on the stage's clock (StageOptions.time_scale): 180 min x 0.01 is 108 s.
BLUE_GREEN_HOOK_TIMEOUT_MINUTES = 180
BLUE_GREEN_BAKE_MINUTES = 2


def blue_green_configuration(hook_timeout_minutes: int = BLUE_GREEN_HOOK_TIMEOUT_MINUTES,
                             timeout_action: str = "ROLLBACK") -> dict[str, object]:
    return {
        "strategy": "BLUE_GREEN",
        "bakeTimeInMinutes": BLUE_GREEN_BAKE_MINUTES,
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        "lifecycleHooks": [{
            "targetType": "PAUSE",
            "lifecycleStages": ["POST_SCALE_UP", "POST_TEST_TRAFFIC_SHIFT"],
            "timeoutConfiguration": {"timeoutInMinutes": hook_timeout_minutes, "action": timeout_action},
        }],
    }


@dataclass(frozen=True, slots=True)
class ScenarioPlan:
    deployments: list[Deployment]
    events: list[str]
    stopped_history: list[tuple[int, str, int | None]]  # (deployment index, stoppedReason, exit code)
    deferred: Deployment | None = None  # begins rolling_delay_s after the stage is ready
    # Install the canary stack and list its alarm in the service's deploymentConfiguration.alarms.
    canary_alarm: bool = False
    blue_green: bool = False  # the service deploys BLUE_GREEN with PAUSE hooks (blue_green_configuration)
    # Deployments the service had before (no longer listed, no task left): the records' history.
    retired: tuple[Deployment, ...] = ()


def build(name: str, faults: Faults, seeded: Seeded) -> ScenarioPlan:
    if name not in SCENARIOS:
        raise KeyError(name)
    current, previous = seeded.current_task_definition, seeded.previous_task_definition
    desired = seeded.desired_count  # every deployment of every scenario runs the service's desired count

    def serving(digest: str, task_faults: Callable[[int], Faults] = lambda _i: Faults()) -> Callable[[int], TaskPlan]:
        return lambda index: TaskPlan("serve", task_faults(index), digest)

    def primary(plan: Callable[[int], TaskPlan], *, task_definition: str = current, not_before: float = 0.0,
                state: str = "IN_PROGRESS") -> Deployment:
        return Deployment(deployment_id(), task_definition, "PRIMARY", state, desired, plan,
                          not_before=not_before, rollout_reason=f"ECS deployment {state.lower()}.")

    def old_release() -> Deployment:
        return Deployment(deployment_id(), previous, "ACTIVE", "COMPLETED", desired,
                          serving(seeded.previous_digest), rollout_reason="ECS deployment completed.")

    def retired_release() -> Deployment:
        """The previous release, replaced before the stage began: in the records' history only."""
        release = old_release()
        release.desired = 0
        release.created_at = release.updated_at = release.created_at - timedelta(days=1)
        return release

    all_faulty = serving(seeded.pushed_digest, lambda _i: faults)
    if name == "healthy":
        return ScenarioPlan([primary(all_faulty)], [], [])
    if name == "one_bad_task":
        bad = faults if faults.names - set(STAGE_FAULTS) else parse_faults(["urlsafe", *faults.raw])
        # Task index 1 is the second task launched: its sibling stays clean.
        # The previous release is in the records' history: the revision a rollback returns to.
        return ScenarioPlan([primary(serving(seeded.pushed_digest, lambda i: bad if i == 1 else Faults()))], [], [],
                            retired=(retired_release(),))
    if name == "stale_image":
        # Docker's cache shipped the old layers: :latest was pushed, but tasks run the previous digest (lesson 5).
        return ScenarioPlan([primary(serving(seeded.previous_digest, lambda _i: faults))], [], [])
    if name == "rolling":
        old = old_release()
        new = primary(all_faulty, not_before=float("inf"))
        return ScenarioPlan([new, old], [], [], deferred=new)
    if name == "restart_loop":
        old = old_release()
        new = primary(lambda _i: TaskPlan("hang", faults, seeded.pushed_digest))
        return ScenarioPlan([new, old], [], [])
    if name == "exec_format":
        old = old_release()
        new = primary(lambda _i: TaskPlan("exec_format", faults, seeded.pushed_digest))
        return ScenarioPlan([new, old], [], [])
    if name == "alarm_rollback":
        # Like rolling, but under way at once: its tasks pass their health checks (the fault is one only
        # a smoke check sees), the old tasks drain, and ECS bakes the deploy until the alarm decides.
        bad = faults if faults.names else parse_faults(["participant_can_invite"])
        return ScenarioPlan([primary(serving(seeded.pushed_digest, lambda _i: bad)), old_release()], [], [],
                            canary_alarm=True)
    if name in ("blue_green", "blue_green_bad"):
        # Green starts beside blue, which keeps serving until the deploy is continued past its hooks.
        bad = faults if faults.names or name == "blue_green" else parse_faults(["participant_can_invite"])
        return ScenarioPlan([primary(serving(seeded.pushed_digest, lambda _i: bad)), old_release()], [], [],
                            blue_green=True)
    # rolled_back: the failed deploy is still listed while ECS drains it; the service is
    # back on the previous revision through a fresh PRIMARY deployment.
    failed = Deployment(deployment_id(), current, "ACTIVE", "FAILED", 0, all_faulty,
                        rollout_reason="ECS deployment circuit breaker: tasks failed to start.", failed_tasks=2)
    rollback = primary(serving(seeded.previous_digest), task_definition=previous)
    events = [
        f"(service {SERVICE}) (deployment {failed.id}) deployment failed: tasks failed to start.",
        f"(service {SERVICE}) (deployment {failed.id}) deployment circuit breaker triggered: "
        f"rolling back to deployment {rollback.id}.",
    ]
    return ScenarioPlan([rollback, failed], events, [(1, "Task failed container health checks", 137)] * 2)
