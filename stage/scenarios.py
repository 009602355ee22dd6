"""The named states a deployment can be in, each one a failure the runbook lived through.

A scenario is a list of deployments for the scheduler (which task definition,
how many tasks, what each task does) plus the history ECS would show
(service events, stopped tasks). Fault switches apply to the tasks of the
deploy under test: every task of the PRIMARY deployment, or one of them in
``one_bad_task``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from stage.faults import STAGE_FAULTS, Faults, parse_faults
from stage.scheduler import Deployment, TaskPlan, deployment_id
from stage.seed import DESIRED_COUNT, SERVICE, Seeded

SCENARIOS: dict[str, str] = {
    "healthy": "2 tasks of the new deployment, rollout COMPLETED",
    "rolling": "old deployment serving, new one IN_PROGRESS; after --rolling-delay its tasks take over",
    "one_bad_task": "2 tasks; the --fault switches (default urlsafe) apply to one of them only",
    "restart_loop": "the new deployment's tasks never answer, fail health checks, and are replaced with new IPs",
    "exec_format": "the new deployment's tasks stop at start: exec format error (image built for ARM)",
    "stale_image": "tasks run an image digest other than the one the deploy pushed as :latest",
    "rolled_back": "the circuit breaker rolled the deploy back: rolloutState FAILED, service on the previous revision",
    "alarm_rollback": "the canary stack is installed and its alarm guards deploys (rollback on); a deploy of a faulty "
                      "build (default participant_can_invite) bakes IN_PROGRESS until the alarm fires, then is rolled back",
}


@dataclass(frozen=True, slots=True)
class ScenarioPlan:
    deployments: list[Deployment]
    events: list[str]
    stopped_history: list[tuple[int, str, int | None]]  # (deployment index, stoppedReason, exit code)
    deferred: Deployment | None = None  # begins rolling_delay_s after the stage is ready
    # Install the canary stack and list its alarm in the service's deploymentConfiguration.alarms.
    canary_alarm: bool = False


def build(name: str, faults: Faults, seeded: Seeded) -> ScenarioPlan:
    if name not in SCENARIOS:
        raise KeyError(name)
    current, previous = seeded.current_task_definition, seeded.previous_task_definition

    def serving(digest: str, task_faults: Callable[[int], Faults] = lambda _i: Faults()) -> Callable[[int], TaskPlan]:
        return lambda index: TaskPlan("serve", task_faults(index), digest)

    def primary(plan: Callable[[int], TaskPlan], *, task_definition: str = current, not_before: float = 0.0,
                state: str = "IN_PROGRESS") -> Deployment:
        return Deployment(deployment_id(), task_definition, "PRIMARY", state, DESIRED_COUNT, plan,
                          not_before=not_before, rollout_reason=f"ECS deployment {state.lower()}.")

    def old_release() -> Deployment:
        return Deployment(deployment_id(), previous, "ACTIVE", "COMPLETED", DESIRED_COUNT,
                          serving(seeded.previous_digest), rollout_reason="ECS deployment completed.")

    all_faulty = serving(seeded.pushed_digest, lambda _i: faults)
    if name == "healthy":
        return ScenarioPlan([primary(all_faulty)], [], [])
    if name == "one_bad_task":
        bad = faults if faults.names - set(STAGE_FAULTS) else parse_faults(["urlsafe", *faults.raw])
        # Task index 1 is the second task launched: its sibling stays clean.
        return ScenarioPlan([primary(serving(seeded.pushed_digest, lambda i: bad if i == 1 else Faults()))], [], [])
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
