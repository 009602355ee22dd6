"""startPeriod on the stage's clock: a slow boot inside it is HEALTHY, one beyond it is replaced.

The task definition gives the app 60 s to boot. The stage used to count that as
60 s x 0.01, floored at 8 s, and stopped a real build that needed 15 s as
"Task failed container health checks". Now intervals and timeouts run on the
fast clock while startPeriod counts real seconds unless a test says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stage.deployment import DEFAULT_START_PERIOD_SCALE, DEFAULT_TIME_SCALE
from stage.scheduler import HEALTH_CHECK_FAILED
from stage.task_health import HealthCheck
from stage.seed import CLUSTER, health_check
from tests.smoke_runs import run_smoke

TASK_DEFINITION_START_PERIOD_S = 60


def stopped_reasons(stage: Any) -> list[str]:
    ecs = stage.client("ecs")
    arns = ecs.list_tasks(cluster=CLUSTER, desiredStatus="STOPPED")["taskArns"]
    return [t["stoppedReason"] for t in ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]] if arns else []


# -- HealthCheck.from_task_definition -------------------------------------------------------------


def test_intervals_follow_the_time_scale_and_start_period_its_own_factor() -> None:
    container = {"healthCheck": health_check("/health", curl=False)}

    real = HealthCheck.from_task_definition(container, DEFAULT_TIME_SCALE, DEFAULT_START_PERIOD_SCALE)
    assert real is not None and real.path == "/health"
    assert (real.interval_s, real.timeout_s, real.retries) == (pytest.approx(0.3), 1.0, 3)
    assert real.start_period_s == TASK_DEFINITION_START_PERIOD_S
    assert real.describe() == ("health checks every 0.3 s (interval 30 s x 0.01), timeout 1 s, 3 retries; "
                               "startPeriod 60 s counted as 60.0 s (x 1)")

    fast = HealthCheck.from_task_definition(container, DEFAULT_TIME_SCALE, 0.1)
    assert fast is not None
    assert fast.start_period_s == pytest.approx(6.0)
    assert fast.interval_s == real.interval_s, "the start-period factor must not touch the interval"
    assert "startPeriod 60 s counted as 6.0 s (x 0.1)" in fast.describe()


def test_no_start_period_means_none_and_no_health_check_means_no_check() -> None:
    declared = {**health_check("/health", curl=False), "startPeriod": 0}
    check = HealthCheck.from_task_definition({"healthCheck": declared}, DEFAULT_TIME_SCALE, 1.0)
    assert check is not None and check.start_period_s == 0, "no floor: ECS counts failures from the first check"
    assert HealthCheck.from_task_definition({}, DEFAULT_TIME_SCALE, 1.0) is None


def test_a_curl_health_check_can_never_pass_in_the_image() -> None:
    check = HealthCheck.from_task_definition({"healthCheck": health_check("/health", curl=True)}, 0.01, 1.0)
    assert check is not None and check.path is None and not check.passes("127.0.0.1", 9)


# -- the deployment, through the harness -------------------------------------------------------------


def test_a_15_s_boot_inside_the_60_s_start_period_is_healthy(stage_factory: Any, tmp_path: Path) -> None:
    stage = stage_factory("healthy", faults=["warmup_s=15"], start_period_scale=DEFAULT_START_PERIOD_SCALE)
    check = stage.scheduler.health_check(stage.seeded.current_task_definition)
    assert check.start_period_s == TASK_DEFINITION_START_PERIOD_S

    run = run_smoke(stage.env, tmp_path, "--stable-timeout", "90")

    assert run.exit_code == 0, run.output
    assert run.verdict["verdict"] == "pass" and not run.categories()
    assert HEALTH_CHECK_FAILED not in stopped_reasons(stage)
    assert [t.health for t in stage.scheduler.tasks] == ["HEALTHY", "HEALTHY"], "no task was replaced"


def test_a_boot_longer_than_the_start_period_is_replaced_and_named(stage_factory: Any, tmp_path: Path) -> None:
    # 60 s x 0.1 = 6 s of startPeriod, then 3 failures 0.3 s apart: a 30 s boot never makes it.
    stage = stage_factory("healthy", faults=["warmup_s=30"], start_period_scale=0.1, restart_delay_s=0.2)

    run = run_smoke(stage.env, tmp_path, "--stable-timeout", "90")

    assert run.exit_code == 1, run.output
    assert run.categories() == {"task_restarting"}, run.verdict["diagnoses"]
    reasons = stopped_reasons(stage)
    assert reasons and set(reasons) == {HEALTH_CHECK_FAILED}
    (diagnosis,) = run.diagnoses("task_restarting")
    assert HEALTH_CHECK_FAILED in diagnosis["evidence"]
