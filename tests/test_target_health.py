"""Load-balancer target health in the wait and in the verdict.

Units: reading the service's loadBalancers and ELB's answers, and judging them (pure). Runs:
`pytest smoke` against the stage's load balancer, rolling and blue/green, green when the
targets are healthy, and each target-health fault named by its own category with ELB's reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ecs_verdict.diagnosis import Failure, diagnose
from ecs_verdict.observation import TaskInfo
from ecs_verdict.kinds import Kind
from ecs_verdict.target_health import (ServiceLoadBalancer, TargetGroupSettings, TargetHealth, TargetReading,
                                       judge_targets, service_load_balancers)
from stage import Stage
from tests.conftest import StagePlan, on_shared_stage
from tests.smoke_runs import run_smoke

BLUE = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-blue/1"
GREEN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-green/2"
GROUP = {"TargetGroupArn": BLUE, "TargetGroupName": "web-blue", "Protocol": "HTTP", "HealthCheckProtocol": "HTTP",
         "HealthCheckPath": "/healthz", "HealthCheckPort": "traffic-port", "HealthCheckIntervalSeconds": 5,
         "HealthCheckTimeoutSeconds": 2, "HealthyThresholdCount": 2, "UnhealthyThresholdCount": 2,
         "Matcher": {"HttpCode": "200"}}
ROLLING = (ServiceLoadBalancer((BLUE,), "app", 8000),)


def task(number: int) -> TaskInfo:
    task_id = f"{number:08x}{'a' * 24}"
    return TaskInfo(task_arn=f"arn:aws:ecs:us-east-1:123456789012:task/c/{task_id}", task_id=task_id,
                    short_id=f"{number:08x}", task_definition_arn="td:2", group="service:web", started_by=None,
                    last_status="RUNNING", desired_status="RUNNING", health_status="HEALTHY", stopped_reason=None,
                    stop_code=None, started_at=None, stopped_at=None, eni_id=f"eni-{number}",
                    private_ip=f"10.0.1.{number}", containers=())


def reading(*targets: tuple[str, str, str | None, str | None], group: dict[str, Any] = GROUP) -> TargetReading:
    """Targets of BLUE as (ip, state, reason, description)."""
    health = tuple(TargetHealth(ip, 8000, state, reason, description) for ip, state, reason, description in targets)
    return TargetReading({BLUE: TargetGroupSettings.from_elb(group)}, {BLUE: health})


def judge(read: TargetReading, tasks: tuple[TaskInfo, ...], *, now: float = 100.0,
          since: dict[str, float] | None = None, old_must_drain: bool = True) -> Any:
    return judge_targets(read, ROLLING, tasks, container_health_path="/health", unhealthy_since={} if since is None else since, now=now,
                         old_must_drain=old_must_drain)


# -- reading ---------------------------------------------------------------------------------------------


def test_the_services_load_balancers_name_the_groups_a_task_may_be_in() -> None:
    service = {"loadBalancers": [
        {"targetGroupArn": BLUE, "containerName": "app", "containerPort": 8000,
         "advancedConfiguration": {"alternateTargetGroupArn": GREEN, "productionListenerRule": "r1",
                                   "testListenerRule": "r2", "roleArn": "role"}},
        {"loadBalancerName": "classic-elb", "containerName": "app", "containerPort": 8000},  # no target group
    ]}
    assert service_load_balancers(service) == (ServiceLoadBalancer((BLUE, GREEN), "app", 8000),)
    assert service_load_balancers({"loadBalancers": []}) == ()
    assert service_load_balancers(None) == ()


def test_the_target_groups_settings_read_and_say_what_elb_checks() -> None:
    settings = TargetGroupSettings.from_elb(GROUP)
    assert settings.recovery_s == 2 * 5 + 2
    assert settings.describe() == ("target group web-blue: HTTP GET /healthz on traffic-port every 5 s, timeout 2 s, "
                                   "healthy after 2, unhealthy after 2, success codes 200")


@pytest.mark.parametrize(("description", "is_4xx"), [
    ("Health checks failed with these codes: [404]", True),
    ("Health checks failed with these codes: [403, 404]", True),
    ("Health checks failed with these codes: [503]", False),
    ("Health checks failed with these codes: [404, 502]", False),
])
def test_a_code_mismatch_is_a_refusal_only_when_every_code_is_4xx(description: str, is_4xx: bool) -> None:
    assert TargetHealth("10.0.1.1", 8000, "unhealthy", "Target.ResponseCodeMismatch", description).code_4xx() is is_4xx


# -- judging ---------------------------------------------------------------------------------------------


def test_every_new_task_healthy_and_the_old_target_draining_is_serving() -> None:
    judgement = judge(reading(("10.0.1.1", "healthy", None, None), ("10.0.1.2", "healthy", None, None),
                              ("10.0.1.9", "draining", "Target.DeregistrationInProgress", "Target deregistration is "
                                                                                           "in progress")),
                      (task(1), task(2)))
    assert (judgement.waiting_on, judgement.finding) == ("", None)


def test_an_initial_target_is_waited_for() -> None:
    judgement = judge(reading(("10.0.1.1", "healthy", None, None),
                              ("10.0.1.2", "initial", "Elb.InitialHealthChecking", "Initial health checks in progress")),
                      (task(1), task(2)))
    assert judgement.finding is None and judgement.unhealthy is None
    assert judgement.waiting_on == ("load balancer: task 00000002 target 10.0.1.2:8000 initial "
                                    "(Elb.InitialHealthChecking: Initial health checks in progress) in web-blue")


def test_a_task_not_registered_yet_is_waited_for() -> None:
    judgement = judge(reading(("10.0.1.1", "healthy", None, None)), (task(1), task(2)))
    assert judgement.waiting_on == "load balancer: task 00000002 (10.0.1.2) not registered in web-blue yet"


def test_an_old_target_still_registered_is_waited_for_unless_blue_serves_by_design() -> None:
    read = reading(("10.0.1.1", "healthy", None, None), ("10.0.1.9", "healthy", None, None))
    assert judge(read, (task(1),)).waiting_on == "load balancer: old target 10.0.1.9:8000 healthy still registered in web-blue"
    assert judge(read, (task(1),), old_must_drain=False).waiting_on == ""


def test_a_404_from_a_task_whose_container_is_healthy_is_the_finding_at_once() -> None:
    judgement = judge(reading(("10.0.1.1", "unhealthy", "Target.ResponseCodeMismatch",
                               "Health checks failed with these codes: [404]")), (task(1),))
    assert judgement.finding is not None and judgement.finding.kind == Kind.LB_TARGET_UNHEALTHY
    assert str(judgement.finding) == ("task 00000001 (10.0.1.1:8000) is unhealthy in target group web-blue: "
                                      "Target.ResponseCodeMismatch: Health checks failed with these codes: [404]")
    assert judgement.finding.details["target_group"]["path"] == "/healthz"
    assert judgement.finding.details["container_health_check_path"] == "/health"


def test_a_timeout_is_the_finding_once_elb_would_have_recovered_it() -> None:
    timeout = reading(("10.0.1.1", "unhealthy", "Target.Timeout", "Request timed out"))
    since: dict[str, float] = {}
    first = judge(timeout, (task(1),), now=100.0, since=since)
    assert first.finding is None and first.unhealthy is not None  # the deadline's finding, if it comes first
    assert "ELB needs 12 s of passing checks to call it healthy again" in first.waiting_on
    assert judge(timeout, (task(1),), now=111.0, since=since).finding is None
    later = judge(timeout, (task(1),), now=112.0, since=since)
    assert later.finding is not None and later.finding.details["reason"] == "Target.Timeout"


def test_a_target_that_recovers_starts_its_clock_again() -> None:
    since: dict[str, float] = {}
    judge(reading(("10.0.1.1", "unhealthy", "Target.Timeout", "Request timed out")), (task(1),), now=100.0, since=since)
    judge(reading(("10.0.1.1", "healthy", None, None)), (task(1),), now=105.0, since=since)
    again = judge(reading(("10.0.1.1", "unhealthy", "Target.Timeout", "Request timed out")), (task(1),), now=113.0,
                  since=since)
    assert again.finding is None


def test_blue_green_green_tasks_are_found_in_the_alternate_group() -> None:
    read = TargetReading({BLUE: TargetGroupSettings.from_elb(GROUP),
                          GREEN: TargetGroupSettings.from_elb({**GROUP, "TargetGroupArn": GREEN,
                                                               "TargetGroupName": "web-green"})},
                         {BLUE: (TargetHealth("10.0.1.9", 8000, "healthy"),),
                          GREEN: (TargetHealth("10.0.1.1", 8000, "initial", "Elb.RegistrationInProgress",
                                               "Target registration is in progress"),)})
    balancers = (ServiceLoadBalancer((BLUE, GREEN), "app", 8000),)
    judgement = judge_targets(read, balancers, (task(1),), container_health_path="/health", unhealthy_since={},
                              now=0.0, old_must_drain=False)
    assert judgement.waiting_on.endswith("initial (Elb.RegistrationInProgress: Target registration is in progress) "
                                         "in web-green")


# -- naming the cause ------------------------------------------------------------------------------------


def finding(reason: str, description: str) -> Failure:
    judged = judge(reading(("10.0.1.1", "unhealthy", reason, description)), (task(1),), since={task(1).task_id: 0.0})
    assert judged.finding is not None
    return Failure(kind=Kind.LB_TARGET_UNHEALTHY, check="deployment", message=str(judged.finding), details=judged.finding.details)


def test_a_404_names_the_target_groups_path_and_the_tasks() -> None:
    found = diagnose(finding("Target.ResponseCodeMismatch", "Health checks failed with these codes: [404]"))
    assert found.category == "lb_health_path_mismatch"
    assert found.summary == ("target group web-blue probes /healthz, which task 00000001 answers with 404; the task's "
                             "container health check probes /health")
    assert "GET /healthz on traffic-port every 5 s, timeout 2 s" in found.evidence


@pytest.mark.parametrize(("reason", "description", "category"), [
    ("Target.Timeout", "Request timed out", "lb_target_timeout"),
    ("Target.FailedHealthChecks", "Health checks failed", "lb_target_unhealthy"),
    ("Target.ResponseCodeMismatch", "Health checks failed with these codes: [502]", "lb_target_unhealthy"),
])
def test_each_reason_has_its_own_category_with_elbs_words(reason: str, description: str, category: str) -> None:
    found = diagnose(finding(reason, description))
    assert found.category == category
    assert f"{reason}: {description}" in found.evidence


# -- runs against the stage's load balancer ------------------------------------------------------------------

READ_ONLY = ("--read-only", "--stable-timeout", "90")


def harness_elb_calls(stage: Stage) -> dict[str, int]:
    """The elbv2 calls moto answered (the stage itself only creates and (de)registers)."""
    return {name: count for name, count in stage.aws_calls.items() if name in
            ("elbv2.DescribeTargetHealth", "elbv2.DescribeTargetGroups")}


def test_a_rolling_deploy_behind_a_load_balancer_is_green_once_its_targets_are_healthy(stage_factory: Any,
                                                                                     tmp_path: Path) -> None:
    stage = stage_factory("rolling", load_balancer=True, rolling_delay_s=1.0)
    run = run_smoke(stage.env, tmp_path, *READ_ONLY)
    assert (run.exit_code, run.verdict["exit_code"]) == (0, 0), run.output
    calls = harness_elb_calls(stage)
    assert calls["elbv2.DescribeTargetGroups"] == 1  # the settings once
    assert calls["elbv2.DescribeTargetHealth"] >= 1
    # The wait ended with every new task healthy in the target group and the old targets draining or gone.
    health = {item["Target"]["Id"]: item["TargetHealth"]["State"]
              for item in stage.load_balancer.target_health(stage.load_balancer.target_group_arn)}
    assert all(health[ip] == "healthy" for ip in stage.task_private_ips().values())


def test_a_blue_green_gate_behind_a_load_balancer_is_green_with_green_healthy_in_the_alternate_group(
        stage_factory: Any, tmp_path: Path) -> None:
    stage = stage_factory("blue_green", load_balancer=True)
    run = run_smoke(stage.env, tmp_path, "--continue-deployment", *READ_ONLY)
    assert (run.exit_code, run.verdict["exit_code"]) == (0, 0), run.output
    assert harness_elb_calls(stage)["elbv2.DescribeTargetHealth"] >= 1


@on_shared_stage(StagePlan("healthy", load_balancer=True, lb_faults=("tg_health_path",)))
def test_a_target_group_path_the_task_does_not_answer_is_lb_health_path_mismatch(shared_stage: Stage,
                                                                                 tmp_path: Path) -> None:
    run = run_smoke(shared_stage.env, tmp_path, *READ_ONLY)
    assert (run.exit_code, run.verdict["exit_code"]) == (1, 1), run.output
    assert run.categories() == {"lb_health_path_mismatch"}, run.verdict["diagnoses"]
    (found,) = run.diagnoses("lb_health_path_mismatch")
    assert "probes /healthz, which task" in found["summary"] and "container health check probes /health" in \
        found["summary"]
    assert "Target.ResponseCodeMismatch: Health checks failed with these codes: [404]" in found["evidence"]
    assert "target group civicforge-board-blue: HTTP GET /healthz" in found["evidence"]


@on_shared_stage(StagePlan("healthy", load_balancer=True, lb_faults=("sg_blocks_lb",)))
def test_a_security_group_that_keeps_the_load_balancer_out_is_lb_target_timeout(shared_stage: Stage,
                                                                                tmp_path: Path) -> None:
    run = run_smoke(shared_stage.env, tmp_path, *READ_ONLY)
    assert (run.exit_code, run.verdict["exit_code"]) == (1, 1), run.output
    assert run.categories() == {"lb_target_timeout"}, run.verdict["diagnoses"]
    (found,) = run.diagnoses("lb_target_timeout")
    assert "Target.Timeout: Request timed out" in found["evidence"]


def test_green_failing_the_alternate_groups_health_check_fails_the_blue_green_gate(stage_factory: Any,
                                                                                  tmp_path: Path) -> None:
    stage = stage_factory("blue_green", load_balancer=True, lb_faults=("tg_health_path",))
    run = run_smoke(stage.env, tmp_path, "--continue-deployment", *READ_ONLY)
    assert (run.exit_code, run.verdict["exit_code"]) == (1, 1), run.output
    (found,) = run.diagnoses("lb_health_path_mismatch")
    assert "target group civicforge-board-green probes /healthz" in found["summary"]
