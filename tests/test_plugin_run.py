"""`pytest smoke` end to end against the stage: what a CI job sees (exit code, lines, verdict).

The pytest-free core is tested on its own in test_discovery/test_stability; these
pin the pytest layer on top: once-per-run discovery, parametrisation per task,
exit codes, and the one clear line for bad input.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from stage import Stage
from tests.conftest import StagePlan, on_shared_stage
from tests.smoke_runs import run_smoke

ZERO_DIGEST = "sha256:" + "0" * 64
STAGE_ONLY = ("-k", "deployment or health")  # the checks that need no smoke account


@on_shared_stage(StagePlan("healthy"))
def test_healthy_passes_with_every_task_tested_under_its_short_id(shared_stage: Stage, tmp_path: Path) -> None:
    stage = shared_stage
    run = run_smoke(stage.env, tmp_path, "-v", *STAGE_ONLY)
    assert run.exit_code == 0, run.output
    for task_id in stage.task_ips():
        assert f"test_health_answers_healthy[{task_id[:8]}] PASSED" in run.output
    assert run.verdict["verdict"] == "pass"
    assert {t["task_id"] for t in run.verdict["tasks"]} == set(stage.task_ips())


def test_rolling_waits_then_tests_only_the_new_tasks(stage_factory: Any, tmp_path: Path) -> None:
    stage = stage_factory("rolling", rolling_delay_s=1.0)
    old_tasks = set(stage.task_ips())
    run = run_smoke(stage.env, tmp_path, *STAGE_ONLY)
    assert run.exit_code == 0, run.output
    tested = {t["task_id"] for t in run.verdict["tasks"]}
    assert len(tested) == 2 and not tested & old_tasks
    # Without a terminal (as in CI) the wait still says what it is waiting on, in plain lines.
    progress = [line for line in run.output.splitlines() if line.startswith("waiting for the deployment: ")]
    assert progress and "\r" not in run.output
    assert "deployment settled after" in run.output
    assert tested == set(stage.task_ips())
    assert all(t["task_definition"].endswith(":2") for t in [run.verdict["target"]])


@pytest.mark.parametrize(
    ("shared_stage", "evidence"),
    [
        (StagePlan("restart_loop"), "Task failed container health checks"),
        (StagePlan("exec_format"), "exec format error"),
        (StagePlan("rolled_back"), "circuit breaker"),
    ],
    indirect=["shared_stage"],
    ids=["restart_loop", "exec_format", "rolled_back"],
)
def test_a_deploy_that_cannot_succeed_fails_at_once_with_its_evidence(
    shared_stage: Stage, tmp_path: Path, evidence: str
) -> None:
    stage = shared_stage
    run = run_smoke(stage.env, tmp_path, "--stable-timeout", "120")
    assert run.exit_code == 1, run.output
    assert "deploy failed:" in run.output and evidence in run.output
    check = run.outcomes()
    assert check[("test_deployment_settled", None)] == "failed"
    assert run.verdict["verdict"] == "fail"
    assert "deadline" not in run.verdict["checks"][0]["message"]


@on_shared_stage(StagePlan("stale_image"))
def test_a_stale_image_fails_naming_both_digests(shared_stage: Stage, tmp_path: Path) -> None:
    stage = shared_stage
    expected, running = stage.expected_image_digest, stage.seeded.previous_digest
    run = run_smoke(stage.env, tmp_path, "--expect-image-digest", expected, *STAGE_ONLY)
    assert run.exit_code == 1, run.output
    # One line says what failed with both digests short (the header echoes the expected one anyway)...
    headline = f"runs {running[:19]}…, expected {expected[:19]}…"
    assert any(line.startswith("deploy failed: ") and headline in line for line in run.output.splitlines()), run.output
    # ...and the check's message names every task with both digests in full.
    assert run.outcomes()[("test_deployment_settled", None)] == "failed"
    message = next(c["message"] for c in run.verdict["checks"] if c["name"] == "test_deployment_settled")
    for task_id in stage.task_ips():
        assert f"task {task_id[:8]} runs {running}, expected {expected}" in message, message


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        ((), {}, "ERROR: no target given: pass --ecs-cluster and --ecs-service (or ECS_CLUSTER/ECS_SERVICE), "
                 "or --target-url URL"),
        (("--ecs-cluster", "c"), {}, "ERROR: --ecs-service is missing: pass --ecs-cluster and --ecs-service"),
        (("--target-url", "localhost:8000"), {},
         "ERROR: --target-url (from command line): target URL must look like http://host:port, got 'localhost:8000'"),
        ((), {"API_BASE_URL": "ftp://x"},
         "ERROR: --target-url (from env API_BASE_URL): target URL must look like http://host:port, got 'ftp://x'"),
        (("--ecs-cluster", "c", "--ecs-service", "s", "--address", "both"), {},
         "ERROR: --address (from command line): 'both' is not one of: public, private"),
        (("--ecs-cluster", "c", "--ecs-service", "s", "--stable-timeout", "soon"), {},
         "ERROR: --stable-timeout (from command line): 'soon' is not a number"),
    ],
)
def test_bad_input_is_one_line_and_exit_4(tmp_path: Path, args: tuple[str, ...], env: dict[str, str],
                                          line: str) -> None:
    clean = {"ECS_CLUSTER": "", "ECS_SERVICE": "", "API_BASE_URL": "", **env}
    run = run_smoke(clean, tmp_path, *args)
    assert run.exit_code == 4
    assert any(out.startswith(line) for out in run.output.splitlines()), run.output
    assert "Traceback" not in run.output


def unreachable_env() -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def no_credentials_env(tmp_path: Path) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true",
            # An empty container-credentials URI makes botocore try (and fail) the container role,
            # as on a CI runner whose role is gone: that too must be one line, not a crash.
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": ""}


@pytest.mark.parametrize(
    ("env_of", "args", "line"),
    [
        (lambda tmp: unreachable_env(), (), "could not verify: AWS endpoint unreachable"),
        (no_credentials_env, (), "could not verify: AWS credentials could not be loaded"),
        (lambda tmp: {**unreachable_env(), "AWS_ENDPOINT_URL": ""}, ("--aws-region", "us-nowhere-9"),
         "could not verify: unknown AWS region 'us-nowhere-9'"),
    ],
)
def test_could_not_verify_without_aws_is_one_line_and_exit_6(tmp_path: Path, env_of: Any, args: tuple[str, ...],
                                                            line: str) -> None:
    run = run_smoke(env_of(tmp_path), tmp_path, "--ecs-cluster", "c", "--ecs-service", "s", *args)
    assert run.exit_code == 6, run.output
    assert any(out.startswith(line) for out in run.output.splitlines()), run.output
    assert "Traceback" not in run.output
    assert run.verdict["verdict"] == "error" and run.verdict["exit_code"] == 6


@on_shared_stage(StagePlan("rolling"))
@pytest.mark.changes_shared_stage  # scales the service to zero at the end
def test_could_not_verify_against_the_stage(shared_stage: Stage, tmp_path: Path) -> None:
    """Wrong names, a service scaled to zero and a deadline: each its own line, all exit 6."""
    stage = shared_stage
    cases = [
        (("--ecs-cluster", "civicforge-clstr"), "could not verify: ECS cluster 'civicforge-clstr' not found"),
        (("--ecs-service", "civicforge-board-mvp-service"),
         "could not verify: ECS service 'civicforge-board-mvp-service' not found"),
        (("--stable-timeout", "2"), "could not verify: deploy not stable after 2 s (deadline)"),
    ]
    # The three runs only read the stage: run them side by side, each with its own report folder.
    with ThreadPoolExecutor(len(cases)) as pool:
        runs = list(pool.map(lambda number: run_smoke(stage.env, tmp_path / str(number), *cases[number][0]),
                             range(len(cases))))
    for run, (_args, line) in zip(runs, cases):
        assert run.exit_code == 6, run.output
        assert any(out.startswith(line) for out in run.output.splitlines()), run.output
    stage.client("ecs").update_service(cluster="civicforge-cluster", service="civicforge-board-service",
                                       desiredCount=0)
    run = run_smoke(stage.env, tmp_path / "zero")
    assert run.exit_code == 6 and "has desired count 0" in run.output, run.output


@on_shared_stage(StagePlan("healthy"))
def test_xdist_workers_share_one_discovery_and_wait(shared_stage: Stage, tmp_path: Path) -> None:
    stage = shared_stage

    def describe_services_during(*args: str) -> int:
        before = stage.aws_calls.get("ecs.DescribeServices", 0)
        run = run_smoke(stage.env, tmp_path / str(len(args)), *STAGE_ONLY, *args)
        assert run.exit_code == 0, run.output
        return stage.aws_calls.get("ecs.DescribeServices", 0) - before

    serial = describe_services_during()
    parallel = describe_services_during("-n", "2")
    assert parallel == serial
