"""The canary stack (infra/canary.yaml): linted, created in moto, and its command run for real.

cfn-lint checks the template against CloudFormation's schemas (and is shown to catch a broken
one). moto creates the stack in-process: every resource type it models must be there, and is
described through its own API. moto skips the types it does not model (the schedule and the
alarm, listed in docs/canary.md); their properties are checked on the template, with a small evaluator
for the intrinsic functions the template uses. Last, the command the task definition gives
the image is run against the local stage, and the alarm's metric series must have its data point.
"""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from dockerfile_parse import DockerfileParser
from moto import mock_aws

from ecs_verdict.metrics import SUCCESS_METRIC
from stage import canary
from stage.canary import load_template
from stage.seed import CLUSTER, REGION, SERVICE, SMOKE_SECRET
from tests.conftest import StageFactory

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "canary.yaml"
POLICY = ROOT / "infra" / "iam-policy.json"
CANARY_DOC = ROOT / "docs" / "canary.md"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"
ACCOUNT = "123456789012"  # moto's default account
STACK_REGION = "eu-west-1"  # not the stage's: the stack must take its region from AWS::Region
STACK = "civicforge-board-smoke-canary"
DEFAULT_NAMESPACE = "CivicForge/Smoke"  # the harness's default --metrics-namespace (docs/reference.md)
PARAMETERS = {
    "ClusterName": "civicforge-cluster",
    "ServiceName": "civicforge-board-service",
    "Subnets": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
    "SecurityGroups": "sg-0123456789abcdef0",
    "ImageUri": f"{ACCOUNT}.dkr.ecr.{STACK_REGION}.amazonaws.com/civicforge-smoke@sha256:{'ab' * 32}",
    "ImageRepositoryArn": f"arn:aws:ecr:{STACK_REGION}:{ACCOUNT}:repository/civicforge-smoke",
    "SmokeSecretArn": f"arn:aws:secretsmanager:{STACK_REGION}:{ACCOUNT}:secret:civicforge/smoke-accounts-AbCdEf",
    "Environment": "staging",
    "ServiceLogGroupName": "/ecs/civicforge-board-mvp",
    "ServiceImageRepositoryName": "civicforge-board-mvp",
}
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": STACK_REGION, "AWS::AccountId": ACCOUNT}
# Resource types moto 5.2's CloudFormation does not model: create_stack skips them (a warning,
# and a resource summary with no logical id). docs/canary.md lists them; the tests below check what
# moto drops on the template instead.
UNMODELLED = {"AWS::Scheduler::Schedule", "AWS::CloudWatch::Alarm"}
RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours)\)")


def _template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def _resources(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in _template()["Resources"].items() if r["Type"] == kind}


def _one(kind: str) -> dict[str, Any]:
    [resource] = _resources(kind).values()
    return resource["Properties"]


def _container() -> dict[str, Any]:
    [container] = _one("AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    return container


# -- a small evaluator for the intrinsic functions the template uses ------------------------------


def stack_values(given: dict[str, str], pseudo: dict[str, str], resources: dict[str, str] | None = None
                 ) -> dict[str, Any]:
    """Ref targets of this template: parameters (defaults applied, lists split), pseudo parameters, resources."""
    return canary.stack_values(_template(), given, pseudo, resources)


def evaluate(node: Any, values: dict[str, Any]) -> Any:
    """The template's intrinsic functions, evaluated as the stage does (stage/canary.py)."""
    return canary.evaluate(node, values, _template().get("Conditions", {}))


def _period_of(expression: str) -> int:
    match = RATE.fullmatch(expression)
    assert match, expression
    return int(match[1]) * (3600 if match[2].startswith("hour") else 60)


# -- cfn-lint ------------------------------------------------------------------------------------


def _cfn_lint(path: Path) -> tuple[int, list[dict[str, Any]]]:
    # Informational checks too, in two regions: a stack per region must lint in any of them.
    done = subprocess.run([str(CFN_LINT), str(path), "--format", "json", "--include-checks", "I",
                           "--regions", "us-east-1", "eu-west-1"],
                          capture_output=True, text=True, check=False, timeout=120)
    return done.returncode, json.loads(done.stdout or "[]")


def test_cfn_lint_finds_nothing_in_the_template() -> None:
    code, findings = _cfn_lint(TEMPLATE)
    assert [(f["Rule"]["Id"], f["Message"]) for f in findings] == [] and code == 0
    assert "cfn-lint: disable" not in TEMPLATE.read_text(encoding="utf-8")  # nothing silenced
    assert "Metadata" not in _template()


def test_cfn_lint_fails_a_broken_template(tmp_path: Path) -> None:
    broken = TEMPLATE.read_text(encoding="utf-8")
    for good, bad in [("Statistic: Minimum", "Statistic: Lowest"),
                      ("TaskRoleArn: !GetAtt TaskRole.Arn", "TaskRoleArn: !GetAtt NoSuchRole.Arn")]:
        assert good in broken
        broken = broken.replace(good, bad)
    path = tmp_path / "broken.yaml"
    path.write_text(broken, encoding="utf-8")
    code, findings = _cfn_lint(path)
    assert code != 0
    errors = {f["Rule"]["Id"] for f in findings if f["Level"] == "Error"}
    assert {"E3030", "E1010"} <= errors, findings  # a value not allowed; GetAtt of no resource


# -- the stack in moto -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedStack:
    summaries: list[dict[str, Any]]
    outputs: dict[str, str]
    physical: dict[str, str]  # logical id -> physical id, for what moto created

    def client(self, name: str) -> Any:
        return boto3.client(name, region_name=STACK_REGION)


@pytest.fixture
def canary_stack() -> Iterator[CreatedStack]:
    with mock_aws(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moto warns once per resource type it skips
        cloudformation = boto3.client("cloudformation", region_name=STACK_REGION)
        cloudformation.create_stack(
            StackName=STACK, TemplateBody=TEMPLATE.read_text(encoding="utf-8"), Capabilities=["CAPABILITY_IAM"],
            Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in PARAMETERS.items()])
        [stack] = cloudformation.describe_stacks(StackName=STACK)["Stacks"]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        summaries = cloudformation.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
        yield CreatedStack(
            summaries=summaries,
            outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
            physical={s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries if s.get("LogicalResourceId")},
        )


def test_the_stack_creates_every_resource_type_moto_models(canary_stack: CreatedStack) -> None:
    resources = _template()["Resources"]
    created = {s["LogicalResourceId"]: s for s in canary_stack.summaries if s.get("LogicalResourceId")}
    assert {name: s["ResourceType"] for name, s in created.items()} == {
        name: r["Type"] for name, r in resources.items() if r["Type"] not in UNMODELLED}
    assert {s["ResourceStatus"] for s in canary_stack.summaries} == {"CREATE_COMPLETE"}
    # What moto skipped, found by running it: exactly the types docs/canary.md lists as not modelled.
    skipped = [s for s in canary_stack.summaries if not s.get("LogicalResourceId")]
    assert len(skipped) == sum(r["Type"] in UNMODELLED for r in resources.values())
    assert {r["Type"] for r in resources.values()} - {s["ResourceType"] for s in created.values()} == UNMODELLED


def _expected_command(values: dict[str, Any]) -> list[str]:
    return ["--read-only", "--canary",
            "--ecs-cluster", values["ClusterName"], "--ecs-service", values["ServiceName"],
            "--environment", values["Environment"], "--metrics-namespace", values["MetricsNamespace"],
            "--smoke-secret", values["SmokeSecretArn"], "--address", values["TargetAddress"],
            "--aws-region", values["AWS::Region"]]


def test_the_task_definition_holds_the_canary_command_and_a_writable_reports_volume(
    canary_stack: CreatedStack,
) -> None:
    arn = canary_stack.physical["HarnessTaskDefinition"]
    definition = canary_stack.client("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]
    [container] = definition["containerDefinitions"]
    values = stack_values(PARAMETERS, PSEUDO)
    assert container["command"] == _expected_command(values)
    assert container["image"] == PARAMETERS["ImageUri"]
    assert container["readonlyRootFilesystem"] is True
    assert container["mountPoints"] == [{"sourceVolume": "reports", "containerPath": "/reports", "readOnly": False}]
    assert definition["volumes"] == [{"name": "reports"}]  # a bind mount on the task's ephemeral storage
    assert container["logConfiguration"] == {"logDriver": "awslogs", "options": {
        "awslogs-group": canary_stack.physical["HarnessLogGroup"], "awslogs-region": STACK_REGION,
        "awslogs-stream-prefix": "smoke"}}


def test_the_task_definition_is_fargate_with_its_two_roles() -> None:
    # moto's CloudFormation drops these properties (docs/canary.md): checked on the template.
    properties = _one("AWS::ECS::TaskDefinition")
    assert properties["RequiresCompatibilities"] == ["FARGATE"] and properties["NetworkMode"] == "awsvpc"
    assert properties["ExecutionRoleArn"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}
    assert properties["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    assert properties["RuntimePlatform"]["CpuArchitecture"] == "X86_64"  # make image builds linux/amd64


def test_the_reports_mount_is_the_images_report_folder() -> None:
    image = DockerfileParser(fileobj=io.BytesIO((ROOT / "Dockerfile").read_bytes()))
    [volume] = [json.loads(i["value"]) for i in image.structure if i["instruction"] == "VOLUME"]
    [mount] = _container()["MountPoints"]
    assert volume == [mount["ContainerPath"]] == [image.envs["SMOKE_REPORT_DIR"]]


def test_the_results_bucket_is_private_and_keeps_reports_as_long_as_the_log(canary_stack: CreatedStack) -> None:
    """The private gate's reports (docs/private-gate.md): this stack's bucket, private, expiring with the log."""
    bucket = canary_stack.physical["ResultsBucket"]
    s3 = canary_stack.client("s3")
    s3.head_bucket(Bucket=bucket)  # moto made it
    assert canary_stack.outputs["ResultsUri"] == f"s3://{bucket}/"
    # moto's CloudFormation drops these properties: checked on the template.
    properties = _one("AWS::S3::Bucket")
    assert properties["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True)
    [rule] = properties["LifecycleConfiguration"]["Rules"]
    assert (rule["Status"], rule["ExpirationInDays"]) == ("Enabled", 30)
    assert _template()["Resources"]["ResultsBucket"]["DeletionPolicy"] == "Retain"  # never deleted with reports in it


def test_the_log_group_keeps_the_canary_output_for_30_days(canary_stack: CreatedStack) -> None:
    name = canary_stack.physical["HarnessLogGroup"]
    [group] = canary_stack.client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    assert (group["logGroupName"], group["retentionInDays"]) == (f"/ecs/{PARAMETERS['ServiceName']}-smoke-canary", 30)


def _role(stack: CreatedStack, logical_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The role moto created and its one inline policy document."""
    iam = stack.client("iam")
    role = iam.get_role(RoleName=stack.physical[logical_id])["Role"]
    [name] = iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
    document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=name)["PolicyDocument"]
    # moto stores a CloudFormation role's inline policy as the repr of a dict, not as JSON.
    return role, ast.literal_eval(document) if isinstance(document, str) else document


@pytest.mark.parametrize(("logical_id", "service"), [
    ("TaskRole", "ecs-tasks.amazonaws.com"),
    ("ExecutionRole", "ecs-tasks.amazonaws.com"),
    ("SchedulerRole", "scheduler.amazonaws.com"),
])
def test_each_role_trusts_only_its_service_in_this_account(
    canary_stack: CreatedStack, logical_id: str, service: str
) -> None:
    role, _ = _role(canary_stack, logical_id)
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert (trust["Effect"], trust["Principal"], trust["Action"]) == ("Allow", {"Service": service}, "sts:AssumeRole")
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}


def render_policy(values: dict[str, Any]) -> dict[str, Any]:
    """infra/iam-policy.json with its ${...} placeholders filled in."""
    text = POLICY.read_text(encoding="utf-8")
    return json.loads(re.sub(r"\$\{([\w:.]+)\}", lambda m: str(values[m.group(1)]), text))


def test_the_task_role_policy_is_iam_policy_json_with_the_parameters_filled_in(canary_stack: CreatedStack) -> None:
    role, document = _role(canary_stack, "TaskRole")
    bucket = {"ResultsBucket": canary_stack.physical["ResultsBucket"]}  # the private gate's, made by the stack
    assert document == render_policy(stack_values(PARAMETERS, PSEUDO, bucket))
    # moto validates a policy put through the API (CloudFormation's path skips that): it must pass.
    canary_stack.client("iam").put_role_policy(RoleName=role["RoleName"], PolicyName="validated",
                                               PolicyDocument=json.dumps(document))


def test_the_scheduler_may_run_only_the_canary_task_and_pass_only_its_roles(canary_stack: CreatedStack) -> None:
    _, document = _role(canary_stack, "SchedulerRole")
    run, pass_role = document["Statement"]
    cluster = f"arn:aws:ecs:{STACK_REGION}:{ACCOUNT}:cluster/{PARAMETERS['ClusterName']}"
    assert (run["Action"], run["Resource"]) == (["ecs:RunTask"], canary_stack.physical["HarnessTaskDefinition"])
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": cluster}}
    roles = [_role(canary_stack, name)[0]["Arn"] for name in ("TaskRole", "ExecutionRole")]
    assert (pass_role["Action"], pass_role["Resource"]) == (["iam:PassRole"], roles)
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_the_execution_role_pulls_only_the_harness_image_and_writes_only_its_log(canary_stack: CreatedStack) -> None:
    _, document = _role(canary_stack, "ExecutionRole")
    granted = {action: statement["Resource"] for statement in document["Statement"] for action in statement["Action"]}
    group = canary_stack.physical["HarnessLogGroup"]
    assert granted == {
        "ecr:GetAuthorizationToken": "*",  # no resource-level permissions for the registry login
        "ecr:BatchGetImage": PARAMETERS["ImageRepositoryArn"],
        "ecr:GetDownloadUrlForLayer": PARAMETERS["ImageRepositoryArn"],
        "logs:CreateLogStream": f"arn:aws:logs:{STACK_REGION}:{ACCOUNT}:log-group:{group}:*",
        "logs:PutLogEvents": f"arn:aws:logs:{STACK_REGION}:{ACCOUNT}:log-group:{group}:*",
    }


# -- what moto does not model, on the template ----------------------------------------------------


def test_the_schedule_runs_the_canary_task_on_fargate_in_the_given_network() -> None:
    values = stack_values(PARAMETERS, PSEUDO, {"HarnessTaskDefinition": "<task definition ARN>",
                                               "SchedulerRole.Arn": "<scheduler role ARN>"})
    schedule = evaluate(_one("AWS::Scheduler::Schedule"), values)
    assert _template()["Parameters"]["ScheduleExpression"]["Default"] == "rate(5 minutes)"
    assert schedule["ScheduleExpression"] == "rate(5 minutes)" and schedule["State"] == "ENABLED"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}  # the string: YAML's bare OFF is false
    target = schedule["Target"]
    assert target["Arn"] == f"arn:aws:ecs:{STACK_REGION}:{ACCOUNT}:cluster/{PARAMETERS['ClusterName']}"
    assert target["RoleArn"] == "<scheduler role ARN>"
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert 60 <= target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= _period_of(schedule["ScheduleExpression"])
    ecs = target["EcsParameters"]
    assert (ecs["TaskDefinitionArn"], ecs["LaunchType"], ecs["TaskCount"]) == ("<task definition ARN>", "FARGATE", 1)
    assert ecs["NetworkConfiguration"] == {"AwsvpcConfiguration": {
        "Subnets": PARAMETERS["Subnets"].split(","), "SecurityGroups": [PARAMETERS["SecurityGroups"]],
        "AssignPublicIp": "DISABLED"}}
    assert "Overrides" not in ecs  # Scheduler has none: the arguments are the task definition's command


def test_the_alarm_watches_the_series_the_canary_publishes_and_treats_no_data_as_failing() -> None:
    alarm = _one("AWS::CloudWatch::Alarm")
    command = _container()["Command"]

    def argument(flag: str) -> Any:
        return command[command.index(flag) + 1]

    assert alarm["MetricName"] == SUCCESS_METRIC
    assert alarm["Namespace"] == argument("--metrics-namespace") == {"Ref": "MetricsNamespace"}
    assert _template()["Parameters"]["MetricsNamespace"]["Default"] == DEFAULT_NAMESPACE
    assert alarm["Dimensions"] == [{"Name": "Service", "Value": argument("--ecs-service")},
                                   {"Name": "Environment", "Value": argument("--environment")}]
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "Minimum", "LessThanThreshold", 1)
    assert alarm["TreatMissingData"] == "breaching"
    assert alarm["EvaluationPeriods"] == {"Ref": "AlarmEvaluationPeriods"}


@pytest.mark.parametrize("schedule", _template()["Parameters"]["ScheduleExpression"]["AllowedValues"])
def test_the_alarm_period_is_the_schedule_period(schedule: str) -> None:
    period = evaluate(_one("AWS::CloudWatch::Alarm")["Period"],
                      stack_values({**PARAMETERS, "ScheduleExpression": schedule}, PSEUDO))
    assert period == _period_of(schedule)


@pytest.mark.parametrize(("given", "listed"), [
    ({}, "<CanaryAlarm>"),
    ({"DeploymentAlarmNames": "board-5xx,board-p99"}, "<CanaryAlarm>,board-5xx,board-p99"),
])
def test_the_outputs_name_the_alarm_for_the_services_deployment_alarms(given: dict[str, str], listed: str) -> None:
    outputs = _template()["Outputs"]
    values = stack_values({**PARAMETERS, **given}, PSEUDO)
    assert evaluate(outputs["CanaryAlarmName"]["Value"], values) == "<CanaryAlarm>"
    assert "deploymentConfiguration.alarms" in outputs["CanaryAlarmName"]["Description"]
    assert "rollback=true" in outputs["CanaryAlarmName"]["Description"]
    assert evaluate(outputs["DeploymentAlarmNames"]["Value"], values) == listed


def test_the_canary_doc_lists_every_resource_type_moto_does_not_model() -> None:
    text = CANARY_DOC.read_text(encoding="utf-8")
    section = text.split("## What moto does not model", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^- `(AWS::\w+::\w+)`: not modelled", section, re.MULTILINE)
    assert set(listed) == UNMODELLED and len(listed) == len(UNMODELLED)


# -- the scheduled command, run against the stage ---------------------------------------------------


def test_the_scheduled_command_passes_against_the_stage_and_feeds_the_alarm(
    stage_factory: StageFactory, tmp_path: Path
) -> None:
    stage = stage_factory("healthy")
    secret_arn = stage.client("secretsmanager").describe_secret(SecretId=SMOKE_SECRET)["ARN"]
    given = {**PARAMETERS, "ClusterName": CLUSTER, "ServiceName": SERVICE, "SmokeSecretArn": secret_arn}
    values = stack_values(given, {**PSEUDO, "AWS::Region": REGION})
    resources = stage.install_canary(**given)
    definition = stage.client("ecs").describe_task_definition(taskDefinition=resources.task_definition_arn)
    [container] = definition["taskDefinition"]["containerDefinitions"]
    assert container["command"] == evaluate(_container()["Command"], values) == _expected_command(values)
    began = datetime.now(timezone.utc)

    # The target and the secret come from the command alone, as they do in the scheduled task: the
    # stage hands the process only the image's and the task definition's environment, and AWS.
    run = canary.run_task_definition(stage.client, resources.task_definition_arn, aws_env=stage.aws_env,
                                     report_dir=tmp_path / "reports").wait()

    assert run.argv[:3] == (sys.executable, "-m", "pytest") and run.argv[3:] == (
        "smoke", "-p", "no:cacheprovider", *container["command"])
    assert run.exit_code == 0, run.output
    assert run.verdict["verdict"] == "pass"
    tasks = run.verdict["tasks"]
    assert tasks and all(t["ip"].startswith("127.1.") for t in tasks)  # --address private
    alarm = evaluate(_one("AWS::CloudWatch::Alarm"), values)
    points = stage.client("cloudwatch").get_metric_statistics(
        Namespace=alarm["Namespace"], MetricName=alarm["MetricName"], Dimensions=alarm["Dimensions"],
        StartTime=began - timedelta(minutes=10), EndTime=datetime.now(timezone.utc) + timedelta(minutes=10),
        Period=alarm["Period"], Statistics=[alarm["Statistic"]])["Datapoints"]
    assert [p[alarm["Statistic"]] for p in points] == [1.0]  # a passing run: not below the threshold
