"""The scheduled canary on the stage: EventBridge Scheduler and CloudWatch alarms, played.

moto stores a schedule but never fires it, and stores an alarm but never evaluates it
(shared/moto-notes.md). The stage plays both, from what moto holds:

- ``install_canary`` creates ``infra/canary.yaml`` as a stack in the stage's moto. moto 5.2's
  CloudFormation skips ``AWS::Scheduler::Schedule`` and ``AWS::CloudWatch::Alarm``, so those two
  are then made from the template's own properties (intrinsics evaluated here) with
  ``scheduler.create_schedule`` and ``cloudwatch.put_metric_alarm``.
- ``launch_schedule`` fires a schedule once, as Scheduler's ECS RunTask target would: the
  schedule's target names the task definition; its container's ``command`` runs after the
  image's ENTRYPOINT (read from the Dockerfile) as a process, with the image's and the task
  definition's environment, the stage's AWS endpoint and credentials, and the ``/reports``
  volume on a local folder. Its output goes to the task's awslogs stream.
- ``evaluate_alarm`` is CloudWatch's evaluation as a pure function of the alarm and one value per
  period; ``evaluate_and_set`` reads the periods with ``get_metric_statistics`` and moves the
  alarm with ``set_alarm_state`` when its state changes, as CloudWatch does.

Test and demo infrastructure only, free of pytest: nothing in plugins/ imports it.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = PROJECT_ROOT / "infra" / "canary.yaml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
ACCOUNT_ID = "123456789012"  # moto's default account
CANARY_STACK = "civicforge-board-service-smoke-canary"
REPORTS_MOUNT = "/reports"  # the template's mount point and the image's VOLUME
DEFAULT_RUN_TIMEOUT_S = 300.0
# What the developer's shell must not hand the scheduled task: on Fargate it gets only what the
# image and the task definition set (the target and the region come from the command).
NOT_INHERITED = re.compile(r"^(AWS_|SMOKE_|ECS_|API_BASE_URL$)")
OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}

ClientFactory = Callable[[str], Any]


class CanaryError(RuntimeError):
    """The canary cannot be installed, fired or evaluated; the message is one line for a person."""


# -- the template ---------------------------------------------------------------------------------


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain dicts and lists, short-form tags (``!Ref``) expanded."""
    # A dev dependency, like moto: only the stage needs it.
    from cfnlint.decode import decode_str

    template, problems = decode_str(path.read_text(encoding="utf-8"))
    if problems:
        raise CanaryError(f"{path} does not parse: {problems[0]}")
    return json.loads(json.dumps(template))


def stack_values(template: Mapping[str, Any], given: Mapping[str, str], pseudo: Mapping[str, str],
                 resources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Ref targets: parameters (defaults applied, lists split), pseudo parameters, resources.

    A resource without a physical id given stands for itself as ``<LogicalId>``.
    """
    values: dict[str, Any] = {}
    for name, spec in template["Parameters"].items():
        raw = given.get(name, spec.get("Default"))
        if raw is None:
            continue
        listed = spec["Type"].startswith(("List<", "CommaDelimitedList"))
        values[name] = str(raw).split(",") if listed else str(raw)
    values |= pseudo
    values |= {name: f"<{name}>" for name in template["Resources"]} | dict(resources or {})
    return values


def evaluate(node: Any, values: Mapping[str, Any], conditions: Mapping[str, Any]) -> Any:
    """Ref, Fn::Sub (string form), Fn::GetAtt, Fn::Join, Fn::If / Equals / Not: what the template uses."""
    if isinstance(node, list):
        return [evaluate(item, values, conditions) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        [(key, argument)] = node.items()
        if key == "Ref":
            return values[argument]
        if key == "Fn::Sub":
            if not isinstance(argument, str):
                raise CanaryError("only the string form of Fn::Sub is evaluated")
            return re.sub(r"\$\{([\w:.]+)\}", lambda m: str(values[m.group(1)]), argument)
        if key == "Fn::GetAtt":
            return values[".".join(argument) if isinstance(argument, list) else argument]
        if key == "Fn::Join":
            separator, items = argument
            return separator.join(evaluate(items, values, conditions))
        if key == "Fn::If":
            name, when_true, when_false = argument
            chosen = when_true if evaluate(conditions[name], values, conditions) else when_false
            return evaluate(chosen, values, conditions)
        if key == "Fn::Equals":
            left, right = argument
            return evaluate(left, values, conditions) == evaluate(right, values, conditions)
        if key == "Fn::Not":
            return not evaluate(argument[0], values, conditions)
        if key.startswith("Fn::"):
            raise CanaryError(f"{key} is not evaluated here")
    return {key: evaluate(value, values, conditions) for key, value in node.items()}


def _one(template: Mapping[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    [(name, resource)] = [(n, r) for n, r in template["Resources"].items() if r["Type"] == kind]
    return name, resource["Properties"]


# -- installing the stack in the stage's moto ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CanaryResources:
    """What the canary stack made (by moto's CloudFormation or, where it skips a type, by hand)."""

    stack_name: str
    task_definition_arn: str
    schedule_name: str
    schedule_group: str
    alarm_name: str


def install_canary(client: ClientFactory, parameters: Mapping[str, str], *, region: str,
                   stack_name: str = CANARY_STACK, template_path: Path = TEMPLATE) -> CanaryResources:
    """Create the canary stack; then the schedule and the alarm moto's CloudFormation skipped.

    ``client(name)`` gives a boto3 client on the stage's moto. The new alarm is put in
    INSUFFICIENT_DATA, where AWS starts one (moto starts it in OK).
    """
    cloudformation = client("cloudformation")
    text = template_path.read_text(encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moto warns once per resource type it skips
        cloudformation.create_stack(
            StackName=stack_name, TemplateBody=text, Capabilities=["CAPABILITY_IAM"],
            Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()])
    [stack] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise CanaryError(f"stack {stack_name} is {stack['StackStatus']}: {stack.get('StackStatusReason', '')}")
    summaries = cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    physical = {s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries if s.get("LogicalResourceId")}
    template = load_template(template_path)
    conditions = template.get("Conditions", {})
    pseudo = {"AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": ACCOUNT_ID,
              "AWS::StackName": stack_name}
    resources = dict(physical)
    for logical_id in physical:
        if template["Resources"][logical_id]["Type"] == "AWS::IAM::Role":
            resources[f"{logical_id}.Arn"] = client("iam").get_role(RoleName=physical[logical_id])["Role"]["Arn"]
    values = stack_values(template, parameters, pseudo, resources)

    schedule_id, schedule = _one(template, "AWS::Scheduler::Schedule")
    if schedule_id in physical:
        schedule_name = physical[schedule_id]
    else:  # moto 5.2 skips AWS::Scheduler::Schedule: made from the template's properties
        schedule_name = f"{stack_name}-{schedule_id}"
        props = evaluate(schedule, values, conditions)
        client("scheduler").create_schedule(
            Name=schedule_name, ScheduleExpression=props["ScheduleExpression"], State=props["State"],
            Description=props.get("Description", ""), FlexibleTimeWindow=props["FlexibleTimeWindow"],
            Target=_scheduler_target(props["Target"]))
    alarm_id, alarm = _one(template, "AWS::CloudWatch::Alarm")
    if alarm_id in physical:
        alarm_name = physical[alarm_id]
    else:  # moto 5.2 skips AWS::CloudWatch::Alarm: made from the template's properties
        props = evaluate(alarm, values, conditions)
        alarm_name = props["AlarmName"]
        cloudwatch = client("cloudwatch")
        cloudwatch.put_metric_alarm(
            AlarmName=alarm_name, AlarmDescription=props.get("AlarmDescription", ""),
            Namespace=props["Namespace"], MetricName=props["MetricName"], Dimensions=props["Dimensions"],
            Statistic=props["Statistic"], Period=int(props["Period"]),
            EvaluationPeriods=int(props["EvaluationPeriods"]),
            **({"DatapointsToAlarm": int(props["DatapointsToAlarm"])} if "DatapointsToAlarm" in props else {}),
            Threshold=float(props["Threshold"]), ComparisonOperator=props["ComparisonOperator"],
            TreatMissingData=props.get("TreatMissingData", "missing"))
        cloudwatch.set_alarm_state(AlarmName=alarm_name, StateValue=INSUFFICIENT_DATA,
                                   StateReason="Unchecked: Initial alarm creation")
    task_definition_id, _ = _one(template, "AWS::ECS::TaskDefinition")
    return CanaryResources(stack_name=stack_name, task_definition_arn=physical[task_definition_id],
                           schedule_name=schedule_name, schedule_group="default", alarm_name=alarm_name)


def _scheduler_target(target: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's Target property in the shape of the CreateSchedule API (same names)."""
    ecs = target["EcsParameters"]
    awsvpc = ecs["NetworkConfiguration"]["AwsvpcConfiguration"]
    return {
        "Arn": target["Arn"], "RoleArn": target["RoleArn"], "RetryPolicy": target["RetryPolicy"],
        "EcsParameters": {
            "TaskDefinitionArn": ecs["TaskDefinitionArn"], "LaunchType": ecs["LaunchType"],
            "PlatformVersion": ecs["PlatformVersion"], "TaskCount": int(ecs["TaskCount"]),
            "NetworkConfiguration": {"awsvpcConfiguration": {
                "Subnets": awsvpc["Subnets"], "SecurityGroups": awsvpc["SecurityGroups"],
                "AssignPublicIp": awsvpc["AssignPublicIp"]}},
        },
    }


# -- firing the schedule --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The harness image's ENTRYPOINT and ENV, from the Dockerfile (no image is built here)."""

    entrypoint: tuple[str, ...]
    env: Mapping[str, str]

    @classmethod
    def from_dockerfile(cls, path: Path = DOCKERFILE) -> ImageConfig:
        from dockerfile_parse import DockerfileParser

        parser = DockerfileParser(path=str(path))
        [entrypoint] = [json.loads(i["value"]) for i in parser.structure if i["instruction"] == "ENTRYPOINT"]
        return cls(entrypoint=tuple(entrypoint), env=dict(parser.envs))

    def argv(self, command: Sequence[str]) -> list[str]:
        """ENTRYPOINT + command, with this interpreter's pytest for the image's ``pytest``."""
        head, *rest = self.entrypoint
        program = [sys.executable, "-m", head] if head == "pytest" else [head]
        return [*program, *rest, *command]


@dataclass(frozen=True, slots=True)
class CanaryRun:
    """One fired schedule: the task's exit code, its output, and its /reports folder."""

    task_id: str
    argv: tuple[str, ...]
    exit_code: int
    output: str
    report_dir: Path
    started_at: datetime
    stopped_at: datetime

    @property
    def verdict(self) -> dict[str, Any]:
        path = self.report_dir / "verdict.json"
        if not path.exists():
            raise CanaryError(f"the canary wrote no verdict.json (exit {self.exit_code}): {self.output[-2000:]}")
        return json.loads(path.read_text(encoding="utf-8"))


class CanaryTask:
    """A fired schedule's task, running; ``wait()`` gives its ``CanaryRun``."""

    def __init__(self, *, task_id: str, argv: list[str], env: dict[str, str], report_dir: Path,
                 logs: Any, log_group: str | None, log_stream: str | None) -> None:
        self.task_id = task_id
        self.argv = argv
        self.report_dir = report_dir
        self.started_at = datetime.now(timezone.utc)
        self._logs, self._log_group, self._log_stream = logs, log_group, log_stream
        self._process = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)

    def wait(self, timeout_s: float = DEFAULT_RUN_TIMEOUT_S) -> CanaryRun:
        try:
            output, _ = self._process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            output, _ = self._process.communicate()
            raise CanaryError(f"canary task {self.task_id} ran over {timeout_s:g} s: {output[-2000:]}") from None
        run = CanaryRun(task_id=self.task_id, argv=tuple(self.argv), exit_code=self._process.returncode,
                        output=output, report_dir=self.report_dir, started_at=self.started_at,
                        stopped_at=datetime.now(timezone.utc))
        self._ship(output)
        return run

    def kill(self) -> None:
        """The task stopped from outside (the stage shutting down): its process goes at once."""
        if self._process.poll() is None:
            self._process.kill()  # wait(), in the thread playing the task, collects it

    def _ship(self, output: str) -> None:
        """The task's output into its awslogs stream, as the awslogs driver would."""
        if self._log_group is None or self._log_stream is None:
            return
        stamp = int(self.started_at.timestamp() * 1000)
        lines = [line for line in output.splitlines() if line.strip()] or ["(no output)"]
        self._logs.create_log_stream(logGroupName=self._log_group, logStreamName=self._log_stream)
        for start in range(0, len(lines), 1000):
            self._logs.put_log_events(logGroupName=self._log_group, logStreamName=self._log_stream,
                                      logEvents=[{"timestamp": stamp, "message": m} for m in lines[start:start + 1000]])


def task_environment(container: Mapping[str, Any], image: ImageConfig, aws_env: Mapping[str, str],
                     report_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the scheduled task's process sees: the image's ENV, the task definition's, and AWS.

    ``aws_env`` is the stage's endpoint and credentials (what the task role gives on Fargate).
    Paths under the ``/reports`` volume point at ``report_dir`` instead.
    """
    env = {key: value for key, value in (os.environ if base is None else base).items()
           if not NOT_INHERITED.match(key)}
    env |= dict(image.env)
    env |= {item["name"]: item["value"] for item in container.get("environment", [])}
    env |= dict(aws_env)
    for key, value in list(env.items()):
        if value == REPORTS_MOUNT or value.startswith(REPORTS_MOUNT + "/"):
            env[key] = str(report_dir) + value[len(REPORTS_MOUNT):]
    return env


def run_task_definition(client: ClientFactory, task_definition_arn: str, *, aws_env: Mapping[str, str],
                        report_dir: Path, image: ImageConfig | None = None, command: Sequence[str] | None = None,
                        task_id: str | None = None) -> CanaryTask:
    """Start the task definition's one container as a process on this machine (RunTask, played).

    ``command``: RunTask's containerOverrides command, which replaces the task definition's;
    ``task_id``: the id ECS gave the task (its log stream is named after it).
    """
    ecs = client("ecs")
    definition = ecs.describe_task_definition(taskDefinition=task_definition_arn)["taskDefinition"]
    [container] = definition["containerDefinitions"]
    image = image or ImageConfig.from_dockerfile()
    report_dir.mkdir(parents=True, exist_ok=True)
    task_id = task_id or uuid.uuid4().hex
    options = container.get("logConfiguration", {}).get("options", {})
    awslogs = container.get("logConfiguration", {}).get("logDriver") == "awslogs"
    stream = f"{options.get('awslogs-stream-prefix')}/{container['name']}/{task_id}" if awslogs else None
    command = container.get("command", []) if command is None else command
    return CanaryTask(task_id=task_id, argv=image.argv(command),
                      env=task_environment(container, image, aws_env, report_dir), report_dir=report_dir,
                      logs=client("logs"), log_group=options.get("awslogs-group") if awslogs else None,
                      log_stream=stream)


def launch_schedule(client: ClientFactory, schedule_name: str, *, aws_env: Mapping[str, str], report_dir: Path,
                    group: str = "default") -> CanaryTask:
    """Fire a schedule once: its ECS target's task definition, run against the stage."""
    schedule = client("scheduler").get_schedule(Name=schedule_name, GroupName=group)
    ecs_parameters = schedule["Target"].get("EcsParameters")
    if not ecs_parameters:
        raise CanaryError(f"schedule {schedule_name} has no ECS target: {schedule['Target'].get('Arn')}")
    if schedule.get("State") != "ENABLED":
        raise CanaryError(f"schedule {schedule_name} is {schedule.get('State')}: Scheduler would not fire it")
    return run_task_definition(client, ecs_parameters["TaskDefinitionArn"], aws_env=aws_env, report_dir=report_dir)


def fire_schedule(client: ClientFactory, schedule_name: str, *, aws_env: Mapping[str, str], report_dir: Path,
                  group: str = "default", timeout_s: float = DEFAULT_RUN_TIMEOUT_S) -> CanaryRun:
    """``launch_schedule``, then wait for the task to stop."""
    return launch_schedule(client, schedule_name, aws_env=aws_env, report_dir=report_dir, group=group).wait(timeout_s)


# -- evaluating the alarm -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    """The fields of a metric alarm that decide its state."""

    name: str
    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]
    statistic: str
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    treat_missing_data: str = "missing"

    @classmethod
    def from_alarm(cls, alarm: Mapping[str, Any]) -> AlarmSpec:
        """From a ``describe_alarms`` MetricAlarm (DatapointsToAlarm defaults to EvaluationPeriods)."""
        if "Statistic" not in alarm:
            raise CanaryError(f"alarm {alarm['AlarmName']}: only a simple Statistic is evaluated here")
        if alarm["ComparisonOperator"] not in _COMPARE:
            raise CanaryError(f"alarm {alarm['AlarmName']}: {alarm['ComparisonOperator']} is not evaluated here")
        periods = int(alarm["EvaluationPeriods"])
        return cls(
            name=alarm["AlarmName"], namespace=alarm["Namespace"], metric_name=alarm["MetricName"],
            dimensions=tuple((d["Name"], d["Value"]) for d in alarm.get("Dimensions", [])),
            statistic=alarm["Statistic"], period=int(alarm["Period"]), evaluation_periods=periods,
            datapoints_to_alarm=int(alarm.get("DatapointsToAlarm") or periods), threshold=float(alarm["Threshold"]),
            comparison=alarm["ComparisonOperator"], treat_missing_data=alarm.get("TreatMissingData") or "missing")

    @property
    def dimension_list(self) -> list[dict[str, str]]:
        return [{"Name": name, "Value": value} for name, value in self.dimensions]


@dataclass(frozen=True, slots=True)
class AlarmEvaluation:
    state: str
    reason: str
    values: tuple[float | None, ...]  # one per period, oldest first; None: no data point
    breaching: int

    def reason_data(self) -> str:
        return json.dumps({"version": "1.0", "queryDate": datetime.now(timezone.utc).isoformat(),
                           "recentDatapoints": [v for v in self.values if v is not None],
                           "threshold": None, "evaluatedDatapoints": len(self.values)})


def evaluate_alarm(spec: AlarmSpec, values: Sequence[float | None], current_state: str = INSUFFICIENT_DATA
                   ) -> AlarmEvaluation:
    """The state CloudWatch gives ``spec`` for one value per period over its last EvaluationPeriods.

    ``values`` is oldest first, ``None`` for a period without data. Missing periods count as
    TreatMissingData says: ``breaching`` / ``notBreaching`` as such; ``missing`` and ``ignore``
    leave them out, and with no data at all ``missing`` is INSUFFICIENT_DATA while ``ignore``
    keeps ``current_state``. ALARM when at least DatapointsToAlarm periods breach, else OK.
    """
    window = tuple(values[-spec.evaluation_periods:])
    if len(window) != spec.evaluation_periods:
        raise ValueError(f"need {spec.evaluation_periods} periods for {spec.name}, got {len(window)}")
    compare = _COMPARE[spec.comparison]
    missing = sum(value is None for value in window)
    present = [value for value in window if value is not None]
    if spec.treat_missing_data == "breaching":
        breaching = sum(value is None or compare(value, spec.threshold) for value in window)
        counted = len(window)
    elif spec.treat_missing_data == "notBreaching":
        breaching = sum(value is not None and compare(value, spec.threshold) for value in window)
        counted = len(window)
    else:  # missing | ignore: only the periods with data count
        breaching = sum(compare(value, spec.threshold) for value in present)
        counted = len(present)
    fill = {"breaching": "Breaching", "notBreaching": "NonBreaching"}.get(spec.treat_missing_data)
    shown = ", ".join("missing" if v is None else f"{v:g}" for v in window)
    treated = f" ({missing} missing treated as {fill})" if missing and fill else ""
    crossed = (f"Threshold Crossed: {breaching} out of the last {spec.evaluation_periods} datapoints "
               f"[{shown}]{treated} were {_WORDS[spec.comparison]} the threshold ({spec.threshold:g}) "
               f"(minimum {spec.datapoints_to_alarm} datapoints for OK -> ALARM transition).")
    if breaching >= spec.datapoints_to_alarm:
        return AlarmEvaluation(ALARM, crossed, window, breaching)
    if counted == 0:
        state = current_state if spec.treat_missing_data == "ignore" else INSUFFICIENT_DATA
        reason = (f"Insufficient Data: {spec.evaluation_periods} datapoints were unknown."
                  if state == INSUFFICIENT_DATA else "Missing data ignored: the state is kept.")
        return AlarmEvaluation(state, reason, window, breaching)
    return AlarmEvaluation(OK, crossed.replace("Threshold Crossed", "Threshold not crossed", 1), window, breaching)


_WORDS = {
    "GreaterThanOrEqualToThreshold": "greater than or equal to",
    "GreaterThanThreshold": "greater than",
    "LessThanThreshold": "less than",
    "LessThanOrEqualToThreshold": "less than or equal to",
}


def period_values(cloudwatch: Any, spec: AlarmSpec, now: datetime | None = None) -> list[float | None]:
    """The alarm's statistic for each of its last EvaluationPeriods periods, oldest first.

    Periods are aligned to the epoch, and the latest is the one ``now`` falls in: the stage
    cannot wait a whole period to close, so it evaluates as CloudWatch does once that period has.
    One get_metric_statistics call per period: moto groups data points into periods counted from
    the first data point, not from StartTime, so a single call would not line up with them.
    """
    now = now or datetime.now(timezone.utc)
    end = math.floor(now.timestamp() / spec.period) * spec.period + spec.period
    values: list[float | None] = []
    for index in range(spec.evaluation_periods, 0, -1):
        start = datetime.fromtimestamp(end - index * spec.period, timezone.utc)
        points = cloudwatch.get_metric_statistics(
            Namespace=spec.namespace, MetricName=spec.metric_name, Dimensions=spec.dimension_list,
            StartTime=start, EndTime=start + timedelta(seconds=spec.period), Period=spec.period,
            Statistics=[spec.statistic])["Datapoints"]
        found = [float(point[spec.statistic]) for point in points]
        if not found:
            values.append(None)
        else:
            values.append(min(found) if spec.statistic == "Minimum" else max(found) if spec.statistic == "Maximum"
                          else found[0])
    return values


def evaluate_and_set(cloudwatch: Any, alarm_name: str, now: datetime | None = None) -> AlarmEvaluation:
    """Evaluate a stored alarm on its metric's data and set its state in moto when it changes."""
    [alarm] = cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"] or [None]
    if alarm is None:
        raise CanaryError(f"no metric alarm named {alarm_name!r}")
    spec = AlarmSpec.from_alarm(alarm)
    result = evaluate_alarm(spec, period_values(cloudwatch, spec, now), alarm["StateValue"])
    if result.state != alarm["StateValue"]:
        cloudwatch.set_alarm_state(AlarmName=alarm_name, StateValue=result.state, StateReason=result.reason[:1023],
                                   StateReasonData=result.reason_data())
    return result
