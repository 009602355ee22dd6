"""What each stage scenario looks like to a harness: real boto3 calls and real HTTP.

These pin the stand-in of ECS the rest of the suite relies on; if one fails,
every harness test built on that scenario tests the wrong thing.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from stage import Stage, StageError, StageOptions
from stage.seed import CLUSTER, LOG_GROUP, REPOSITORY, SERVICE, SMOKE_SECRET
from tests.conftest import StagePlan, on_shared_stage

ROOT = Path(__file__).resolve().parent.parent
# A bound on waiting for the stage, generous enough for a runner at load average 30 on 2 cores (never a timing).
LOADED_RUNNER_BOUND_S = 120


def service(stage: Stage) -> dict[str, Any]:
    return stage.client("ecs").describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]


def tasks(stage: Stage, desired: str = "RUNNING") -> list[dict[str, Any]]:
    ecs = stage.client("ecs")
    arns = ecs.list_tasks(cluster=CLUSTER, desiredStatus=desired)["taskArns"]
    return ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"] if arns else []


def public_ip(stage: Stage, task: dict[str, Any]) -> str:
    eni = next(d["value"] for d in task["attachments"][0]["details"] if d["name"] == "networkInterfaceId")
    interface = stage.client("ec2").describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
    return interface["Association"]["PublicIp"]


def log_lines(stage: Stage, task: dict[str, Any]) -> list[str]:
    task_id = task["taskArn"].rsplit("/", 1)[1]
    events = stage.client("logs").get_log_events(
        logGroupName=LOG_GROUP, logStreamName=f"ecs/civicforge-app/{task_id}", startFromHead=True
    )["events"]
    return [e["message"] for e in events]


@on_shared_stage(StagePlan("healthy"))
def test_healthy_is_two_healthy_tasks_of_one_completed_deployment(shared_stage: Stage) -> None:
    stage = shared_stage
    svc = service(stage)
    assert [(d["status"], d["rolloutState"], d["runningCount"]) for d in svc["deployments"]] == [
        ("PRIMARY", "COMPLETED", 2)
    ]
    assert (svc["runningCount"], svc["desiredCount"]) == (2, 2)
    assert any("has reached a steady state" in e["message"] for e in svc["events"])
    running = tasks(stage)
    assert [(t["lastStatus"], t["healthStatus"]) for t in running] == [("RUNNING", "HEALTHY")] * 2
    assert all(t["startedBy"] == svc["deployments"][0]["id"] for t in running)
    assert all(t["group"] == f"service:{SERVICE}" and "startedAt" in t for t in running)

    pushed = stage.client("ecr").describe_images(repositoryName=REPOSITORY, imageIds=[{"imageTag": "latest"}])
    assert {t["containers"][0]["imageDigest"] for t in running} == {pushed["imageDetails"][0]["imageDigest"]}

    for task in running:
        ip = public_ip(stage, task)
        assert ip.startswith("127.0.0.")
        assert httpx.get(f"http://{ip}:8000/health").json() == {"status": "healthy", "database": "connected"}
    assert "Migrations complete!" in log_lines(stage, running[0])

    accounts = json.loads(stage.client("secretsmanager").get_secret_value(SecretId=SMOKE_SECRET)["SecretString"])
    assert set(accounts) == {"owner", "participant", "participants"}
    pool = [accounts["participant"], *accounts["participants"]]
    assert len({a["username"] for a in pool}) == 3 and all(a["password"] for a in [accounts["owner"], *pool])
    definition = stage.client("ecs").describe_task_definition(taskDefinition=svc["taskDefinition"])
    check = definition["taskDefinition"]["containerDefinitions"][0]["healthCheck"]
    assert "urllib.request.urlopen('http://localhost:8000/health')" in check["command"][1]


def test_rolling_replaces_the_old_tasks_with_new_ones_on_new_addresses(stage_factory: Any) -> None:
    # Held until the old state is read: a delay would race the reads on a loaded runner.
    stage = stage_factory("rolling", rolling_delay_s=math.inf)
    before = service(stage)
    assert [(d["status"], d["rolloutState"]) for d in before["deployments"]] == [
        ("PRIMARY", "IN_PROGRESS"), ("ACTIVE", "COMPLETED")
    ]
    old = {t["taskArn"]: public_ip(stage, t) for t in tasks(stage)}
    assert all(t["taskDefinitionArn"].endswith(":1") for t in tasks(stage))

    stage.begin_roll_out()
    assert stage.wait_until(lambda: stage.stable_at is not None, LOADED_RUNNER_BOUND_S)
    after = service(stage)
    assert [(d["status"], d["rolloutState"]) for d in after["deployments"]] == [("PRIMARY", "COMPLETED")]
    new = tasks(stage)
    assert len(new) == 2 and not set(old) & {t["taskArn"] for t in new}
    assert all(t["taskDefinitionArn"].endswith(":2") and t["healthStatus"] == "HEALTHY" for t in new)
    stopped = [t for t in tasks(stage, "STOPPED") if t["taskArn"] in old]
    assert len(stopped) == 2 and all(t["stoppedReason"].startswith("Scaling activity") for t in stopped)
    assert "deployment completed" in after["events"][1]["message"]


@on_shared_stage(StagePlan("restart_loop"))
def test_restart_loop_stops_failing_tasks_and_replaces_them_elsewhere(shared_stage: Stage) -> None:
    stage = shared_stage
    primary = service(stage)["deployments"][0]

    def stopped_of_primary() -> list[dict[str, Any]]:
        return [t for t in tasks(stage, "STOPPED") if t.get("startedBy") == primary["id"]]

    assert stage.wait_until(lambda: len(stopped_of_primary()) >= 2, LOADED_RUNNER_BOUND_S)
    assert {t["stoppedReason"] for t in stopped_of_primary()} == {"Task failed container health checks"}
    assert stage.wait_until(lambda: len([t for t in stage.scheduler.tasks if t.deployment.id == primary["id"]]) > 2,
                            LOADED_RUNNER_BOUND_S)
    addresses = [t.ip for t in stage.scheduler.tasks if t.deployment.id == primary["id"]]
    assert len(set(addresses[:3])) == 3, "a replacement must get a new address"
    assert primary["rolloutState"] == "IN_PROGRESS"


@on_shared_stage(StagePlan("exec_format"))
def test_exec_format_tasks_stop_at_start_with_the_reason_ecs_gives(shared_stage: Stage) -> None:
    stage = shared_stage
    primary = service(stage)["deployments"][0]
    stopped = [t for t in tasks(stage, "STOPPED") if t.get("startedBy") == primary["id"]]
    assert stopped
    container = stopped[0]["containers"][0]
    assert "exec format error" in container["reason"] and container["exitCode"] == 255
    assert stopped[0]["stopCode"] == "EssentialContainerExited"
    stage.scheduler.wait_for(lambda: True, 0)
    assert stage.wait_until(lambda: any("exec format error" in line for line in log_lines(stage, stopped[0])),
                            LOADED_RUNNER_BOUND_S)


@on_shared_stage(StagePlan("stale_image"))
def test_stale_image_runs_another_digest_than_the_pushed_tag(shared_stage: Stage) -> None:
    stage = shared_stage
    running = {t["containers"][0]["imageDigest"] for t in tasks(stage)}
    assert stage.expected_image_digest not in running and len(running) == 1


@on_shared_stage(StagePlan("rolled_back"))
def test_rolled_back_is_back_on_the_previous_revision_with_the_failed_deploy_listed(shared_stage: Stage) -> None:
    stage = shared_stage
    svc = service(stage)
    assert svc["taskDefinition"].endswith(":1")
    states = [(d["status"], d["taskDefinition"][-2:], d["rolloutState"]) for d in svc["deployments"]]
    assert states == [("PRIMARY", ":1", "COMPLETED"), ("ACTIVE", ":2", "FAILED")]
    assert "circuit breaker" in svc["deployments"][1]["rolloutStateReason"]
    assert any("rolling back" in e["message"] for e in svc["events"])
    assert all(t["taskDefinitionArn"].endswith(":1") for t in tasks(stage))


def test_one_bad_task_applies_the_fault_to_one_task_only(stage_factory: Any) -> None:
    stage = stage_factory("one_bad_task", faults=["no_root_health"], health_check_path="/api/health")
    answers = sorted(httpx.get(f"http://{public_ip(stage, t)}:8000/health").status_code for t in tasks(stage))
    assert answers == [200, 404]


@on_shared_stage(StagePlan("healthy", ("curl_health_check",)))
def test_curl_health_check_never_passes_so_tasks_are_stopped(shared_stage: Stage) -> None:
    stage = shared_stage
    definition = stage.client("ecs").describe_task_definition(taskDefinition=service(stage)["taskDefinition"])
    assert definition["taskDefinition"]["containerDefinitions"][0]["healthCheck"]["command"][1].startswith("curl")
    stopped = tasks(stage, "STOPPED")
    assert stopped and stopped[0]["stoppedReason"] == "Task failed container health checks"


def test_app_cmd_runs_any_app_as_the_services_tasks(stage_factory: Any) -> None:
    command = f"{sys.executable} -m http.server --bind {{host}} {{port}}"
    stage = stage_factory("healthy", app_cmd=command, health_check_path="/")
    running = tasks(stage)
    assert [t["healthStatus"] for t in running] == ["HEALTHY", "HEALTHY"]
    assert httpx.get(f"http://{public_ip(stage, running[0])}:8000/").status_code == 200
    assert stage.wait_until(lambda: any("GET / HTTP" in line for line in log_lines(stage, running[0])),
                            LOADED_RUNNER_BOUND_S)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scenario": "nope"}, "unknown scenario 'nope'; known scenarios: healthy"),
        ({"faults": ("slow",)}, "unknown fault 'slow'; known faults:"),
        ({"faults": ("slow_ms=abc",)}, "fault slow_ms needs a number"),
        ({"health_check_path": "health"}, "--health-check-path must start with '/'"),
        ({"time_scale": 0}, "--time-scale must be a positive number, e.g. 0.1 or 1 (got 0)"),
        ({"start_period_scale": -1.0}, "--start-period-scale must be a positive number, e.g. 0.1 or 1 (got -1.0)"),
        ({"start_period_scale": float("inf")}, "--start-period-scale must be a positive number"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(options: dict[str, Any], message: str) -> None:
    with pytest.raises(StageError) as error:
        Stage(StageOptions(**options))
    assert message in str(error.value)


def test_an_app_command_that_exits_at_once_is_one_clear_error() -> None:
    command = f"{sys.executable} -c 'import sys; print(\"boom: no config\"); sys.exit(3)'"
    stage = Stage(StageOptions(app_cmd=command))
    with pytest.raises(StageError, match=r"the app command exited at once \(exit code 3\): boom: no config"):
        stage.start()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stage", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_cli_bad_input_is_one_line_and_exit_2() -> None:
    result = run_cli("up", "--scenario", "nope")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "stage: unknown scenario 'nope'; known scenarios: healthy, rolling, one_bad_task, restart_loop, "
        "exec_format, stale_image, rolled_back, alarm_rollback, blue_green, blue_green_bad"
    ]


@pytest.mark.parametrize(
    ("flag", "value"), [("--time-scale", "0"), ("--time-scale", "fast"), ("--start-period-scale", "-0.5")]
)
def test_cli_bad_clock_factor_is_one_line_and_exit_2(flag: str, value: str) -> None:
    result = run_cli("up", flag, value)
    assert result.returncode == 2
    expected = f"stage: {flag} must be a positive number, e.g. 0.1 or 1 (got {value!r})"
    assert result.stderr.strip().splitlines() == [expected]


@on_shared_stage(StagePlan("healthy"))
def test_cli_refuses_a_port_in_use(shared_stage: Stage) -> None:
    stage = shared_stage
    port = int(stage.endpoint.rsplit(":", 1)[1])
    result = run_cli("up", "--moto-port", str(port))
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_prints_the_environment_then_ready_and_sigterm_stops_everything() -> None:
    command = [sys.executable, "-m", "stage", "up", "--time-scale", "0.02", "--start-period-scale", "0.5"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines = []
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line.strip())
            if line.strip() == "stage ready":
                break
        exports = dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export "))
        assert {"AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "ECS_CLUSTER", "ECS_SERVICE", "SMOKE_SECRET"} <= set(exports)
        assert lines[-1] == "stage ready"
        endpoint = exports["AWS_ENDPOINT_URL"]
        httpx.get(endpoint + "/moto-api/").raise_for_status()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    errors = process.stderr.read().splitlines()  # type: ignore[union-attr]
    clock = ("stage: health checks every 0.6 s (interval 30 s x 0.02), timeout 1 s, 3 retries; "
             "startPeriod 60 s counted as 30.0 s (x 0.5)")
    assert clock in errors and errors[-1] == "stage stopped", errors
    with pytest.raises(httpx.ConnectError):
        httpx.get(endpoint + "/moto-api/", timeout=2)
