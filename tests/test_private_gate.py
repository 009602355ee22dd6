"""The private-service gate (ecs_verdict.remote) on the stage: RunTask of the harness image, played.

The caller runs as a CI job would, a process outside the "VPC", with the stage's AWS endpoint
only. Its RunTask starts the harness image as the canary's scheduled run does (stage/canary.py,
stage/harness_tasks.py): a real `pytest smoke` process against the stage's tasks at their
private addresses, uploading its reports to the stage's S3. The caller must return that run's
exit code, verdict and reports, and connect to nothing but the AWS endpoint: every TCP connect
it makes is recorded by an audit hook (``socket.connect``), and the same recorder is shown to
catch the task addresses a local run connects to.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ecs_verdict import remote
from ecs_verdict.remote_results import ResultsLocation, download_reports, parse_results_uri
from stage import Stage
from stage.seed import CLUSTER, SERVICE, SMOKE_SECRET
from tests.conftest import StageFactory
from tests.smoke_runs import ROOT, smoke_command, smoke_env

BUCKET = "civicforge-smoke-results"
RESULTS = f"s3://{BUCKET}/board"
RUN_TIMEOUT_S = 240
# Runs a module as ``python -m`` would, writing every address the process (and its forks) connects to.
RECORDER = """\
import json, runpy, sys
log = open(sys.argv[1], "a", encoding="utf-8")
def record(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple):
        log.write(json.dumps(list(args[1][:2])) + "\\n")
        log.flush()
sys.addaudithook(record)
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@dataclass(frozen=True)
class RecordedRun:
    exit_code: int
    output: str
    report_dir: Path
    connections: set[tuple[str, int]]

    @property
    def verdict(self) -> dict:
        path = self.report_dir / "verdict.json"
        assert path.exists(), f"no verdict.json (exit {self.exit_code}):\n{self.output[-3000:]}"
        return json.loads(path.read_text(encoding="utf-8"))


def run_recorded(tmp_path: Path, env: dict[str, str], module: str, *args: str) -> RecordedRun:
    log = tmp_path / f"{module}.connections.jsonl"
    log.touch()
    result = subprocess.run([sys.executable, "-c", RECORDER, str(log), module, *args], cwd=ROOT,
                            env=smoke_env(env), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    connections = {(host, port) for host, port in map(json.loads, log.read_text(encoding="utf-8").splitlines())}
    report_dir = Path(args[args.index("--report-dir") + 1])
    return RecordedRun(result.returncode, result.stdout + result.stderr, report_dir, connections)


def gate(tmp_path: Path, stage: Stage, *args: str) -> RecordedRun:
    """``python -m ecs_verdict.remote`` from outside the VPC: the caller knows the AWS endpoint and nothing else."""
    caller_env = {key: value for key, value in stage.env.items() if key != "SMOKE_SECRET"}
    return run_recorded(tmp_path, caller_env, "ecs_verdict.remote", "--report-dir", str(tmp_path / "reports"),
                        "--results-uri", RESULTS, "--poll-interval", "0.2", "--run-timeout", "200", *args)


def task_addresses(stage: Stage) -> set[str]:
    return {address for task in stage.scheduler.tasks for address in (task.ip, task.private_ip)}


def aws_endpoint(stage: Stage) -> tuple[str, int]:
    parts = urlsplit(stage.env["AWS_ENDPOINT_URL"])
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


@pytest.fixture
def gated_stage(stage_factory: StageFactory) -> Callable[..., Stage]:
    """A stage with the canary stack (its harness task definition) and a results bucket."""

    def start(*faults: str) -> Stage:
        stage = stage_factory("healthy", faults=faults)
        stage.install_canary()
        stage.client("s3").create_bucket(Bucket=BUCKET)
        return stage

    return start


# -- green and red, through the private gate --------------------------------------------------------


@pytest.mark.parametrize(("faults", "exit_code", "verdict"), [
    pytest.param((), 0, "pass", id="green"),
    # A read-only check fails: participants may create invites (a permission regression).
    pytest.param(("participant_can_invite",), 1, "fail", id="red"),
])
def test_the_gate_returns_the_in_vpc_runs_exit_code_verdict_and_reports(
    gated_stage: Callable[..., Stage], tmp_path: Path, faults: tuple[str, ...], exit_code: int, verdict: str
) -> None:
    stage = gated_stage(*faults)

    run = gate(tmp_path, stage, "--ecs-cluster", CLUSTER, "--ecs-service", SERVICE,
               "--", "--read-only", "--smoke-secret", SMOKE_SECRET)

    assert run.exit_code == exit_code, run.output
    assert run.verdict["verdict"] == verdict
    assert f"private gate: verdict {verdict} (exit {exit_code}) from task" in run.output
    # What ECS ran: the canary stack's task definition, in the service's network, this run's command.
    [played] = stage.harness_tasks.runs  # type: ignore[union-attr]
    request, in_vpc = played.request, played.run
    assert in_vpc is not None and in_vpc.exit_code == exit_code
    assert request["taskDefinition"].endswith(f":task-definition/{SERVICE}-smoke-canary:1")
    assert request["launchType"] == "FARGATE"
    [service] = stage.client("ecs").describe_services(cluster=CLUSTER, services=[SERVICE])["services"]
    network = service["networkConfiguration"]["awsvpcConfiguration"]
    assert request["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": network["subnets"], "securityGroups": network["securityGroups"],
        "assignPublicIp": network["assignPublicIp"]}
    command = in_vpc.argv[in_vpc.argv.index("no:cacheprovider") + 1:]
    assert command[:8] == ("--ecs-cluster", CLUSTER, "--ecs-service", SERVICE, "--aws-region", "us-east-1",
                           "--address", "private")
    assert command[8:11] == ("--read-only", "--smoke-secret", SMOKE_SECRET) and command[11] == "--results-uri"
    assert command[12].startswith(f"{RESULTS}/") and command[12].endswith("/") and len(command) == 13
    # The in-VPC run tested the tasks at their private addresses; its reports are the caller's now, byte for byte.
    assert run.verdict["tasks"] and all(t["ip"].startswith("127.1.") for t in run.verdict["tasks"])
    for name in ("verdict.json", "summary.md", "junit.xml"):
        assert (run.report_dir / name).read_bytes() == (in_vpc.report_dir / name).read_bytes(), name
    results = sorted(p.name for p in (run.report_dir / "allure-results").iterdir())
    assert results and results == sorted(p.name for p in (in_vpc.report_dir / "allure-results").iterdir())
    if verdict == "fail":
        failed = {c["name"] for c in run.verdict["checks"] if c["outcome"] == "failed"}
        assert failed == {"test_participant_cannot_create_invites"}
        assert "why [permission_regression]" in run.output
    # The caller connected to the AWS endpoint and nowhere else: no task address, public or private.
    assert run.connections == {aws_endpoint(stage)}, run.connections
    assert not {host for host, _ in run.connections} & task_addresses(stage)


def test_the_recorder_sees_a_local_run_connect_to_the_tasks(stage_factory: StageFactory, tmp_path: Path) -> None:
    """The proof above can fail: the same recorder around a local `pytest smoke` run records the task addresses."""
    stage = stage_factory("healthy")
    ledger = tmp_path / "ledger.jsonl"
    run = run_recorded(tmp_path, stage.env, "pytest", *smoke_command(tmp_path / "reports", "--read-only",
                                                                     ledger=ledger)[3:])
    assert run.exit_code == 0, run.output[-3000:]
    tested = {(task["ip"], 8000) for task in run.verdict["tasks"]}
    assert tested and tested <= run.connections


# -- what cannot be known: exit 6 with the cause ---------------------------------------------------


def test_a_task_that_never_starts_is_could_not_verify_with_ecs_stopped_reason(
    gated_stage: Callable[..., Stage], tmp_path: Path
) -> None:
    stage = gated_stage()
    reason = ("CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref "
              "123456789012.dkr.ecr.us-east-1.amazonaws.com/civicforge-smoke:stage: not found")
    stage.harness_tasks.refuse_start = reason  # type: ignore[union-attr]

    run = gate(tmp_path, stage, "--ecs-cluster", CLUSTER, "--ecs-service", SERVICE)

    assert run.exit_code == 6, run.output
    assert "stopped before its container ran (TaskFailedToStart: CannotPullContainerError" in run.output
    assert not (run.report_dir / "verdict.json").exists()
    summary = (run.report_dir / "summary.md").read_text(encoding="utf-8")
    assert "exit code 6, no verdict" in summary and reason in summary


def test_a_run_that_uploads_no_verdict_is_could_not_verify_quoting_its_log(
    gated_stage: Callable[..., Stage], tmp_path: Path
) -> None:
    """The in-VPC run could not write its results (here: a bucket it may not reach, played as one that is gone)."""
    stage = gated_stage()
    s3 = stage.client("s3")

    class Gone(io.StringIO):
        def write(self, text: str) -> int:  # the caller's "starting" line: the bucket goes as the task starts
            if "starting" in text and s3.list_buckets()["Buckets"]:
                s3.delete_bucket(Bucket=BUCKET)
            return super().write(text)

    out = Gone()
    request = remote.parse_request(["--ecs-cluster", CLUSTER, "--ecs-service", SERVICE, "--results-uri", RESULTS,
                                    "--report-dir", str(tmp_path / "reports"), "--poll-interval", "0.2",
                                    "--read-only", "--smoke-secret", SMOKE_SECRET], {})
    with pytest.MonkeyPatch.context() as patch:
        for key, value in stage.env.items():
            patch.setenv(key, value)
        outcome = remote.PrivateGate(request, out=out).run()

    assert outcome.exit_code == 6, out.getvalue()
    assert outcome.verdict is None
    assert "exited 0 and left no verdict.json under s3://civicforge-smoke-results/board/" in outcome.line
    assert "the reports were not uploaded" in outcome.line  # the task's own last line, from its log stream


def test_arguments_the_in_vpc_run_refuses_are_bad_input_quoting_its_own_line(
    gated_stage: Callable[..., Stage], tmp_path: Path
) -> None:
    stage = gated_stage()

    run = gate(tmp_path, stage, "--ecs-cluster", CLUSTER, "--ecs-service", SERVICE, "--", "--no-such-option")

    assert run.exit_code == 4, run.output
    [played] = stage.harness_tasks.runs  # type: ignore[union-attr]
    assert played.run is not None and played.run.exit_code == 4  # pytest's usage error, in the task
    assert "the in-VPC harness refused its arguments (exit 4): " in run.output
    assert "unrecognized arguments: --no-such-option" in run.output  # its line, from the task's log stream


# -- bad input: exit 4, one line --------------------------------------------------------------------


def _main(stage: Stage, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in stage.env.items():
            patch.setenv(key, value)
        patch.setattr(sys, "stderr", err)
        code = remote.main(["--report-dir", str(tmp_path / "reports"), *args], {}, out=out)
    return code, out.getvalue(), err.getvalue()


def test_bad_input_is_exit_4_in_one_line(stage_factory: StageFactory, tmp_path: Path) -> None:
    stage = stage_factory("healthy")  # no canary stack: no harness task definition
    code, out, err = _main(stage, tmp_path, "--ecs-cluster", CLUSTER, "--ecs-service", SERVICE, "--results-uri", RESULTS)
    assert (code, out) == (4, "")
    assert err == (f"ecs-verdict-remote: error: no task definition '{SERVICE}-smoke-canary' to run the harness with: "
                   "create the canary stack (infra/canary.yaml) for this service or pass --task-definition\n")

    stage.install_canary()
    code, out, err = _main(stage, tmp_path, "--ecs-cluster", CLUSTER, "--ecs-service", SERVICE, "--results-uri", RESULTS)
    assert (code, out) == (4, "")
    assert err == (f"ecs-verdict-remote: error: results bucket '{BUCKET}' does not exist: create it "
                   "(docs/private-gate.md) or fix --results-uri\n")

    code, _, err = _main(stage, tmp_path, "--ecs-cluster", CLUSTER, "--ecs-service", SERVICE, "--results-uri", RESULTS,
                         "--task-definition", "no-such-family")
    assert code == 4 and err.endswith("no task definition 'no-such-family' to run the harness with: "
                                      "check --task-definition\n")
    assert not stage.harness_tasks.runs  # type: ignore[union-attr]  # nothing was started


@pytest.mark.parametrize(("args", "line"), [
    (["--ecs-cluster", "c"], "--ecs-service is missing: pass --ecs-cluster and --ecs-service (or ECS_CLUSTER/ECS_SERVICE)"),
    (["--ecs-cluster", "c", "--ecs-service", "s"], "--results-uri is missing: give the S3 prefix"),
    (["--ecs-cluster", "c", "--ecs-service", "s", "--results-uri", "https://x"], "--results-uri: 'https://x' is not an S3 URI"),
    (["--ecs-cluster", "c", "--ecs-service", "s", "--results-uri", RESULTS, "--run-timeout", "0"],
     "--run-timeout: '0' must be a positive number of seconds"),
    (["--ecs-cluster", "c", "--ecs-service", "s", "--results-uri", RESULTS, "--", "--target-url", "http://x:1"],
     "--target-url skips discovery"),
    (["--ecs-cluster", "c", "--ecs-service", "s", "--results-uri", RESULTS, "--", "--report-dir", "x"],
     "--report-dir is this command's own"),
])
def test_arguments_it_cannot_use_are_one_line(args: list[str], line: str) -> None:
    with pytest.raises(remote.UsageError) as caught:
        remote.parse_request(args, {})
    assert str(caught.value).startswith(line)


def test_the_command_puts_the_target_first_and_this_runs_results_last() -> None:
    request = remote.parse_request(["--ecs-cluster", "c", "--ecs-service", "s", "--results-uri", RESULTS,
                                    "--address", "public", "--stable-timeout", "300"], {"SMOKE_REPORT_DIR": "out"})
    assert request.harness_args == ("--address", "public", "--stable-timeout", "300")
    assert request.report_dir == Path("out")
    run = request.results.child("20261207T000000Z-abc")
    assert remote.harness_command(request, "eu-west-1", run) == [
        "--ecs-cluster", "c", "--ecs-service", "s", "--aws-region", "eu-west-1", "--address", "private",
        "--address", "public", "--stable-timeout", "300",  # the caller's own --address wins: it comes later
        "--results-uri", "s3://civicforge-smoke-results/board/20261207T000000Z-abc/"]


@pytest.mark.parametrize(("uri", "location"), [
    ("s3://bucket-1", ResultsLocation("bucket-1", "")),
    ("s3://bucket-1/", ResultsLocation("bucket-1", "")),
    ("s3://bucket-1/a/b/", ResultsLocation("bucket-1", "a/b/")),
])
def test_results_uris(uri: str, location: ResultsLocation) -> None:
    assert parse_results_uri(uri) == location


@pytest.mark.parametrize("uri", ["s3://Bucket", "s3://b", "s3://bucket-1/a//b", "s3://bucket-1/../x", "bucket-1"])
def test_results_uris_refused(uri: str) -> None:
    with pytest.raises(ValueError):
        parse_results_uri(uri)


def test_a_key_that_would_leave_the_report_folder_is_not_written(
    stage_factory: StageFactory, tmp_path: Path
) -> None:
    stage = stage_factory("healthy")
    s3 = stage.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for key in ("run/verdict.json", "run/allure-results/a.json", "run/../escaped.txt"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")
    written = download_reports(s3, ResultsLocation(BUCKET, "run/"), tmp_path / "reports")
    assert sorted(p.relative_to(tmp_path / "reports").as_posix() for p in written) == [
        "allure-results/a.json", "verdict.json"]
    assert not (tmp_path / "escaped.txt").exists()
