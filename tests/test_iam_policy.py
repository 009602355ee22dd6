"""The task role's policy (infra/iam-policy.json) against the calls the harness really makes.

The calls are recorded, not guessed: `pytest smoke --canary` runs as a subprocess against the
local stage in four scenarios that reach discovery, waiting, the checks, diagnosis (logs, ECR)
and the metrics, with botocore's client-side monitoring on for that process only
(``AWS_CSM_ENABLED``): one UDP datagram per API call to a socket on 127.0.0.1 here. The stage's
own clients live in this process, without CSM, so only the harness's calls arrive.

Every recorded call must be allowed, and the policy may grant nothing that was never called
except the listed exceptions, each with its reason. The private-service gate's caller
(``python -m ecs_verdict.remote``) is recorded the same way, a run that passes and one whose
in-VPC harness refuses its arguments (its log is read): its calls beyond the read-only policy
are exactly what the gate policy (infra/iam-gate-policy.json) adds for it. "Allowed" is decided by a small matcher:
an Allow statement that names the action exactly (the policy uses no wildcards, no NotAction,
no Deny). Resource scoping is checked statement by statement, since CSM does not report ARNs.
"""

from __future__ import annotations

import json
import re
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from cfnlint.decode import decode_str

from stage import Stage, StageOptions
from stage.seed import CLUSTER, SERVICE, SMOKE_SECRET
from tests.conftest import TEST_START_PERIOD_SCALE
from tests.smoke_runs import smoke_command, smoke_env

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "infra" / "iam-policy.json"
# What a gate that acts on the service needs beside POLICY (--continue-deployment, --on-fail rollback);
# the canary's read-only task role does not get it.
GATE_POLICY = ROOT / "infra" / "iam-gate-policy.json"
ACTING_CALLS = {"ecs:ContinueServiceDeployment", "ecs:UpdateService"}
# What the private-service gate's caller needs beside POLICY (docs/private-gate.md), also in GATE_POLICY.
REMOTE_CALLS = {"ecs:RunTask", "iam:PassRole", "s3:ListBucket", "s3:GetObject", "logs:GetLogEvents"}
# The caller's calls POLICY already allows, on the resources the caller uses them on.
COVERED_BY_POLICY = {
    "ecs:DescribeServices": "the service's network: POLICY's statement on this service",
    "ecs:DescribeTaskDefinition": "the harness task definition: POLICY grants it on *",
    "ecs:DescribeTasks": "the harness task runs in the service's cluster: POLICY's task/${ClusterName}/*",
}
# Granted to the caller although no recorded run called it, each with its reason.
GATE_NEVER_RECORDED = {"iam:PassRole": "no API call of its own: ecs:RunTask checks it when it hands the task its roles"}
RESULTS_BUCKET = "civicforge-smoke-results"
TEMPLATE = ROOT / "infra" / "canary.yaml"
HARNESS_CODE = [ROOT / "conftest.py", *sorted((ROOT / "plugins").rglob("*.py")),
                *sorted((ROOT / "src" / "ecs_verdict").rglob("*.py"))]
CSM_CLIENT_ID = "smoke-harness-under-test"
RUN_TIMEOUT_S = 240
# CSM names a service by its botocore service id; IAM by its action prefix.
IAM_PREFIX = {
    "ECS": "ecs",
    "EC2": "ec2",
    "CloudWatch Logs": "logs",
    "ECR": "ecr",
    "Secrets Manager": "secretsmanager",
    "CloudWatch": "cloudwatch",  # its endpoint and signing name are "monitoring"; IAM says cloudwatch
    "Elastic Load Balancing v2": "elasticloadbalancing",  # boto3's elbv2
    "S3": "s3",
}
# API calls with no IAM action of their own, and the action that authorises them.
AUTHORISED_BY = {"s3:HeadBucket": "s3:ListBucket", "s3:ListObjectsV2": "s3:ListBucket"}
# Granted although no recorded run called it. Each needs a reason; none is needed today.
NEVER_RECORDED: dict[str, str] = {}
# "Resource": "*" only where IAM has nothing narrower; a condition narrows it where one exists.
RESOURCE_STAR: dict[str, str] = {
    "ecs:DescribeTaskDefinition": "no resource-level permissions",
    "ec2:DescribeNetworkInterfaces": "no resource-level permissions",
    "ecs:ListTasks": "narrowed by the ecs:cluster condition",
    "cloudwatch:PutMetricData": "no resource-level permissions; narrowed by the cloudwatch:namespace condition",
    "elasticloadbalancing:DescribeTargetGroups": "ELB's Describe actions have no resource-level permissions",
    "elasticloadbalancing:DescribeTargetHealth": "ELB's Describe actions have no resource-level permissions",
    "elasticloadbalancing:DescribeLoadBalancers": "ELB's Describe actions have no resource-level permissions",
    "elasticloadbalancing:DescribeListeners": "ELB's Describe actions have no resource-level permissions",
    "elasticloadbalancing:DescribeRules": "ELB's Describe actions have no resource-level permissions",
}
PSEUDO_PARAMETERS = {"AWS::Partition", "AWS::Region", "AWS::AccountId"}


@dataclass(frozen=True)
class Scenario:
    name: str
    faults: tuple[str, ...]
    args: tuple[str, ...]  # "{expected_digest}" is the digest the stage's deploy pushed
    exit_code: int
    reaches: str
    load_balancer: bool = False  # the stage's ALB in front of the service
    label: str = ""  # when one stage scenario is recorded twice

    @property
    def key(self) -> str:
        return self.label or (f"{self.name}+alb" if self.load_balancer else self.name)


SCENARIOS = [
    Scenario("healthy", (), ("--read-only", "--canary"), 0, "discovery, waiting, the read-only checks, metrics"),
    Scenario("one_bad_task", ("urlsafe",), ("--canary",), 1,
             "a full run whose invite check fails on one task: diagnosis reads its logs and ECR"),
    Scenario("restart_loop", (), ("--read-only", "--canary", "--stable-timeout", "120"), 1,
             "tasks that keep failing health checks: stopped tasks and their logs"),
    Scenario("stale_image", (), ("--read-only", "--canary", "--expect-image-digest", "{expected_digest}"), 1,
             "tasks on another digest than the one pushed"),
    Scenario("rolled_back", (), ("--read-only", "--canary"), 1,
             "a circuit-breaker rollback: the service's deployment record and its revision"),
    Scenario("healthy", (), ("--read-only", "--canary"), 0,
             "a service behind a load balancer: its target groups' settings and target health, the listener found "
             "from the target group and the read-only checks through it", load_balancer=True),
    Scenario("healthy", (), ("--read-only", "--results-uri", f"s3://{RESULTS_BUCKET}/runs/1/"), 0,
             "the in-VPC run of the private gate: its reports uploaded", label="healthy_results_uploaded"),
]


@dataclass
class Recording:
    exit_codes: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    calls: dict[str, set[str]] = field(default_factory=dict)  # IAM action -> scenarios that called it
    client_ids: set[str] = field(default_factory=set)


def _run_recording_calls(command: list[str], env: dict[str, str], output: Path) -> tuple[int, list[dict[str, Any]]]:
    """Run ``command`` with CSM aimed at a UDP socket here; its exit code and every datagram."""
    datagrams: list[dict[str, Any]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener, \
            selectors.DefaultSelector() as selector, open(output, "w", encoding="utf-8") as out:
        listener.bind(("127.0.0.1", 0))
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ)
        csm = {"AWS_CSM_ENABLED": "true", "AWS_CSM_HOST": "127.0.0.1",
               "AWS_CSM_PORT": str(listener.getsockname()[1]), "AWS_CSM_CLIENT_ID": CSM_CLIENT_ID}
        process = subprocess.Popen(command, cwd=ROOT, env={**env, **csm}, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        try:
            # Read while it runs (the socket buffer is finite), then what it sent before exiting.
            while process.poll() is None:
                assert time.monotonic() < deadline, f"pytest smoke still running after {RUN_TIMEOUT_S} s"
                if selector.select(timeout=0.2):
                    datagrams += _drain(listener)
            datagrams += _drain(listener)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return process.returncode, datagrams


def _drain(listener: socket.socket) -> list[dict[str, Any]]:
    received = []
    while True:
        try:
            received.append(json.loads(listener.recv(65535)))
        except BlockingIOError:
            return received


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    found = Recording()
    for scenario in SCENARIOS:
        stage = Stage(StageOptions(scenario=scenario.name, faults=scenario.faults,
                                   start_period_scale=TEST_START_PERIOD_SCALE, load_balancer=scenario.load_balancer))
        stage.start()
        try:
            folder = tmp_path_factory.mktemp(scenario.key)
            stage.client("s3").create_bucket(Bucket=RESULTS_BUCKET)
            args = [a.replace("{expected_digest}", stage.expected_image_digest) for a in scenario.args]
            code, datagrams = _run_recording_calls(smoke_command(folder / "reports", *args), smoke_env(stage.env),
                                                   folder / "output.txt")
        finally:
            stage.stop()
        _add_calls(found, scenario.key, code, (folder / "output.txt").read_text(encoding="utf-8"), datagrams)
    yield found


def _add_calls(found: Recording, key: str, code: int, output: str, datagrams: list[dict[str, Any]]) -> None:
    found.exit_codes[key] = code
    found.outputs[key] = output
    for datagram in datagrams:
        if datagram.get("Type") != "ApiCall":  # one ApiCall per call; ApiCallAttempt per try
            continue
        found.client_ids.add(datagram.get("ClientId", ""))
        prefix = IAM_PREFIX.get(datagram["Service"], f"<no IAM prefix for {datagram['Service']}>")
        action = f"{prefix}:{datagram['Api']}"
        found.calls.setdefault(AUTHORISED_BY.get(action, action), set()).add(key)


# The private gate's caller: (label, the in-VPC run's arguments, the caller's exit code).
CALLER_RUNS = [
    ("passes", ("--read-only", "--smoke-secret", SMOKE_SECRET), 0),
    ("refused_arguments", ("--no-such-option",), 4),  # the in-VPC pytest exits 4: the caller quotes its log
]


@pytest.fixture(scope="module")
def caller_recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    found = Recording()
    stage = Stage(StageOptions(scenario="healthy", start_period_scale=TEST_START_PERIOD_SCALE))
    stage.start()
    try:
        stage.install_canary()
        stage.client("s3").create_bucket(Bucket=RESULTS_BUCKET)
        for label, harness_args, _ in CALLER_RUNS:
            folder = tmp_path_factory.mktemp(label)
            command = [sys.executable, "-m", "ecs_verdict.remote", "--ecs-cluster", CLUSTER, "--ecs-service", SERVICE,
                       "--results-uri", f"s3://{RESULTS_BUCKET}/gate", "--report-dir", str(folder / "reports"),
                       "--poll-interval", "0.2", "--", *harness_args]
            code, datagrams = _run_recording_calls(command, smoke_env(stage.env), folder / "output.txt")
            played = [(run.task_arn.rsplit("/", 1)[-1][:8], run.run.exit_code if run.run else None)
                      for run in stage.harness_tasks.runs]  # type: ignore[union-attr]
            output = (folder / "output.txt").read_text(encoding="utf-8") + f"\n(tasks the stage played: {played})"
            _add_calls(found, label, code, output, datagrams)
    finally:
        stage.stop()
    yield found


# -- the matcher ------------------------------------------------------------------------------------


def _policy() -> dict[str, Any]:
    return json.loads(POLICY.read_text(encoding="utf-8"))


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def allows(policy: dict[str, Any], action: str) -> bool:
    """Whether an Allow statement names ``action`` (IAM compares actions case-insensitively)."""
    return any(statement["Effect"] == "Allow" and action.lower() in {a.lower() for a in _as_list(statement["Action"])}
               for statement in policy["Statement"])


def granted_actions(policy: dict[str, Any]) -> set[str]:
    return {a for s in policy["Statement"] if s["Effect"] == "Allow" for a in _as_list(s["Action"])}


def statements_granting(policy: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in policy["Statement"] if action in _as_list(s["Action"])]


def test_the_matcher_is_exact() -> None:
    policy = {"Statement": [{"Effect": "Allow", "Action": ["ecs:DescribeServices"], "Resource": "*"},
                            {"Effect": "Deny", "Action": "ecs:ListTasks", "Resource": "*"}]}
    assert allows(policy, "ecs:DescribeServices") and allows(policy, "ECS:describeservices")
    assert not allows(policy, "ecs:DescribeService") and not allows(policy, "ecs:ListTasks")
    assert granted_actions(policy) == {"ecs:DescribeServices"}


def test_the_policy_stays_within_what_the_matcher_understands() -> None:
    for statement in _policy()["Statement"]:
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, statement
        assert not [a for a in _as_list(statement["Action"]) if "*" in a or "?" in a], statement


# -- recorded calls against the policy ----------------------------------------------------------------


def test_each_recorded_run_ended_as_its_scenario_does(recording: Recording) -> None:
    for scenario in SCENARIOS:
        assert recording.exit_codes[scenario.key] == scenario.exit_code, recording.outputs[scenario.key][-3000:]
    assert recording.client_ids == {CSM_CLIENT_ID}  # every datagram came from the harness process


def test_every_call_the_harness_made_is_allowed(recording: Recording) -> None:
    assert recording.calls, "no AWS call recorded"
    policy = _policy()
    denied = {action: sorted(scenarios) for action, scenarios in recording.calls.items() if not allows(policy, action)}
    assert denied == {}, f"recorded but not allowed by {POLICY.name}: {denied}"


def test_the_policy_grants_nothing_the_harness_never_called(recording: Recording) -> None:
    unused = granted_actions(_policy()) - set(recording.calls)
    assert unused == set(NEVER_RECORDED), f"granted, never called, no reason listed: {unused - set(NEVER_RECORDED)}"
    assert all(reason.strip() for reason in NEVER_RECORDED.values())
    assert not set(NEVER_RECORDED) & set(recording.calls), "an exception the runs did call: drop it from the list"


def _operations_named_in(paths: list[Path]) -> set[str]:
    """IAM actions for the boto3 client methods the code calls (``ecs.describe_services(``...)."""
    session = botocore.session.get_session()
    found = set()
    for client_name in ("ecs", "ec2", "logs", "ecr", "secretsmanager", "cloudwatch", "elbv2"):
        model = session.get_service_model(client_name)
        by_method = {botocore.xform_name(operation): operation for operation in model.operation_names}
        prefix = IAM_PREFIX[model.service_id]
        for path in paths:
            text = path.read_text(encoding="utf-8")
            methods = re.findall(rf"\b{client_name}\s*\.\s*(\w+)\s*\(", text)
            methods += re.findall(rf"\b{client_name}\s*\.\s*get_paginator\(\s*[\"'](\w+)[\"']", text)
            found |= {f"{prefix}:{by_method[m]}" for m in methods if m in by_method}
    return found


def test_every_call_the_code_names_is_granted() -> None:
    """A second net for calls on paths no scenario reached: the client methods the code names."""
    named = _operations_named_in(HARNESS_CODE)
    assert "ecs:DescribeServices" in named and "cloudwatch:PutMetricData" in named  # the scan finds calls
    # The acting gate's and the private gate's RunTask: granted by GATE_POLICY only.
    assert named - granted_actions(_policy()) == ACTING_CALLS | {"ecs:RunTask"}


def _gate_policy() -> dict[str, Any]:
    return json.loads(GATE_POLICY.read_text(encoding="utf-8"))


def test_the_acting_gate_policy_grants_the_two_calls_that_change_the_service_and_the_private_gates() -> None:
    gate = _gate_policy()
    assert granted_actions(gate) == ACTING_CALLS | REMOTE_CALLS
    assert not ACTING_CALLS & granted_actions(_policy())  # the read-only role cannot continue or roll back
    [cont] = statements_granting(gate, "ecs:ContinueServiceDeployment")
    assert cont["Resource"].endswith(":service-deployment/${ClusterName}/${ServiceName}/*")
    [update] = statements_granting(gate, "ecs:UpdateService")
    assert update["Resource"].endswith(":service/${ClusterName}/${ServiceName}")


# -- the private gate's caller ------------------------------------------------------------------------


def test_each_recorded_caller_run_ended_as_it_does(caller_recording: Recording) -> None:
    for label, _, exit_code in CALLER_RUNS:
        assert caller_recording.exit_codes[label] == exit_code, caller_recording.outputs[label][-3000:]
    assert caller_recording.client_ids == {CSM_CLIENT_ID}  # the caller's calls only, not the in-VPC run's


def test_every_call_the_private_gate_caller_made_is_allowed(caller_recording: Recording) -> None:
    both = {"Statement": [*_policy()["Statement"], *_gate_policy()["Statement"]]}
    denied = {action: sorted(runs) for action, runs in caller_recording.calls.items() if not allows(both, action)}
    assert denied == {}, f"recorded but allowed by neither {POLICY.name} nor {GATE_POLICY.name}: {denied}"


def test_the_gate_policy_adds_exactly_what_the_caller_called_beyond_the_read_only_policy(
    caller_recording: Recording,
) -> None:
    called = set(caller_recording.calls)
    assert set(COVERED_BY_POLICY) <= called and all(allows(_policy(), action) for action in COVERED_BY_POLICY)
    assert REMOTE_CALLS == (called - set(COVERED_BY_POLICY)) | set(GATE_NEVER_RECORDED)
    assert not set(GATE_NEVER_RECORDED) & called
    assert caller_recording.calls["logs:GetLogEvents"] == {"refused_arguments"}  # only a run without a verdict


def test_the_private_gates_statements_name_the_harness_task_its_roles_and_its_bucket() -> None:
    gate = _gate_policy()
    [run] = statements_granting(gate, "ecs:RunTask")
    assert run["Resource"].endswith(":task-definition/${ServiceName}-smoke-canary:*")
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": "arn:${AWS::Partition}:ecs:${AWS::Region}:"
                                                             "${AWS::AccountId}:cluster/${ClusterName}"}}
    [pass_role] = statements_granting(gate, "iam:PassRole")
    assert pass_role["Resource"] == ["${HarnessTaskRoleArn}", "${HarnessExecutionRoleArn}"]  # the stack's outputs
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    [listing] = statements_granting(gate, "s3:ListBucket")
    [reading] = statements_granting(gate, "s3:GetObject")
    assert (listing["Resource"], reading["Resource"]) == ("arn:${AWS::Partition}:s3:::${ResultsBucket}",
                                                          "arn:${AWS::Partition}:s3:::${ResultsBucket}/*")
    [log] = statements_granting(gate, "logs:GetLogEvents")
    assert log["Resource"].endswith(":log-group:/ecs/${ServiceName}-smoke-canary:*")  # the stack's HarnessLogGroup
    outputs = _template()["Outputs"]
    assert outputs["HarnessTaskRoleArn"]["Value"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    assert outputs["HarnessExecutionRoleArn"]["Value"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}


# -- scoping ------------------------------------------------------------------------------------------


def test_metrics_may_go_to_the_canary_namespace_only() -> None:
    [statement] = statements_granting(_policy(), "cloudwatch:PutMetricData")
    assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "${MetricsNamespace}"}}


def test_only_the_smoke_secret_may_be_read() -> None:
    [statement] = statements_granting(_policy(), "secretsmanager:GetSecretValue")
    assert statement["Resource"] == "${SmokeSecretArn}" and "Condition" not in statement


def test_every_resource_wildcard_has_its_reason() -> None:
    starred = {a for s in _policy()["Statement"] if "*" in _as_list(s["Resource"]) for a in _as_list(s["Action"])}
    assert starred == set(RESOURCE_STAR)
    for action in ("ecs:ListTasks", "cloudwatch:PutMetricData"):
        [statement] = statements_granting(_policy(), action)
        assert statement.get("Condition"), f"{action} on * without the condition that narrows it"
    # Other resources name this service's cluster, service, log group or repository, never a wildcard account.
    for statement in _policy()["Statement"]:
        for resource in _as_list(statement["Resource"]):
            assert resource == "*" or resource == "${SmokeSecretArn}" or (
                resource.startswith("arn:${AWS::Partition}:") and "${AWS::AccountId}" in resource) or (
                resource == "arn:${AWS::Partition}:s3:::${ResultsBucket}/*"), resource  # S3 ARNs name no account


# -- the stack grants the same ---------------------------------------------------------------------


def _template() -> dict[str, Any]:
    template, problems = decode_str(TEMPLATE.read_text(encoding="utf-8"))
    assert not problems, problems
    return json.loads(json.dumps(template))


def _unwrap_sub(node: Any) -> Any:
    """The template's ``!Sub "..."`` strings as the plain ``${...}`` strings of iam-policy.json."""
    if isinstance(node, dict):
        if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            return node["Fn::Sub"]
        return {key: _unwrap_sub(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_unwrap_sub(item) for item in node]
    return node


def test_the_stacks_task_role_grants_exactly_this_policy() -> None:
    [inline] = _template()["Resources"]["TaskRole"]["Properties"]["Policies"]
    stack_policy = _unwrap_sub(inline["PolicyDocument"])
    assert granted_actions(stack_policy) == granted_actions(_policy())
    assert stack_policy == _policy()  # the same statements, resources and conditions


def test_every_placeholder_is_a_stack_parameter() -> None:
    placeholders = set(re.findall(r"\$\{([\w:.]+)\}", POLICY.read_text(encoding="utf-8")))
    template = _template()
    assert placeholders - PSEUDO_PARAMETERS <= {*template["Parameters"], *template["Resources"]}, placeholders
    assert {"SmokeSecretArn", "MetricsNamespace", "ClusterName", "ServiceName"} <= placeholders


def test_the_task_definition_uses_the_task_role() -> None:
    properties = _template()["Resources"]["HarnessTaskDefinition"]["Properties"]
    assert properties["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
