"""The canary as AWS runs it, on the stage: the schedule fired, the alarm evaluated, a deploy rolled back.

moto stores the schedule and the alarm but never fires or evaluates them; stage/canary.py
plays EventBridge Scheduler (the schedule's task definition, its command run as a process)
and CloudWatch (the alarm's state from its metric's data points). The evaluator is a pure
function, pinned here row by row.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from stage.canary import (ALARM, INSUFFICIENT_DATA, OK, AlarmSpec, evaluate_alarm, evaluate_and_set, fire_schedule)
from tests.conftest import StageFactory

# The template's alarm: SmokeSuccess Minimum < 1 over 2 periods of 5 minutes, missing data breaching.
CANARY_ALARM = AlarmSpec(
    name="svc-production-smoke-canary", namespace="CivicForge/Smoke", metric_name="SmokeSuccess",
    dimensions=(("Service", "svc"), ("Environment", "production")), statistic="Minimum", period=300,
    evaluation_periods=2, datapoints_to_alarm=2, threshold=1.0, comparison="LessThanThreshold",
    treat_missing_data="breaching")


def _alarm(**changes: object) -> AlarmSpec:
    fields = {name: getattr(CANARY_ALARM, name) for name in CANARY_ALARM.__slots__}
    return AlarmSpec(**(fields | changes))  # type: ignore[arg-type]


# -- the evaluator, table-driven -----------------------------------------------------------------


@pytest.mark.parametrize(("spec", "values", "current", "state"), [
    # The canary's own alarm (2 of 2, missing breaching).
    pytest.param(CANARY_ALARM, [None, None], OK, ALARM, id="no-run-at-all-breaches"),
    pytest.param(CANARY_ALARM, [None, 1.0], INSUFFICIENT_DATA, OK, id="one-empty-period-is-not-enough"),
    pytest.param(CANARY_ALARM, [1.0, None], INSUFFICIENT_DATA, OK, id="latest-period-empty"),
    pytest.param(CANARY_ALARM, [None, 0.0], OK, ALARM, id="a-failed-run-and-an-empty-period"),
    pytest.param(CANARY_ALARM, [1.0, 0.0], ALARM, OK, id="one-failed-run-after-a-good-one"),
    pytest.param(CANARY_ALARM, [0.0, 0.0], OK, ALARM, id="two-failed-runs"),
    pytest.param(CANARY_ALARM, [1.0, 1.0], ALARM, OK, id="all-ones"),
    # Only the last EvaluationPeriods count.
    pytest.param(CANARY_ALARM, [0.0, 0.0, 1.0, 1.0], ALARM, OK, id="older-failures-out-of-the-window"),
    # M of N: 2 of 3.
    pytest.param(_alarm(evaluation_periods=3), [0.0, 1.0, 0.0], OK, ALARM, id="2-of-3-mixed"),
    pytest.param(_alarm(evaluation_periods=3), [0.0, 1.0, 1.0], ALARM, OK, id="1-of-3-mixed"),
    pytest.param(_alarm(evaluation_periods=3, datapoints_to_alarm=3), [0.0, 1.0, 0.0], ALARM, OK, id="3-of-3-mixed"),
    pytest.param(_alarm(evaluation_periods=3, datapoints_to_alarm=1), [1.0, 1.0, 0.0], OK, ALARM, id="1-of-3-any"),
    # The other ways of treating missing data.
    pytest.param(_alarm(treat_missing_data="notBreaching"), [None, None], ALARM, OK, id="not-breaching-empty"),
    pytest.param(_alarm(treat_missing_data="notBreaching"), [0.0, None], ALARM, OK, id="not-breaching-half"),
    pytest.param(_alarm(treat_missing_data="missing"), [None, None], OK, INSUFFICIENT_DATA, id="missing-empty"),
    pytest.param(_alarm(treat_missing_data="missing", datapoints_to_alarm=1), [None, 0.0], OK, ALARM,
                 id="missing-one-breach"),
    pytest.param(_alarm(treat_missing_data="ignore"), [None, None], ALARM, ALARM, id="ignore-keeps-alarm"),
    pytest.param(_alarm(treat_missing_data="ignore"), [None, None], OK, OK, id="ignore-keeps-ok"),
    # Other comparisons.
    pytest.param(_alarm(comparison="GreaterThanThreshold", threshold=5.0), [6.0, 7.0], OK, ALARM, id="gt"),
    pytest.param(_alarm(comparison="GreaterThanOrEqualToThreshold", threshold=5.0), [5.0, 4.0], ALARM, OK, id="ge"),
    pytest.param(_alarm(comparison="LessThanOrEqualToThreshold"), [1.0, 1.0], OK, ALARM, id="le"),
])
def test_the_alarm_state_is_cloudwatchs_for_these_periods(
    spec: AlarmSpec, values: list[float | None], current: str, state: str
) -> None:
    assert evaluate_alarm(spec, values, current).state == state


def test_the_reason_says_how_many_periods_breached_and_that_missing_ones_counted() -> None:
    result = evaluate_alarm(CANARY_ALARM, [None, 0.0])
    assert result.reason == (
        "Threshold Crossed: 2 out of the last 2 datapoints [missing, 0] (1 missing treated as Breaching) were less "
        "than the threshold (1) (minimum 2 datapoints for OK -> ALARM transition).")
    assert (result.values, result.breaching) == ((None, 0.0), 2)


def test_fewer_periods_than_the_alarm_evaluates_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="need 2 periods"):
        evaluate_alarm(CANARY_ALARM, [1.0])


# -- the schedule fired against the stage ---------------------------------------------------------


def _success_points(stage: object, alarm_name: str, since: datetime) -> list[float]:
    cloudwatch = stage.client("cloudwatch")  # type: ignore[attr-defined]
    [alarm] = cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
    points = cloudwatch.get_metric_statistics(
        Namespace=alarm["Namespace"], MetricName=alarm["MetricName"], Dimensions=alarm["Dimensions"],
        StartTime=since - timedelta(minutes=1), EndTime=datetime.now(timezone.utc) + timedelta(minutes=1),
        Period=alarm["Period"], Statistics=[alarm["Statistic"]])["Datapoints"]
    return [p[alarm["Statistic"]] for p in points]


@pytest.mark.parametrize(("faults", "verdict", "success", "state"), [
    pytest.param((), "pass", 1.0, OK, id="green"),
    # A read-only check fails: participants may create invites (a permission regression).
    pytest.param(("participant_can_invite",), "fail", 0.0, ALARM, id="red"),
])
def test_a_fired_schedule_runs_the_canary_and_its_alarm_follows_the_result(
    stage_factory: StageFactory, tmp_path: Path, faults: tuple[str, ...], verdict: str, success: float, state: str
) -> None:
    stage = stage_factory("healthy", faults=faults)
    canary = stage.install_canary()
    cloudwatch = stage.client("cloudwatch")
    [alarm] = cloudwatch.describe_alarms(AlarmNames=[canary.alarm_name])["MetricAlarms"]
    assert alarm["StateValue"] == INSUFFICIENT_DATA  # where AWS starts a new alarm (moto: OK)
    began = datetime.now(timezone.utc)

    run = fire_schedule(stage.client, canary.schedule_name, aws_env=stage.aws_env, report_dir=tmp_path / "reports")

    assert run.verdict["verdict"] == verdict, run.output
    assert run.exit_code == (0 if verdict == "pass" else 1)
    if verdict == "fail":
        failed = {c["name"] for c in run.verdict["checks"] if c["outcome"] == "failed"}
        assert failed == {"test_participant_cannot_create_invites"}
    assert _success_points(stage, canary.alarm_name, began) == [success]
    evaluation = evaluate_and_set(cloudwatch, canary.alarm_name)
    assert evaluation.state == state
    [alarm] = cloudwatch.describe_alarms(AlarmNames=[canary.alarm_name])["MetricAlarms"]
    assert (alarm["StateValue"], alarm["StateReason"]) == (state, evaluation.reason)
    # The task's output went where the task definition's awslogs options send it.
    streams = stage.client("logs").describe_log_streams(
        logGroupName="/ecs/civicforge-board-service-smoke-canary")["logStreams"]
    assert [s["logStreamName"] for s in streams] == [f"smoke/smoke/{run.task_id}"]


# -- deployment alarms roll a deploy back ---------------------------------------------------------


def _baking(stage: object) -> bool:
    deployments = stage.scheduler.deployments  # type: ignore[attr-defined]
    return any(d.status == "PRIMARY" and d.rollout_state == "IN_PROGRESS" and d.bake_until for d in deployments)


def _rolled_back(stage: object) -> bool:
    deployments = stage.scheduler.deployments  # type: ignore[attr-defined]
    return deployments[0].rollout_state == "COMPLETED" and any(d.rollout_state == "FAILED" for d in deployments)


def test_the_canary_alarm_in_alarm_during_the_bake_rolls_the_deploy_back(
    stage_factory: StageFactory, tmp_path: Path
) -> None:
    """A deploy of a faulty build, guarded by the canary's alarm, is rolled back within its bake time.

    While ECS bakes a deploy its rollout stays IN_PROGRESS; the canary tests the new tasks then
    (they are the ones serving), fails and publishes its 0, the alarm goes off on that datapoint,
    and ECS rolls back. The next canary run reports the rollback, naming the alarm.
    """
    stage = stage_factory("alarm_rollback", bake_time_s=240)
    assert stage.canary is not None
    alarm_name = stage.canary.alarm_name
    ecs, cloudwatch = stage.client("ecs"), stage.client("cloudwatch")
    [service] = ecs.describe_services(cluster="civicforge-cluster", services=["civicforge-board-service"])["services"]
    assert service["deploymentConfiguration"]["alarms"] == {"alarmNames": [alarm_name], "enable": True,
                                                            "rollback": True}
    assert stage.wait_until(lambda: _baking(stage), 60), "the deploy never reached its bake time"
    [service] = ecs.describe_services(cluster="civicforge-cluster", services=["civicforge-board-service"])["services"]
    assert [(d["status"], d["rolloutState"], d["runningCount"]) for d in service["deployments"]] == [
        ("PRIMARY", "IN_PROGRESS", 2), ("ACTIVE", "COMPLETED", 0)]
    faulty = service["deployments"][0]
    began = datetime.now(timezone.utc)

    during_bake = fire_schedule(stage.client, stage.canary.schedule_name, aws_env=stage.aws_env,
                                report_dir=tmp_path / "bake")
    assert (during_bake.exit_code, during_bake.verdict["verdict"]) == (1, "fail"), during_bake.output
    assert "permission_regression" in {d["category"] for d in during_bake.verdict["diagnoses"]}
    assert _success_points(stage, alarm_name, began) == [0.0]
    evaluation = evaluate_and_set(cloudwatch, alarm_name)  # CloudWatch's next evaluation
    assert (evaluation.state, evaluation.values) == (ALARM, (None, 0.0))  # the canary's 0, not its silence

    assert stage.wait_until(lambda: _rolled_back(stage), 60), "ECS did not roll the deploy back"
    [service] = ecs.describe_services(cluster="civicforge-cluster", services=["civicforge-board-service"])["services"]
    primary, failed = service["deployments"]
    assert (primary["status"], primary["rolloutState"]) == ("PRIMARY", "COMPLETED")
    assert primary["taskDefinition"] == stage.seeded.previous_task_definition  # type: ignore[union-attr]
    assert (failed["id"], failed["status"], failed["rolloutState"]) == (faulty["id"], "ACTIVE", "FAILED")
    assert alarm_name in failed["rolloutStateReason"]
    events = [event["message"] for event in service["events"]]
    assert (f"(service civicforge-board-service) (deployment {faulty['id']}) deployment failed: "
            f"alarm(s) {alarm_name} are in ALARM state.") in events
    assert any(f"(deployment {faulty['id']})" in e and "rolling back to deployment" in e for e in events)

    after = fire_schedule(stage.client, stage.canary.schedule_name, aws_env=stage.aws_env,
                          report_dir=tmp_path / "after")
    assert (after.exit_code, after.verdict["verdict"]) == (1, "fail"), after.output
    [diagnosis] = [d for d in after.verdict["diagnoses"] if d["category"] == "deployment_rolled_back"]
    assert diagnosis["summary"] == f"ECS rolled the deployment back: deployment alarm(s) {alarm_name} went into ALARM"
