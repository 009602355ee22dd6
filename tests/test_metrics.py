"""Canary metrics: published with real boto3 to moto, read back with ``get_metric_statistics``.

The unit tests host their own ``ThreadedMotoServer(port=0)`` (never ``mock_aws``: it would
wipe the stage's moto in this process) and a unique namespace each. The end-to-end tests run
``pytest smoke --canary`` as a subprocess against the local stage, like ``make demo`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from ecs_verdict.metrics import (
    CHECK_LATENCY_METRIC,
    DEPLOYMENT_METRIC,
    DURATION_METRIC,
    MAX_DATA_PER_REQUEST,
    SUCCESS_METRIC,
    check_latencies_from,
    publish_run_metrics,
    publish_verdict_metrics,
)
from stage.seed import SERVICE
from tests.conftest import StageFactory

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback
SECRET_KEY = "metrics-test-secret-key-value"


def _client(endpoint: str) -> Any:
    return boto3.client("cloudwatch", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key=SECRET_KEY, config=Config(retries={"total_max_attempts": 1}))


@pytest.fixture(scope="module")
def cloudwatch() -> Iterator[Any]:
    server = ThreadedMotoServer(port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield _client(f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def namespace() -> str:
    return f"Test/Smoke-{uuid.uuid4().hex[:8]}"


def _statistics(cloudwatch: Any, namespace: str, metric: str, dimensions: dict[str, str]) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc)
    return cloudwatch.get_metric_statistics(
        Namespace=namespace, MetricName=metric,
        Dimensions=[{"Name": name, "Value": value} for name, value in dimensions.items()],
        StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=10), Period=60,
        Statistics=["Maximum", "SampleCount"],
    )["Datapoints"]


def _dimension_sets(cloudwatch: Any, namespace: str, metric: str) -> list[set[str]]:
    metrics = cloudwatch.list_metrics(Namespace=namespace, MetricName=metric)["Metrics"]
    return [{d["Name"] for d in m["Dimensions"]} for m in metrics]


# -- publish_run_metrics --------------------------------------------------------------------------


def test_a_passing_run_publishes_success_duration_latencies_and_the_deployment(cloudwatch: Any,
                                                                              namespace: str) -> None:
    warnings = publish_run_metrics(
        cloudwatch, namespace=namespace, service="civicforge-board", environment="staging", success=True,
        duration_s=12.5, check_latencies={"test_health_answers_healthy": 0.12, "test_deployment_settled": 0.002},
        deployment_id="ecs-svc/1234567890",
    )

    assert warnings == []
    run = {"Service": "civicforge-board", "Environment": "staging"}
    [success] = _statistics(cloudwatch, namespace, SUCCESS_METRIC, run)
    assert (success["Maximum"], success["Unit"]) == (1.0, "Count")
    [duration] = _statistics(cloudwatch, namespace, DURATION_METRIC, run)
    assert (duration["Maximum"], duration["Unit"]) == (12.5, "Seconds")
    [latency] = _statistics(cloudwatch, namespace, CHECK_LATENCY_METRIC,
                            {**run, "Check": "test_health_answers_healthy"})
    assert (latency["Maximum"], latency["Unit"]) == (120.0, "Milliseconds")
    [deployment] = _statistics(cloudwatch, namespace, DEPLOYMENT_METRIC, {**run, "DeploymentId": "ecs-svc/1234567890"})
    assert deployment["Maximum"] == 1.0
    # The alarm's series keeps a fixed dimension set: the deployment id never joins it.
    assert _dimension_sets(cloudwatch, namespace, SUCCESS_METRIC) == [{"Service", "Environment"}]
    assert len(_dimension_sets(cloudwatch, namespace, CHECK_LATENCY_METRIC)) == 2


def test_a_failed_run_publishes_zero_and_no_deployment_metric_without_an_id(cloudwatch: Any, namespace: str) -> None:
    warnings = publish_run_metrics(cloudwatch, namespace=namespace, service="civicforge-board", environment="prod",
                                   success=False, duration_s=3.0, check_latencies={}, deployment_id=None)

    assert warnings == []
    [success] = _statistics(cloudwatch, namespace, SUCCESS_METRIC, {"Service": "civicforge-board",
                                                                    "Environment": "prod"})
    assert success["Maximum"] == 0.0
    assert _dimension_sets(cloudwatch, namespace, DEPLOYMENT_METRIC) == []


def test_many_checks_go_out_in_as_few_requests_as_aws_allows(cloudwatch: Any, namespace: str) -> None:
    requests: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        requests.append(len(params["MetricData"]))

    cloudwatch.meta.events.register("provide-client-params.monitoring.PutMetricData", count)
    try:
        latencies = {f"check_{index:04d}": 0.01 for index in range(MAX_DATA_PER_REQUEST + 5)}
        warnings = publish_run_metrics(cloudwatch, namespace=namespace, service="svc", environment="staging",
                                       success=True, duration_s=1.0, check_latencies=latencies,
                                       deployment_id="ecs-svc/1")
    finally:
        cloudwatch.meta.events.unregister("provide-client-params.monitoring.PutMetricData", count)

    assert warnings == []
    total = 2 + len(latencies) + 1  # success and duration, one per check, the deployment
    assert requests == [MAX_DATA_PER_REQUEST, total - MAX_DATA_PER_REQUEST]


def test_an_unreachable_cloudwatch_is_a_warning_not_an_exception() -> None:
    warnings = publish_run_metrics(_client(UNREACHABLE), namespace="CivicForge/Smoke", service="svc",
                                   environment="staging", success=True, duration_s=1.0,
                                   check_latencies={"test_health_answers_healthy": 0.1}, deployment_id="ecs-svc/1")

    [warning] = warnings
    assert warning.startswith("canary metrics: 4 of 4 data points not published to CloudWatch namespace "
                              "CivicForge/Smoke: AWS endpoint unreachable: ")
    assert "127.0.0.1:9" in warning
    assert SECRET_KEY not in warning


def test_no_region_is_a_warning_not_an_exception(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    verdict = {"verdict": "pass", "duration_s": 1.0, "target": {"service": "svc", "region": None}, "checks": []}

    warnings = publish_verdict_metrics(verdict, region=None, namespace="CivicForge/Smoke", environment="staging")

    assert len(warnings) == 1
    assert warnings[0].startswith("canary metrics not published: no AWS region set")


def test_check_latencies_keep_the_slowest_task_and_leave_out_skipped_checks() -> None:
    checks = [
        {"name": "test_health", "task_id": "a", "outcome": "passed", "duration_s": 0.2, "message": ""},
        {"name": "test_health", "task_id": "b", "outcome": "failed", "duration_s": 0.7, "message": "boom"},
        {"name": "test_invite", "task_id": "a", "outcome": "skipped", "duration_s": 0.0, "message": "read-only"},
        {"name": "test_deployment_settled", "task_id": None, "outcome": "passed", "duration_s": 0.01, "message": ""},
    ]

    assert check_latencies_from(checks) == {"test_health": 0.7, "test_deployment_settled": 0.01}


def test_verdict_metrics_use_the_verdicts_target_and_outcome(cloudwatch: Any, namespace: str) -> None:
    verdict = {"verdict": "fail", "duration_s": 4.25, "checks": [],
               "target": {"service": "civicforge-board", "deployment_id": "ecs-svc/77", "region": REGION}}

    assert publish_verdict_metrics(verdict, region=None, namespace=namespace, environment="staging",
                                   cloudwatch=cloudwatch) == []

    run = {"Service": "civicforge-board", "Environment": "staging"}
    assert [p["Maximum"] for p in _statistics(cloudwatch, namespace, SUCCESS_METRIC, run)] == [0.0]
    assert [p["Maximum"] for p in _statistics(cloudwatch, namespace, DURATION_METRIC, run)] == [4.25]
    assert [p["Maximum"] for p in _statistics(cloudwatch, namespace, DEPLOYMENT_METRIC,
                                              {**run, "DeploymentId": "ecs-svc/77"})] == [0.0]


# -- pytest smoke --canary against the stage ---------------------------------------------------


def _run_smoke(env: dict[str, str], report_dir: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    command = [sys.executable, "-m", "pytest", "smoke", "-p", "no:cacheprovider", "--report-dir", str(report_dir),
               "--canary", "--environment", "staging", *extra]
    env = {key: value for key, value in env.items() if key != "AWS_PROFILE"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    verdict = json.loads((report_dir / "verdict.json").read_text(encoding="utf-8"))
    return done.returncode, verdict, done.stdout + done.stderr


def test_a_canary_run_publishes_its_metrics_to_cloudwatch(stage_factory: StageFactory, tmp_path: Path) -> None:
    stage = stage_factory("healthy")

    code, verdict, output = _run_smoke({**os.environ, **stage.env}, tmp_path)

    assert (code, verdict["verdict"]) == (0, "pass"), output
    assert not [w for w in verdict["warnings"] if "canary" in w]
    cloudwatch = stage.client("cloudwatch")
    run = {"Service": SERVICE, "Environment": "staging"}
    assert [p["Maximum"] for p in _statistics(cloudwatch, "CivicForge/Smoke", SUCCESS_METRIC, run)] == [1.0]
    [duration] = _statistics(cloudwatch, "CivicForge/Smoke", DURATION_METRIC, run)
    assert duration["Maximum"] > 0
    deployment = {**run, "DeploymentId": verdict["target"]["deployment_id"]}
    assert [p["Maximum"] for p in _statistics(cloudwatch, "CivicForge/Smoke", DEPLOYMENT_METRIC, deployment)] == [1.0]
    checks = {c["name"] for c in verdict["checks"] if c["outcome"] != "skipped"}
    published = cloudwatch.list_metrics(Namespace="CivicForge/Smoke", MetricName=CHECK_LATENCY_METRIC)["Metrics"]
    assert {d["Value"] for m in published for d in m["Dimensions"] if d["Name"] == "Check"} == checks


def test_cloudwatch_down_leaves_a_green_run_green_with_a_warning(stage_factory: StageFactory, tmp_path: Path) -> None:
    stage = stage_factory("healthy")
    # boto3's per-service endpoint: only CloudWatch is unreachable, ECS and the rest are the stage.
    env = {**os.environ, **stage.env, "AWS_ENDPOINT_URL_CLOUDWATCH": UNREACHABLE}

    code, verdict, output = _run_smoke(env, tmp_path, "--metrics-namespace", "Test/Unreachable")

    assert (code, verdict["verdict"]) == (0, "pass"), output
    [warning] = [w for w in verdict["warnings"] if w.startswith("canary metrics")]
    assert "not published to CloudWatch namespace Test/Unreachable: AWS endpoint unreachable" in warning
    assert "canary metrics" in (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert stage.client("cloudwatch").list_metrics(Namespace="Test/Unreachable")["Metrics"] == []
