"""The stage's Application Load Balancer as a harness sees it: elbv2 through boto3, HTTP through its listeners.

moto answers ``healthy`` for every registered target; these pin that the stage answers
DescribeTargetHealth from its own probes (ELB's states, reason codes and descriptions), that
ECS's registration and draining happen, and that each fault switch shows as it would on AWS.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stage import Stage, StageError, StageOptions
from stage.load_balancer import STRAY_TARGET_GROUP_NAME, WRONG_HEALTH_CHECK_PATH
from stage.seed import CLUSTER, CONTAINER, PORT, SERVICE
from stage.target_health import (HEALTHY, INITIAL, UNHEALTHY, TargetGroupCheck, TargetState, matcher_codes)
from tests.conftest import StagePlan, on_shared_stage

# A bound on waiting for the stage, generous enough for a runner at load average 30 on 2 cores (never a timing).
LOADED_RUNNER_BOUND_S = 120


def target_health(stage: Stage, group_arn: str, **kwargs: Any) -> dict[str, dict[str, str]]:
    """Target IP -> its TargetHealth, through boto3 as the harness reads it."""
    answer = stage.client("elbv2").describe_target_health(TargetGroupArn=group_arn, **kwargs)
    return {item["Target"]["Id"]: item["TargetHealth"] for item in answer["TargetHealthDescriptions"]}


def running_private_ips(stage: Stage) -> set[str]:
    return set(stage.task_private_ips().values())


def wait_for_states(stage: Stage, group_arn: str, wanted: str, addresses: set[str]) -> dict[str, dict[str, str]]:
    balancer = stage.load_balancer

    def reached() -> bool:
        health = {item["Target"]["Id"]: item["TargetHealth"]["State"] for item in balancer.target_health(group_arn)}
        return bool(addresses) and all(health.get(address) == wanted for address in addresses)

    assert stage.wait_until(reached, LOADED_RUNNER_BOUND_S), balancer.target_health(group_arn)
    return target_health(stage, group_arn)


@on_shared_stage(StagePlan("healthy", load_balancer=True))
def test_every_running_task_is_a_healthy_target_of_the_services_target_group(shared_stage: Stage) -> None:
    balancer = shared_stage.load_balancer
    service = shared_stage.client("ecs").describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    assert service["loadBalancers"] == [
        {"targetGroupArn": balancer.target_group_arn, "containerName": CONTAINER, "containerPort": PORT}]
    health = wait_for_states(shared_stage, balancer.target_group_arn, HEALTHY, running_private_ips(shared_stage))
    assert set(health) == running_private_ips(shared_stage)
    assert all(item == {"State": "healthy"} for item in health.values())  # no reason on a healthy target
    group = shared_stage.client("elbv2").describe_target_groups(TargetGroupArns=[balancer.target_group_arn])
    assert group["TargetGroups"][0]["HealthCheckPath"] == "/health"
    assert group["TargetGroups"][0]["LoadBalancerArns"] == [balancer.arn]
    answer = httpx.get(f"{balancer.production_url}/api/health", timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "healthy"
    assert balancer.test_url is None  # a rolling service has no test listener


@on_shared_stage(StagePlan("healthy", load_balancer=True))
def test_a_target_asked_for_but_not_registered_is_unused(shared_stage: Stage) -> None:
    health = target_health(shared_stage, shared_stage.load_balancer.target_group_arn,
                           Targets=[{"Id": "127.1.0.254", "Port": PORT}])
    assert health == {"127.1.0.254": {"State": "unused", "Reason": "Target.NotRegistered",
                                      "Description": "Target is not registered to the target group"}}


@on_shared_stage(StagePlan("healthy", load_balancer=True))
def test_listeners_and_rules_answer_from_moto(shared_stage: Stage) -> None:
    balancer = shared_stage.load_balancer
    elbv2 = shared_stage.client("elbv2")
    listeners = elbv2.describe_listeners(LoadBalancerArn=balancer.arn)["Listeners"]
    assert [listener["Port"] for listener in listeners] == [int(balancer.production_url.rsplit(":", 1)[1])]
    rule = elbv2.describe_rules(RuleArns=[balancer.production_rule_arn])["Rules"][0]
    forwarded = rule["Actions"][0]["ForwardConfig"]["TargetGroups"]
    assert [(item["TargetGroupArn"], item["Weight"]) for item in forwarded] == [(balancer.target_group_arn, 100)]


@on_shared_stage(StagePlan("healthy", load_balancer=True, lb_faults=("tg_health_path",)))
def test_a_health_check_path_the_task_does_not_answer_is_a_response_code_mismatch(shared_stage: Stage) -> None:
    balancer = shared_stage.load_balancer
    health = wait_for_states(shared_stage, balancer.target_group_arn, UNHEALTHY, running_private_ips(shared_stage))
    for item in health.values():
        assert item == {"State": "unhealthy", "Reason": "Target.ResponseCodeMismatch",
                        "Description": "Health checks failed with these codes: [404]"}
    group = shared_stage.client("elbv2").describe_target_groups(TargetGroupArns=[balancer.target_group_arn])
    assert group["TargetGroups"][0]["HealthCheckPath"] == WRONG_HEALTH_CHECK_PATH
    # ALB fails open when every registered target is unhealthy: the app still answers through it.
    assert httpx.get(f"{balancer.production_url}/health", timeout=30).status_code == 200


@on_shared_stage(StagePlan("healthy", load_balancer=True, lb_faults=("sg_blocks_lb",)))
def test_a_security_group_that_blocks_the_load_balancer_times_out(shared_stage: Stage) -> None:
    balancer = shared_stage.load_balancer
    health = wait_for_states(shared_stage, balancer.target_group_arn, UNHEALTHY, running_private_ips(shared_stage))
    for item in health.values():
        assert item == {"State": "unhealthy", "Reason": "Target.Timeout", "Description": "Request timed out"}
    assert httpx.get(f"{balancer.production_url}/health", timeout=30).status_code == 504
    task_group = shared_stage.client("ec2").describe_security_groups(
        GroupIds=[shared_stage.seeded.security_group_id])["SecurityGroups"][0]
    assert not task_group["IpPermissions"]  # nothing lets the load balancer's group in


@on_shared_stage(StagePlan("healthy", load_balancer=True, lb_faults=("wrong_target_group",)))
def test_a_rule_that_forwards_to_another_target_group_answers_503(shared_stage: Stage) -> None:
    balancer = shared_stage.load_balancer
    wait_for_states(shared_stage, balancer.target_group_arn, HEALTHY, running_private_ips(shared_stage))
    elbv2 = shared_stage.client("elbv2")
    rule = elbv2.describe_rules(RuleArns=[balancer.production_rule_arn])["Rules"][0]
    (forwarded,) = rule["Actions"][0]["ForwardConfig"]["TargetGroups"]
    stray = elbv2.describe_target_groups(TargetGroupArns=[forwarded["TargetGroupArn"]])["TargetGroups"][0]
    assert stray["TargetGroupName"] == STRAY_TARGET_GROUP_NAME
    assert forwarded["TargetGroupArn"] not in balancer.target_group_arns
    answer = httpx.get(f"{balancer.production_url}/health", timeout=30)
    assert answer.status_code == 503 and "503 Service Temporarily Unavailable" in answer.text


def test_rolling_registers_the_new_tasks_and_drains_the_old(stage_factory: Any) -> None:
    stage = stage_factory("rolling", load_balancer=True, rolling_delay_s=float("inf"))
    balancer = stage.load_balancer
    old = running_private_ips(stage)
    wait_for_states(stage, balancer.target_group_arn, HEALTHY, old)
    stage.begin_roll_out()
    assert stage.wait_until(lambda: stage.stable_at is not None, LOADED_RUNNER_BOUND_S)
    new = running_private_ips(stage)
    assert new.isdisjoint(old)
    health = target_health(stage, balancer.target_group_arn)
    assert {address: health[address]["State"] for address in new} == {address: "healthy" for address in new}
    # The old targets drain for the deregistration delay (300 s x time scale), or have left already.
    for address in old & set(health):
        assert health[address] == {"State": "draining", "Reason": "Target.DeregistrationInProgress",
                                   "Description": "Target deregistration is in progress"}


def test_blue_green_registers_green_in_the_alternate_group_and_shifts_test_then_production(stage_factory: Any
                                                                                            ) -> None:
    stage = stage_factory("blue_green", load_balancer=True)
    balancer = stage.load_balancer
    service = stage.client("ecs").describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    (entry,) = service["loadBalancers"]
    assert entry["advancedConfiguration"] == {
        "alternateTargetGroupArn": balancer.alternate_target_group_arn,
        "productionListenerRule": balancer.production_rule_arn, "testListenerRule": balancer.test_rule_arn,
        "roleArn": entry["advancedConfiguration"]["roleArn"]}
    green = {t.private_ip for t in stage.scheduler.live_tasks(stage.scheduler.deployments[0])}
    blue = running_private_ips(stage) - green
    wait_for_states(stage, balancer.alternate_target_group_arn, HEALTHY, green)
    wait_for_states(stage, balancer.target_group_arn, HEALTHY, blue)
    assert balancer.forwards_to("test") == [(balancer.target_group_arn, 100), (balancer.alternate_target_group_arn, 0)]
    ecs = stage.client("ecs")

    def continue_the_paused_hook() -> None:
        arn = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["currentServiceDeployment"]
        record = ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]
        hook = next(h for h in record["lifecycleHookDetails"] if h["status"] == "AWAITING_ACTION")
        ecs.continue_service_deployment(serviceDeploymentArn=arn, hookId=hook["hookId"], action="CONTINUE")

    def awaiting() -> bool:
        state = stage.scheduler.deployments[0].blue_green
        return state is not None and state.awaiting() is not None

    assert stage.wait_until(awaiting, LOADED_RUNNER_BOUND_S)
    continue_the_paused_hook()  # POST_SCALE_UP -> the test traffic shifts, then POST_TEST_TRAFFIC_SHIFT pauses
    assert stage.wait_until(awaiting, LOADED_RUNNER_BOUND_S)
    assert balancer.forwards_to("test") == [(balancer.target_group_arn, 0), (balancer.alternate_target_group_arn, 100)]
    assert balancer.forwards_to("production")[0] == (balancer.target_group_arn, 100)
    test_rule = stage.client("elbv2").describe_rules(RuleArns=[balancer.test_rule_arn])["Rules"][0]
    weights = {g["TargetGroupArn"]: g["Weight"] for g in test_rule["Actions"][0]["ForwardConfig"]["TargetGroups"]}
    assert weights[balancer.alternate_target_group_arn] == 100
    assert httpx.get(f"{balancer.test_url}/health", timeout=30).status_code == 200
    continue_the_paused_hook()  # -> the production traffic shifts
    assert stage.wait_until(lambda: balancer.forwards_to("production")[1][1] == 100, LOADED_RUNNER_BOUND_S)


@pytest.mark.parametrize(("options", "message"), [
    ({"load_balancer": True, "lb_faults": ("tg_path",)}, "unknown load balancer fault 'tg_path'; known: "),
    ({"lb_faults": ("sg_blocks_lb",)}, "load balancer faults need the load balancer: add --load-balancer"),
])
def test_bad_load_balancer_options_are_refused_before_anything_starts(options: dict[str, Any], message: str) -> None:
    with pytest.raises(StageError) as error:
        Stage(StageOptions(**options))
    assert message in str(error.value)


# -- ELB's state machine, without a stage ----------------------------------------------------------------

CHECK = TargetGroupCheck(path="/health", port="traffic-port", interval=30, timeout=5, healthy_threshold=3,
                         unhealthy_threshold=2, matcher="200")


def test_a_target_turns_healthy_after_the_healthy_threshold_of_passes_in_a_row() -> None:
    target = TargetState(address="127.1.0.9", port=PORT)
    assert (target.state, target.reason) == (INITIAL, ("Elb.RegistrationInProgress", "Target registration is in progress"))
    target.record(None, CHECK)
    target.record(None, CHECK)
    assert (target.state, target.reason) == (INITIAL, ("Elb.InitialHealthChecking", "Initial health checks in progress"))
    target.record(None, CHECK)
    assert (target.state, target.reason) == (HEALTHY, None)


def test_a_target_turns_unhealthy_after_the_unhealthy_threshold_and_shows_the_last_failure() -> None:
    target = TargetState(address="127.1.0.9", port=PORT, state=HEALTHY, reason=None)
    mismatch = ("Target.ResponseCodeMismatch", "Health checks failed with these codes: [404]")
    target.record(mismatch, CHECK)
    assert target.state == HEALTHY  # one failure is below the threshold
    target.record(mismatch, CHECK)
    assert (target.state, target.reason) == (UNHEALTHY, mismatch)
    target.record(None, CHECK)
    target.record(None, CHECK)
    assert target.state == UNHEALTHY  # back only after the healthy threshold
    target.record(None, CHECK)
    assert target.state == HEALTHY


@pytest.mark.parametrize(("matcher", "codes"), [("200", {200}), ("200,202", {200, 202}), ("200-204", set(range(200, 205)))])
def test_the_matcher_is_read_as_elb_writes_it(matcher: str, codes: set[int]) -> None:
    assert matcher_codes(matcher) == codes


def test_the_health_check_runs_on_the_stages_clock_with_a_floor_on_the_timeout() -> None:
    scaled = TargetGroupCheck.from_target_group({"HealthCheckPath": "/health", "HealthCheckIntervalSeconds": 30,
                                                 "HealthCheckTimeoutSeconds": 5}, time_scale=0.01)
    assert (scaled.interval_s, scaled.timeout_s, scaled.healthy_threshold, scaled.unhealthy_threshold) == (
        pytest.approx(0.3), 1.0, 5, 2)
    assert scaled.draining_s == pytest.approx(3.0)
