"""The private-service gate: run the harness inside the service's VPC, from a runner outside it.

``ecs-verdict-remote`` (``python -m ecs_verdict.remote``) starts the harness image as a one-off
Fargate task (ecs.RunTask) in the service's own subnets and security groups, with the canary
stack's task definition (``<service>-smoke-canary``, infra/canary.yaml) or one named, its
command overridden with this run's ``pytest smoke`` arguments and ``--results-uri``. It waits
for the task to stop (DescribeTasks, bounded), copies the reports the in-VPC run uploaded to S3
into ``--report-dir``, prints the one-line verdict and exits with the in-VPC run's code.

The caller itself sends no HTTP to any task or load balancer: it talks to the AWS APIs only
(ECS, S3, and CloudWatch Logs for the cause when the task left no verdict).

Exit codes: the in-VPC run's 0, 1 or 6; 6 when the task never started, was stopped, ran over
``--run-timeout`` or left no verdict (the cause, ECS's stoppedReason, in one line); 4 for bad
input here (no task definition, no results bucket, a service without awsvpc networking) and
when the in-VPC harness refused the arguments it was handed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tenacity
from botocore.exceptions import ClientError

from ecs_verdict.aws import aws_errors, error_code, make_clients
from ecs_verdict.errors import CouldNotVerify
from ecs_verdict.remote_results import ResultsLocation, download_reports, parse_results_uri
from ecs_verdict.settings import DEFAULT_REPORT_DIR, parse_name, parse_report_dir, parse_seconds

EXIT_PASS, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_VERIFIED = 0, 1, 4, 6
MIRRORED_EXIT_CODES = frozenset({EXIT_PASS, EXIT_FAILED, EXIT_NOT_VERIFIED})
CANARY_FAMILY_SUFFIX = "-smoke-canary"  # infra/canary.yaml: Family "${ServiceName}-smoke-canary"
DEFAULT_RUN_TIMEOUT_S = 1800.0  # the in-VPC run's own wait (--stable-timeout, 600 s) and checks fit well inside
DEFAULT_POLL_INTERVAL_S = 6.0
STARTED_BY = "ecs-verdict-remote"  # ECS shows it on the task: who started this one-off task
LOG_TAIL_LINES = 3
USAGE_SEARCH_LINES = 10  # pytest's usage error: the error line, then its inifile and rootdir lines
PREFIX = "private gate"
REPORT_FILES = ("verdict.json", "summary.md", "junit.xml")


class UsageError(ValueError):
    """Input this gate cannot use; ``str()`` is one line with the fix (exit 4)."""


# --- the request --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteRequest:
    cluster: str
    service: str
    results: ResultsLocation
    report_dir: Path
    region: str | None = None
    task_definition: str | None = None  # None: the canary stack's, <service>-smoke-canary
    harness_args: tuple[str, ...] = ()  # passed on to the in-VPC `pytest smoke`
    run_timeout_s: float = DEFAULT_RUN_TIMEOUT_S
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit 2 and usage block: one line, exit 4 instead
        raise UsageError(message)


def _parser() -> _Parser:
    parser = _Parser(prog="ecs-verdict-remote", allow_abbrev=False,
                     description="Run `pytest smoke` as a one-off Fargate task in the service's VPC and return its "
                                 "verdict. Arguments it does not know are passed on to the in-VPC run.")
    parser.add_argument("--ecs-cluster", help="ECS cluster of the service [env ECS_CLUSTER]")
    parser.add_argument("--ecs-service", help="ECS service to verify [env ECS_SERVICE]")
    parser.add_argument("--aws-region", help="AWS region (default: the boto3 chain, AWS_REGION...)")
    parser.add_argument("--results-uri", metavar="s3://BUCKET/PREFIX",
                        help="where the in-VPC run uploads its reports, one folder per run [env SMOKE_RESULTS_URI]")
    parser.add_argument("--task-definition", metavar="family[:revision]|ARN",
                        help="the harness task definition (default: <service>-smoke-canary, the canary stack's) "
                             "[env SMOKE_TASK_DEFINITION]")
    parser.add_argument("--report-dir", help=f"where the reports are written here (default: {DEFAULT_REPORT_DIR}) "
                                             "[env SMOKE_REPORT_DIR]")
    parser.add_argument("--run-timeout", metavar="SECONDS",
                        help=f"how long the task may take, start to stop (default: {DEFAULT_RUN_TIMEOUT_S:g})")
    parser.add_argument("--poll-interval", metavar="SECONDS",
                        help=f"seconds between DescribeTasks calls (default: {DEFAULT_POLL_INTERVAL_S:g})")
    return parser


def parse_request(argv: Sequence[str], environ: Mapping[str, str]) -> RemoteRequest:
    """The command line (then the environment) as a request; ``UsageError`` on the first bad value."""
    known, rest = _parser().parse_known_args(list(argv))
    rest = [arg for arg in rest if arg != "--"]

    def given(value: str | None, env: str | None) -> str | None:
        if value is not None:
            return value
        return (environ.get(env, "").strip() or None) if env else None

    def parsed(flag: str, value: str | None, parse: Callable[[str], Any]) -> Any:
        try:
            return parse(value) if value is not None else None
        except ValueError as error:
            raise UsageError(f"{flag}: {error}") from None

    cluster = parsed("--ecs-cluster", given(known.ecs_cluster, "ECS_CLUSTER"), parse_name)
    service = parsed("--ecs-service", given(known.ecs_service, "ECS_SERVICE"), parse_name)
    if not (cluster and service):
        missing = "--ecs-service" if cluster else "--ecs-cluster"
        raise UsageError(f"{missing} is missing: pass --ecs-cluster and --ecs-service (or ECS_CLUSTER/ECS_SERVICE)")
    results = parsed("--results-uri", given(known.results_uri, "SMOKE_RESULTS_URI"), parse_results_uri)
    if results is None:
        raise UsageError("--results-uri is missing: give the S3 prefix the in-VPC run uploads its reports to, "
                         "e.g. s3://my-smoke-results/gate (docs/private-gate.md)")
    for flag in ("--report-dir", "--results-uri"):
        if any(arg == flag or arg.startswith(flag + "=") for arg in rest):
            raise UsageError(f"{flag} is this command's own (the in-VPC run's reports come back to --report-dir, "
                             f"its --results-uri is set per run): give it before the harness's arguments")
    if any(arg == "--target-url" or arg.startswith("--target-url=") for arg in rest):
        raise UsageError("--target-url skips discovery; the in-VPC run tests the service's tasks")
    report_dir = parsed("--report-dir", given(known.report_dir, "SMOKE_REPORT_DIR") or DEFAULT_REPORT_DIR,
                        parse_report_dir)
    return RemoteRequest(
        cluster=cluster, service=service, results=results, report_dir=report_dir,
        region=parsed("--aws-region", known.aws_region, parse_name),
        task_definition=parsed("--task-definition", given(known.task_definition, "SMOKE_TASK_DEFINITION"),
                               parse_name),
        harness_args=tuple(rest),
        run_timeout_s=parsed("--run-timeout", known.run_timeout, parse_seconds) or DEFAULT_RUN_TIMEOUT_S,
        poll_interval_s=parsed("--poll-interval", known.poll_interval, parse_seconds) or DEFAULT_POLL_INTERVAL_S,
    )


# --- the outcome ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteOutcome:
    """What the caller exits with and says: the in-VPC run's code and verdict, or why there is none."""

    exit_code: int
    line: str
    task_arn: str | None = None
    verdict: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class HarnessTask:
    """The task definition the in-VPC run uses: its ARN, its container and where that container logs."""

    arn: str
    container: str
    log_group: str | None
    log_stream_prefix: str | None

    def log_stream(self, task_id: str) -> str | None:
        if not (self.log_group and self.log_stream_prefix):
            return None
        return f"{self.log_stream_prefix}/{self.container}/{task_id}"


def harness_command(request: RemoteRequest, region: str, results: ResultsLocation) -> list[str]:
    """The container's command: the image's ENTRYPOINT (``pytest smoke``) takes it as arguments.

    The target, the region and ``--address private`` first, so the caller's own arguments win;
    ``--results-uri`` last: this run's own folder, never another's.
    """
    return ["--ecs-cluster", request.cluster, "--ecs-service", request.service, "--aws-region", region,
            "--address", "private", *request.harness_args, "--results-uri", results.uri]


class PrivateGate:
    """One gated run: find the network and the task definition, run, wait, fetch, decide."""

    def __init__(self, request: RemoteRequest, *, out: Any = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.request = request
        self.out = out or sys.stdout
        self._sleep = sleep
        self.clients = make_clients(request.region)

    def say(self, line: str) -> None:
        print(f"{PREFIX}: {line}", file=self.out, flush=True)

    # -- what the task needs --------------------------------------------------------------------------

    def network(self) -> dict[str, Any]:
        """The service's own awsvpc configuration: its subnets, security groups and public-IP setting."""
        request = self.request
        with aws_errors(self.clients, cluster=request.cluster, service=request.service):
            services = self.clients.ecs.describe_services(cluster=request.cluster,
                                                          services=[request.service]).get("services", [])
        if not services or services[0].get("status") not in (None, "ACTIVE"):
            raise UsageError(f"ECS service {request.service!r} not found in cluster {request.cluster!r}: check "
                             f"--ecs-service (aws ecs list-services --cluster {request.cluster})")
        awsvpc = (services[0].get("networkConfiguration") or {}).get("awsvpcConfiguration")
        if not awsvpc or not awsvpc.get("subnets"):
            raise UsageError(f"ECS service {request.service!r} has no awsvpc network configuration: the private gate "
                             "runs the harness in the service's subnets, so it needs a Fargate (awsvpc) service")
        return {"awsvpcConfiguration": {key: awsvpc[key] for key in ("subnets", "securityGroups", "assignPublicIp")
                                        if awsvpc.get(key)}}

    def harness_task(self) -> HarnessTask:
        request = self.request
        name = request.task_definition or f"{request.service}{CANARY_FAMILY_SUFFIX}"
        try:
            definition = self.clients.ecs.describe_task_definition(taskDefinition=name)["taskDefinition"]
        except ClientError as error:
            if error_code(error) != "ClientException":
                raise
            how = ("check --task-definition" if request.task_definition else
                   "create the canary stack (infra/canary.yaml) for this service or pass --task-definition")
            raise UsageError(f"no task definition {name!r} to run the harness with: {how}") from None
        containers = definition.get("containerDefinitions") or []
        if len(containers) != 1:
            raise UsageError(f"task definition {definition['taskDefinitionArn']} has {len(containers)} containers; the "
                             "harness's has one (the harness image): check --task-definition")
        [container] = containers
        log = container.get("logConfiguration") or {}
        options = log.get("options") or {} if log.get("logDriver") == "awslogs" else {}
        return HarnessTask(definition["taskDefinitionArn"], container["name"], options.get("awslogs-group"),
                           options.get("awslogs-stream-prefix"))

    def check_bucket(self) -> None:
        bucket = self.request.results.bucket
        try:
            self.clients.client("s3").head_bucket(Bucket=bucket)
        except ClientError as error:
            if error_code(error) in ("404", "NoSuchBucket", "NotFound"):
                raise UsageError(f"results bucket {bucket!r} does not exist: create it (docs/private-gate.md) or fix "
                                 "--results-uri") from None
            raise

    # -- the run --------------------------------------------------------------------------------------

    def run(self) -> RemoteOutcome:
        request = self.request
        with aws_errors(self.clients, cluster=request.cluster, service=request.service):
            network = self.network()
            harness = self.harness_task()
            self.check_bucket()
            run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
            results = request.results.child(run_id)
            command = harness_command(request, self.clients.region, results)
            self.say(f"starting {harness.arn.rsplit('/', 1)[-1]} in {len(network['awsvpcConfiguration']['subnets'])} "
                     f"subnet(s) of {request.cluster}/{request.service}: pytest smoke {' '.join(command)}")
            response = self.clients.ecs.run_task(
                cluster=request.cluster, taskDefinition=harness.arn, launchType="FARGATE", count=1,
                networkConfiguration=network, startedBy=STARTED_BY,
                overrides={"containerOverrides": [{"name": harness.container, "command": command}]})
            if response.get("failures") or not response.get("tasks"):
                failure = (response.get("failures") or [{}])[0]
                return RemoteOutcome(EXIT_NOT_VERIFIED, f"ECS did not start the harness task: "
                                     f"{failure.get('reason', 'no task')} {failure.get('detail', '')}".rstrip())
            task_arn = response["tasks"][0]["taskArn"]
            task = self.wait_until_stopped(task_arn)
            if task.get("lastStatus") != "STOPPED":
                return RemoteOutcome(EXIT_NOT_VERIFIED, f"the harness task {_short(task_arn)} was still "
                                     f"{task.get('lastStatus')} after {request.run_timeout_s:g} s (--run-timeout); it "
                                     "was left running and its verdict is unknown", task_arn)
            self._forget_last_run()
            try:
                download_reports(self.clients.client("s3"), results, request.report_dir)
            except ClientError as error:
                if error_code(error) != "NoSuchBucket":
                    raise
                self.say(f"the results bucket {results.bucket} is gone: no reports to fetch")
            return self.decide(task, harness, results)

    def wait_until_stopped(self, task_arn: str) -> dict[str, Any]:
        """DescribeTasks until the task is STOPPED or ``--run-timeout`` has passed; the last task seen."""
        seen: list[str] = []

        def describe() -> dict[str, Any]:
            tasks = self.clients.ecs.describe_tasks(cluster=self.request.cluster, tasks=[task_arn]).get("tasks", [])
            task = tasks[0] if tasks else {"lastStatus": "UNKNOWN"}
            status = str(task.get("lastStatus"))
            if not seen or seen[-1] != status:
                seen.append(status)
                self.say(f"task {_short(task_arn)} {status}")
            return task

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_delay(self.request.run_timeout_s),
            wait=tenacity.wait_fixed(self.request.poll_interval_s),
            retry=tenacity.retry_if_result(lambda task: task.get("lastStatus") != "STOPPED"),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else {},
            sleep=self._sleep, reraise=True)
        return retrying(describe)

    def decide(self, task: Mapping[str, Any], harness: HarnessTask, results: ResultsLocation) -> RemoteOutcome:
        task_arn = str(task["taskArn"])
        container = next((c for c in task.get("containers") or [] if c.get("name") == harness.container), {})
        exit_code = container.get("exitCode")
        stopped = f"{task.get('stopCode') or 'stopped'}: {task.get('stoppedReason') or 'no reason given'}"
        if exit_code is None:
            return RemoteOutcome(EXIT_NOT_VERIFIED, f"the harness task {_short(task_arn)} stopped before its container "
                                 f"ran ({stopped}); nothing was verified", task_arn)
        if exit_code == EXIT_USAGE:
            return RemoteOutcome(EXIT_USAGE, f"the in-VPC harness refused its arguments (exit 4): "
                                 f"{self.usage_error_line(harness, task_arn)}", task_arn)
        verdict = self._read_verdict()
        if verdict is None:
            return RemoteOutcome(EXIT_NOT_VERIFIED, f"the harness task {_short(task_arn)} exited {exit_code} and left "
                                 f"no verdict.json under {results.uri} ({stopped}); its log ends: "
                                 f"{self.log_tail(harness, task_arn)}", task_arn)
        name = str(verdict.get("verdict") or "error")
        if exit_code not in MIRRORED_EXIT_CODES or verdict.get("exit_code") != exit_code:
            return RemoteOutcome(EXIT_NOT_VERIFIED, f"the harness task {_short(task_arn)} exited {exit_code} "
                                 f"({stopped}) but its verdict says {name} (exit {verdict.get('exit_code')}): "
                                 "the run did not end as a run does; nothing is known", task_arn, verdict)
        return RemoteOutcome(exit_code, f"verdict {name} (exit {exit_code}) from task {_short(task_arn)} in the "
                             f"service's VPC", task_arn, verdict)

    def log_tail(self, harness: HarnessTask, task_arn: str, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the task's output (its awslogs stream), for a cause the verdict cannot give."""
        found = self._log_lines(harness, task_arn, lines)
        return " | ".join(found) if isinstance(found, list) and found else found or "(no output)"

    def usage_error_line(self, harness: HarnessTask, task_arn: str) -> str:
        """pytest's own ``error:`` line of a refused command line (its inifile and rootdir lines follow it)."""
        found = self._log_lines(harness, task_arn, USAGE_SEARCH_LINES)
        if not isinstance(found, list):
            return found
        errors = [line for line in found if "error" in line.lower()]
        return (errors or found or ["(no output)"])[-1]

    def _log_lines(self, harness: HarnessTask, task_arn: str, lines: int) -> list[str] | str:
        """The task's last ``lines`` non-empty output lines, or one line saying why they cannot be read."""
        stream = harness.log_stream(_short(task_arn, full=True))
        if stream is None:
            return "(the task definition sends its output to no awslogs group)"
        try:
            events = self.clients.logs.get_log_events(logGroupName=harness.log_group, logStreamName=stream,
                                                      limit=lines, startFromHead=False)["events"]
        except ClientError as error:
            return f"(its log {harness.log_group}/{stream} could not be read: {error_code(error)})"
        return [e["message"].strip() for e in events if e["message"].strip()]

    def _read_verdict(self) -> dict[str, Any] | None:
        try:
            verdict = json.loads((self.request.report_dir / "verdict.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return verdict if isinstance(verdict, dict) else None

    def _forget_last_run(self) -> None:
        # Only what this run's task wrote may be read as its verdict.
        self.request.report_dir.mkdir(parents=True, exist_ok=True)
        for name in REPORT_FILES:
            (self.request.report_dir / name).unlink(missing_ok=True)


def _short(task_arn: str, *, full: bool = False) -> str:
    task_id = task_arn.rsplit("/", 1)[-1]
    return task_id if full else task_id[:8]


def write_no_verdict_summary(report_dir: Path, outcome: RemoteOutcome) -> None:
    """A summary.md saying why there is no verdict, so the Action's job summary says it too."""
    if (report_dir / "verdict.json").exists():
        return
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "summary.md").write_text(
        f"## ⚠️ smoke gate (in the VPC): exit code {outcome.exit_code}, no verdict\n\n{outcome.line}\n",
        encoding="utf-8")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None, *, out: Any = None,
         sleep: Callable[[float], None] = time.sleep) -> int:
    out = out or sys.stdout
    environ = os.environ if environ is None else environ
    try:
        request = parse_request(sys.argv[1:] if argv is None else argv, environ)
        gate = PrivateGate(request, out=out, sleep=sleep)
        outcome = gate.run()
    except UsageError as error:
        print(f"ecs-verdict-remote: error: {error}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except CouldNotVerify as error:
        return _without_verdict(request, RemoteOutcome(EXIT_NOT_VERIFIED, f"could not verify: {error}"), out)
    except Exception as error:  # noqa: BLE001 - a bug here proves nothing about the release: one line, exit 6
        return _without_verdict(request, RemoteOutcome(EXIT_NOT_VERIFIED,
                                                       f"harness error: {type(error).__name__}: {error}"), out)
    if outcome.verdict is not None:
        for cause in outcome.verdict.get("causes") or []:
            gate.say(f"why [{cause.get('category')}]: {cause.get('summary')}")
        gate.say(f"{outcome.line}; reports in {request.report_dir}")
        return outcome.exit_code
    return _without_verdict(request, outcome, out)


def _without_verdict(request: RemoteRequest, outcome: RemoteOutcome, out: Any) -> int:
    write_no_verdict_summary(request.report_dir, outcome)
    print(f"{PREFIX}: {outcome.line}; summary in {request.report_dir / 'summary.md'}", file=out, flush=True)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
