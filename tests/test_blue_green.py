"""ECS native blue/green: the stage pauses a deploy at its PAUSE hooks, and the gate continues or rolls it back.

The stage plays the phases as ECS does (green started beside blue, a PAUSE hook at
POST_SCALE_UP and one at POST_TEST_TRAFFIC_SHIFT, ContinueServiceDeployment, the hook's
timeout); ``pytest smoke --continue-deployment`` tests green's tasks at the first hook and
acts on it by the verdict: CONTINUE on 0 (and through the second hook), ROLLBACK on 1, nothing
on 6.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ecs_verdict.blue_green import paused_hook_note
from ecs_verdict.deployment_records import parse_record
from ecs_verdict.errors import CouldNotVerify
from ecs_verdict.settings import UsageError, resolve_settings
from stage.seed import CLUSTER, SERVICE
from tests.conftest import StagePlan, on_shared_stage
from tests.smoke_runs import run_smoke
from tests.test_deployment_records import assert_shape

GATE = ("--continue-deployment", "--stable-timeout", "120")


def service_of(stage: Any) -> dict[str, Any]:
    return stage.client("ecs").describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]


def record_of(stage: Any) -> dict[str, Any]:
    """The current service deployment's record, checked against botocore's model."""
    answer = stage.client("ecs").describe_service_deployments(
        serviceDeploymentArns=[service_of(stage)["currentServiceDeployment"]])
    assert_shape({k: v for k, v in answer.items() if k != "ResponseMetadata"}, "DescribeServiceDeploymentsResponse")
    return answer["serviceDeployments"][0]


def deployments_of(stage: Any) -> list[tuple[str, str, int]]:
    return [(d["status"], d["rolloutState"], d["runningCount"]) for d in service_of(stage)["deployments"]]


def awaiting(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [hook for hook in record["lifecycleHookDetails"] if hook["status"] == "AWAITING_ACTION"]


def running_task_definitions(stage: Any) -> set[str]:
    return {task.deployment.task_definition_arn for task in stage.scheduler.live_tasks()}


def cont(stage: Any, record: dict[str, Any], hook_id: str, action: str = "CONTINUE") -> None:
    stage.client("ecs").continue_service_deployment(serviceDeploymentArn=record["serviceDeploymentArn"],
                                                    hookId=hook_id, action=action)


# -- the stage -----------------------------------------------------------------------------------------


def test_green_runs_beside_blue_until_each_hook_is_continued_then_blue_is_retired(stage_factory: Any) -> None:
    stage = stage_factory("blue_green")
    # Paused at POST_SCALE_UP: both deployments listed and running, one hook awaiting action.
    assert deployments_of(stage) == [("PRIMARY", "IN_PROGRESS", 2), ("ACTIVE", "COMPLETED", 2)]
    record = record_of(stage)
    assert (record["status"], record["lifecycleStage"]) == ("IN_PROGRESS", "POST_SCALE_UP")
    assert record["deploymentConfiguration"]["strategy"] == "BLUE_GREEN"
    [first] = awaiting(record)
    assert (first["targetType"], first["timeoutAction"]) == ("PAUSE", "ROLLBACK")
    assert first["hookId"].startswith("ecs-pause-") and first["expiresAt"] > record["createdAt"]

    cont(stage, record, first["hookId"])
    record = record_of(stage)
    assert record["lifecycleStage"] == "POST_TEST_TRAFFIC_SHIFT"
    [second] = awaiting(record)
    assert second["hookId"] != first["hookId"]
    assert len(running_task_definitions(stage)) == 2  # production traffic still on blue: blue still runs

    cont(stage, record, second["hookId"])
    assert stage.wait_until(lambda: stage.stable_at is not None, 60), deployments_of(stage)
    record = record_of(stage)
    assert record["status"] == "SUCCESSFUL" and awaiting(record) == []
    assert deployments_of(stage) == [("PRIMARY", "COMPLETED", 2)]
    assert running_task_definitions(stage) == {stage.seeded.current_task_definition}  # blue retired


def test_continue_service_deployment_refuses_what_ecs_refuses(stage_factory: Any) -> None:
    stage = stage_factory("blue_green")
    record = record_of(stage)
    [hook] = awaiting(record)

    def refused(arn: str, hook_id: str, action: str = "CONTINUE") -> str:
        with pytest.raises(ClientError) as caught:
            stage.client("ecs").continue_service_deployment(serviceDeploymentArn=arn, hookId=hook_id, action=action)
        return caught.value.response["Error"]["Code"]

    assert refused(record["serviceDeploymentArn"], "ecs-pause-nosuchhook") == "InvalidParameterException"
    assert refused(record["serviceDeploymentArn"] + "0", hook["hookId"]) == "ServiceDeploymentNotFoundException"
    assert refused(record["serviceDeploymentArn"], hook["hookId"], "SKIP") == "InvalidParameterException"
    cont(stage, record, hook["hookId"])
    assert refused(record["serviceDeploymentArn"], hook["hookId"]) == "ClientException"  # no longer awaiting action


def test_rollback_at_a_hook_returns_to_blue_and_stops_green(stage_factory: Any) -> None:
    stage = stage_factory("blue_green")
    record = record_of(stage)
    [hook] = awaiting(record)
    cont(stage, record, hook["hookId"], "ROLLBACK")
    assert stage.wait_until(lambda: running_task_definitions(stage) == {stage.seeded.previous_task_definition}, 30)
    after = record_of(stage)
    assert after["serviceDeploymentArn"] == record["serviceDeploymentArn"]
    assert after["status"] == "ROLLBACK_SUCCESSFUL"
    assert after["deploymentCircuitBreaker"]["status"] != "TRIGGERED"  # the hook rolled it back, not the breaker
    assert "ROLLBACK at lifecycle hook" in after["rollback"]["reason"]
    assert deployments_of(stage) == [("PRIMARY", "COMPLETED", 2), ("ACTIVE", "FAILED", 0)]


def test_a_hook_nobody_acts_on_takes_its_timeout_action(stage_factory: Any) -> None:
    # 1 minute on the stage's clock (x 0.01) is 0.6 s.
    stage = stage_factory("blue_green", hook_timeout_minutes=1, hook_timeout_action="ROLLBACK")
    # The condition runs under the scheduler's lock: it reads the scheduler, never the stage's AWS endpoint.
    assert stage.wait_until(lambda: any(d.rollout_state == "FAILED" for d in stage.scheduler.deployments), 30)
    assert record_of(stage)["status"] == "ROLLBACK_SUCCESSFUL"
    [hook] = record_of(stage)["lifecycleHookDetails"]
    assert hook["status"] == "TIMED_OUT"
    assert stage.wait_until(lambda: running_task_definitions(stage) == {stage.seeded.previous_task_definition}, 30)


# -- the gate ----------------------------------------------------------------------------------------


def test_the_gate_continues_a_good_green_and_blue_is_retired(stage_factory: Any, tmp_path: Path) -> None:
    stage = stage_factory("blue_green")
    green = {t.id for t in stage.scheduler.live_tasks() if t.deployment.status == "PRIMARY"}
    run = run_smoke(stage.env, tmp_path / "reports", *GATE)
    assert run.exit_code == 0, run.output[-3000:]
    assert {task["task_id"] for task in run.verdict["tasks"]} == green  # green tested, blue was not
    gate = run.verdict["deployment_gate"]
    assert [(a["action"], a["stage"], a["accepted"]) for a in gate["actions"]] == [
        ("CONTINUE", "POST_SCALE_UP", True), ("CONTINUE", "POST_TEST_TRAFFIC_SHIFT", True)]
    assert gate["paused_hook"]["hook_id"] == gate["actions"][0]["hook_id"]
    assert gate["final_status"] == "SUCCESSFUL"
    assert stage.wait_until(lambda: stage.stable_at is not None, 30)
    assert {t.id for t in stage.scheduler.live_tasks()} == green  # green serves alone
    assert deployments_of(stage) == [("PRIMARY", "COMPLETED", 2)]
    assert "CONTINUE lifecycle hook" in (tmp_path / "reports" / "summary.md").read_text()


def test_the_gate_rolls_a_bad_green_back_and_blue_serves(stage_factory: Any, tmp_path: Path) -> None:
    stage = stage_factory("blue_green_bad")
    blue = {t.id for t in stage.scheduler.live_tasks() if t.deployment.status == "ACTIVE"}
    run = run_smoke(stage.env, tmp_path / "reports", *GATE)
    assert run.exit_code == 1, run.output[-3000:]
    assert "permission_regression" in run.categories()
    [action] = run.verdict["deployment_gate"]["actions"]
    assert (action["action"], action["stage"], action["accepted"]) == ("ROLLBACK", "POST_SCALE_UP", True)
    assert run.verdict["deployment_gate"]["final_status"] == "ROLLBACK_SUCCESSFUL"
    assert stage.wait_until(lambda: {t.id for t in stage.scheduler.live_tasks()} == blue, 30)  # green stopped
    assert deployments_of(stage)[0] == ("PRIMARY", "COMPLETED", 2)


def test_could_not_verify_leaves_the_hook_paused_and_says_so(stage_factory: Any, tmp_path: Path) -> None:
    stage = stage_factory("blue_green")
    env = {**stage.env, "SMOKE_SECRET": "civicforge/board-mvp/no-such-secret"}
    run = run_smoke(env, tmp_path / "reports", *GATE)
    assert run.exit_code == 6, run.output[-3000:]
    assert "smoke_accounts" in run.categories()
    assert run.verdict["deployment_gate"]["actions"] == []
    said = [line for line in run.output.splitlines() if "left AWAITING_ACTION" in line]
    assert len(said) == 1 and "its timeout action (ROLLBACK at " in said[0]
    [hook] = awaiting(record_of(stage))
    assert hook["hookId"] == run.verdict["deployment_gate"]["paused_hook"]["hook_id"]


@on_shared_stage(StagePlan("healthy"))
def test_no_paused_hook_is_could_not_verify_in_one_line(shared_stage: Any, tmp_path: Path) -> None:
    run = run_smoke(shared_stage.env, tmp_path / "reports", *GATE)
    assert run.exit_code == 6, run.output[-3000:]
    assert run.categories() == {"no_paused_hook"}
    lines = [line for line in run.output.splitlines() if line.startswith("could not verify:")]
    assert len(lines) == 1, run.output[-3000:]
    assert lines[0].startswith("could not verify: --continue-deployment found no paused lifecycle hook: service "
                               "deployment ")
    assert lines[0].endswith(" is SUCCESSFUL: nothing waits at a hook")
    assert "deployment_gate" not in run.verdict


# -- pure rules -----------------------------------------------------------------------------------


def test_the_wait_tells_a_deploy_on_its_way_to_a_hook_from_one_that_will_never_pause() -> None:
    def record(status: str, stage: str | None, hooks: list[dict[str, Any]], strategy: str = "BLUE_GREEN") -> Any:
        configuration = {"strategy": strategy, "lifecycleHooks": [
            {"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP", "POST_TEST_TRAFFIC_SHIFT"]}]}
        if strategy == "ROLLING":
            configuration = {"strategy": "ROLLING"}
        raw = {"serviceDeploymentArn": "arn:aws:ecs:r:1:service-deployment/c/s/7", "status": status,
               "lifecycleStage": stage, "lifecycleHookDetails": hooks, "deploymentConfiguration": configuration}
        return parse_record(raw, {})

    paused = {"hookId": "ecs-pause-1", "targetType": "PAUSE", "status": "AWAITING_ACTION"}
    done = {**paused, "status": "SUCCEEDED"}
    assert paused_hook_note(record("IN_PROGRESS", "POST_SCALE_UP", [paused])) == ""
    assert "to pause at POST_SCALE_UP" in paused_hook_note(record("IN_PROGRESS", "SCALE_UP", []))
    assert "now at TEST_TRAFFIC_SHIFT" in paused_hook_note(record("IN_PROGRESS", "TEST_TRAFFIC_SHIFT", [done]))
    for never, why in ((record("SUCCESSFUL", None, [done]), "is SUCCESSFUL"),
                       (record("IN_PROGRESS", "SCALE_UP", [], "ROLLING"), "(ROLLING) declares no PAUSE"),
                       (record("IN_PROGRESS", "BAKE_TIME", [done, {**done, "hookId": "ecs-pause-2"}]), "past its"),
                       (None, "no current service deployment")):
        with pytest.raises(CouldNotVerify, match=re.escape(why)) as caught:
            paused_hook_note(never)
        assert caught.value.kind == "no_paused_hook"


@pytest.mark.parametrize(("environ", "fix"), [
    ({"SMOKE_CONTINUE_DEPLOYMENT": "true", "API_BASE_URL": "http://127.0.0.1:8000"},
     "--continue-deployment (from env SMOKE_CONTINUE_DEPLOYMENT) acts on an ECS service and --target-url skips"),
    ({"SMOKE_CONTINUE_DEPLOYMENT": "1", "SMOKE_ON_FAIL": "rollback", "ECS_CLUSTER": "c", "ECS_SERVICE": "s"},
     "--on-fail rollback (from env SMOKE_ON_FAIL) is for rolling deployments"),
    ({"SMOKE_ON_FAIL": "revert", "ECS_CLUSTER": "c", "ECS_SERVICE": "s"},
     "--on-fail (from env SMOKE_ON_FAIL): 'revert' is not one of: none, rollback"),
])
def test_acting_options_that_cannot_work_are_one_usage_line(environ: dict[str, str], fix: str) -> None:
    with pytest.raises(UsageError) as caught:
        resolve_settings(lambda _dest: None, lambda _name: None, environ)
    assert str(caught.value).startswith(fix)


def test_a_pass_whose_continue_ecs_refused_is_could_not_verify() -> None:
    from ecs_verdict.verdict import decide

    passed = [{"name": "test_health", "task_id": "t", "outcome": "passed", "duration_s": 0.1, "message": ""}]
    refused = "CONTINUE lifecycle hook ecs-pause-1 at POST_SCALE_UP at T: refused (AccessDeniedException: no)"
    decision = decide(passed, deployment_action_refused=refused)  # type: ignore[arg-type]
    assert (decision.verdict, decision.exit_code) == ("error", 6)
    assert [d["category"] for d in decision.diagnoses] == ["hook_action_failed"]
    assert decide(passed).exit_code == 0  # type: ignore[arg-type]
