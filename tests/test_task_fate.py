"""What ECS's one answer about a task that stopped answering means, and replacements claimed once each."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ecs_verdict.aws import make_clients
from ecs_verdict.deployment import ServiceSelector
from ecs_verdict.targets import Target
from ecs_verdict.task_fate import Claims, Fate, ReplacementSearch, ask_fate, classify, wait_for_replacement
from stage.seed import CLUSTER, SERVICE
from tests.conftest import StageFactory

ARN = "arn:aws:ecs:us-east-1:123456789012:task/civicforge/0123456789abcdef0123456789abcdef"


def task(last: str = "STOPPED", code: str | None = None, reason: str | None = None, exit_code: int | None = 0,
         container_reason: str | None = None, desired: str = "STOPPED") -> dict[str, Any]:
    container: dict[str, Any] = {"name": "board", "lastStatus": last, "exitCode": exit_code}
    if container_reason:
        container["reason"] = container_reason
    answer: dict[str, Any] = {"taskArn": ARN, "lastStatus": last, "desiredStatus": desired, "containers": [container]}
    if code:
        answer["stopCode"] = code
    if reason:
        answer["stoppedReason"] = reason
    return answer


@pytest.mark.parametrize(("answer", "fate", "says"), [
    (task("RUNNING", desired="RUNNING", exit_code=None), Fate.RUNNING, "still RUNNING"),
    (task(code="ServiceSchedulerInitiated", reason="Scaling activity initiated by (deployment ecs-svc/1)"),
     Fate.STOPPED_FROM_OUTSIDE, "ServiceSchedulerInitiated: Scaling activity"),
    (task(code="SpotInterruption", reason="Your Spot Task was interrupted."), Fate.STOPPED_FROM_OUTSIDE,
     "SpotInterruption"),
    (task("DEACTIVATING", code="UserInitiated", reason="Task stopped by user"), Fate.STOPPED_FROM_OUTSIDE,
     "UserInitiated: Task stopped by user"),
    # The same stop code, but ECS replaced it because the service failed its checks: the service's failure.
    (task(code="ServiceSchedulerInitiated", reason="Task failed container health checks", exit_code=137),
     Fate.CRASHED, "Task failed container health checks; container board: exit code 137"),
    (task(code="ServiceSchedulerInitiated", reason="Task failed ELB health checks in (target-group arn)"),
     Fate.CRASHED, "Task failed ELB health checks"),
    (task(code="EssentialContainerExited", reason="Essential container in task exited", exit_code=1),
     Fate.CRASHED, "container board: exit code 1"),
    (task(code="EssentialContainerExited", reason="Essential container in task exited", exit_code=137,
          container_reason="OutOfMemoryError: Container killed due to memory usage"),
     Fate.CRASHED, "exit code 137 (OutOfMemoryError: Container killed due to memory usage)"),
    (task(code="TaskFailedToStart", reason="CannotPullContainerError"), Fate.CRASHED, "TaskFailedToStart"),
    (task("STOPPING", exit_code=139), Fate.CRASHED, "exit code 139"),  # no stop code yet: the container died
    (task("STOPPING", exit_code=None), Fate.UNKNOWN, "stop code none"),
], ids=["running", "scale-in", "spot", "user", "container health", "elb health", "exited", "oom", "failed to start",
        "segfault, no code yet", "stopping, nothing known"])
def test_classify(answer: dict[str, Any], fate: Fate, says: str) -> None:
    found = classify(answer)
    assert (found.task_id, found.fate) == ("0123456789abcdef0123456789abcdef", fate)
    assert says in found.reason()


def test_a_replacement_is_claimed_by_one_stopped_task_and_found_again_by_it(tmp_path: Path) -> None:
    claims = Claims(tmp_path)
    assert claims.claim("stopped-a", "fresh-1")
    assert not claims.claim("stopped-b", "fresh-1")  # two tasks stopped at once get two replacements
    assert claims.claim("stopped-a", "fresh-1")  # another process asking about the same task finds the same one
    assert claims.claim("stopped-b", "fresh-2")


def test_two_tasks_stopped_at_once_each_get_their_own_replacement(stage_factory: StageFactory, aws_env: object,
                                                                   tmp_path: Path) -> None:
    stage = stage_factory("healthy")
    clients = make_clients("us-east-1", stage.endpoint)
    first = sorted(stage.task_ips())
    for task_id in first:
        stage.stop_task(task_id, "spot")
    fates = [ask_fate(clients, CLUSTER, task_id) for task_id in first]
    assert [(f.fate, f.stop_code) for f in fates] == [(Fate.STOPPED_FROM_OUTSIDE, "SpotInterruption")] * 2
    claims = Claims(tmp_path)  # what every lane and worker of a run shares
    search = ReplacementSearch(ServiceSelector(CLUSTER, SERVICE), health_path="/health")
    deadline = time.monotonic() + 60
    found = [wait_for_replacement(clients, search, task_id, first, claims, deadline=deadline) for task_id in first]
    assert all(isinstance(target, Target) for target in found), found
    replacements = {target.task_id for target in found if isinstance(target, Target)}
    assert len(replacements) == 2 and not replacements & set(first)
    # Asked again (another process of the same run), the first stopped task gets its own replacement back.
    again = wait_for_replacement(clients, search, first[0], first, claims, deadline=time.monotonic() + 5)
    assert isinstance(again, Target) and again.task_id == found[0].task_id  # type: ignore[union-attr]


def test_a_crash_is_read_back_from_ecs_as_the_service_s_failure(stage_factory: StageFactory, aws_env: object) -> None:
    stage = stage_factory("healthy")
    task_id = sorted(stage.task_ips())[0]
    stage.stop_task(task_id, "oom")
    fate = ask_fate(make_clients("us-east-1", stage.endpoint), CLUSTER, task_id)
    assert fate.fate is Fate.CRASHED
    assert fate.reason() == ("EssentialContainerExited: Essential container in task exited; container civicforge-app: "
                             "exit code 137 (OutOfMemoryError: Container killed due to memory usage)")


def test_a_stopped_task_never_replaced_is_could_not_verify_named_once_and_a_crash_is_a_failure() -> None:
    from ecs_verdict.categories import make_diagnosis
    from ecs_verdict.verdict import CheckRecord, decide

    def check(outcome: str, task: str) -> CheckRecord:
        return CheckRecord(name="test_health_answers_healthy", task_id=task, outcome=outcome,  # type: ignore[typeddict-item]
                           duration_s=0.1, message="")

    stopped = make_diagnosis("task_stopped", "a", "task a stopped mid-run by ECS", "last seen: nothing")
    decision = decide([check("error", "a"), check("passed", "b")], diagnoses=[stopped])
    assert (decision.exit_code, [d["category"] for d in decision.diagnoses]) == (6, ["task_stopped"])
    crashed = make_diagnosis("task_crashed", "a", "task a stopped on its own mid-run", "exit code 1")
    decision = decide([check("failed", "a"), check("passed", "b")], diagnoses=[crashed])
    assert (decision.exit_code, [d["category"] for d in decision.diagnoses]) == (1, ["task_crashed"])
