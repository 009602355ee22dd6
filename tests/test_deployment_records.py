"""ECS deployment records: the stage answers them like ECS, and the harness decides the same from either view.

The stage answers ListServiceDeployments, DescribeServiceDeployments and
DescribeServiceRevisions (and adds ``currentServiceDeployment`` to DescribeServices) from
its scheduler's own deployments; with ``deployment_records=False`` it plays an account
without them. Shapes are checked against botocore's own service model, member by member.
The same scenario run with records on and off must end in the same exit code and
diagnosis categories, and reading the records must stay inside the wait's call budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from ecs_verdict.aws import make_clients
from ecs_verdict.deployment_records import DeploymentRecords
from ecs_verdict.discovery import ServiceObserver
from ecs_verdict.rollout_checks import check_rollback, require_primary
from ecs_verdict.errors import DeployFailed
from ecs_verdict.stability import wait_until_stable
from stage.seed import CLUSTER, CONTAINER, SERVICE
from tests.conftest import StagePlan
from tests.smoke_runs import run_smoke

SHORT_RUN = ("-k", "deployment or health", "--stable-timeout", "90")
RECORD_OPERATIONS = ("ecs.ListServiceDeployments", "ecs.DescribeServiceDeployments", "ecs.DescribeServiceRevisions")
ECS_MODEL = botocore.session.get_session().get_service_model("ecs")
ARN_PREFIX = "arn:aws:ecs:us-east-1:123456789012"


def assert_shape(value: Any, shape_name: str, where: str = "") -> None:
    """Every member the stage sent is one botocore's model has, of its type, and enums hold a listed value."""
    check(value, ECS_MODEL.shape_for(shape_name), where or shape_name)


def check(value: Any, shape: Any, where: str) -> None:
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), f"{where}: expected a structure, got {value!r}"
        unknown = set(value) - set(shape.members)
        assert not unknown, f"{where}: members not in {shape.name}: {sorted(unknown)}"
        for name, item in value.items():
            check(item, shape.members[name], f"{where}.{name}")
    elif kind == "list":
        assert isinstance(value, list), f"{where}: expected a list, got {value!r}"
        for index, item in enumerate(value):
            check(item, shape.member, f"{where}[{index}]")
    elif kind == "string":
        assert isinstance(value, str), f"{where}: expected a string, got {value!r}"
        if shape.enum:
            assert value in shape.enum, f"{where}: {value!r} is not one of {shape.enum}"
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: expected an integer, got {value!r}"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{where}: expected a boolean, got {value!r}"
    elif kind == "timestamp":
        assert isinstance(value, datetime), f"{where}: botocore did not parse a timestamp from {value!r}"


def records_of(stage: Any) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """(service, listed briefs, current record, its target revision) through the stage's own boto3 client."""
    ecs = stage.client("ecs")
    service = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    listed = ecs.list_service_deployments(cluster=CLUSTER, service=SERVICE)
    assert_shape({k: v for k, v in listed.items() if k != "ResponseMetadata"}, "ListServiceDeploymentsResponse")
    described = ecs.describe_service_deployments(serviceDeploymentArns=[service["currentServiceDeployment"]])
    assert_shape({k: v for k, v in described.items() if k != "ResponseMetadata"}, "DescribeServiceDeploymentsResponse")
    assert described["failures"] == []
    record = described["serviceDeployments"][0]
    revisions = ecs.describe_service_revisions(serviceRevisionArns=[record["targetServiceRevision"]["arn"]])
    assert_shape({k: v for k, v in revisions.items() if k != "ResponseMetadata"}, "DescribeServiceRevisionsResponse")
    return service, listed["serviceDeployments"], record, revisions["serviceRevisions"][0]


# scenario -> (current record's status, circuit breaker status, target is the PRIMARY)
STAGE_VIEWS = {
    "healthy": ("SUCCESSFUL", "MONITORING_COMPLETE", True),
    "rolling": ("IN_PROGRESS", "MONITORING", True),
    "one_bad_task": ("SUCCESSFUL", "MONITORING_COMPLETE", True),
    "restart_loop": ("IN_PROGRESS", "MONITORING", True),
    "exec_format": ("IN_PROGRESS", "MONITORING", True),
    "stale_image": ("SUCCESSFUL", "MONITORING_COMPLETE", True),
    "rolled_back": ("ROLLBACK_SUCCESSFUL", "TRIGGERED", False),
}


# Read-only: each scenario's shared stage (restart 0.2 s, a roll-out that waits 600 s).
@pytest.mark.parametrize(("shared_stage", "scenario"), [(StagePlan(scenario), scenario) for scenario in STAGE_VIEWS],
                         indirect=["shared_stage"], ids=list(STAGE_VIEWS))
def test_the_stage_answers_the_records_of_each_scenario(shared_stage: Any, scenario: str) -> None:
    stage = shared_stage
    status, breaker, target_is_primary = STAGE_VIEWS[scenario]
    service, listed, record, revision = records_of(stage)

    by_status = {d["status"]: d for d in service["deployments"]}
    target = by_status["PRIMARY"] if target_is_primary else by_status["ACTIVE"]
    digits = target["id"].removeprefix("ecs-svc/")
    assert service["currentServiceDeployment"] == f"{ARN_PREFIX}:service-deployment/{CLUSTER}/{SERVICE}/{digits}"
    assert record["serviceDeploymentArn"] == service["currentServiceDeployment"]
    assert listed[0]["serviceDeploymentArn"] == record["serviceDeploymentArn"]  # newest first
    assert listed[0]["targetServiceRevisionArn"] == record["targetServiceRevision"]["arn"]
    assert record["targetServiceRevision"]["arn"].startswith(f"{ARN_PREFIX}:service-revision/{CLUSTER}/{SERVICE}/")
    assert (record["status"], record["deploymentCircuitBreaker"]["status"]) == (status, breaker)
    assert revision["taskDefinition"] == target["taskDefinition"]
    assert record["targetServiceRevision"]["requestedTaskCount"] == target["desiredCount"]
    # Both views count the same failures, and the revision pins the digest its tasks run.
    if scenario not in ("restart_loop", "exec_format"):  # there they keep climbing between the two calls
        assert record["deploymentCircuitBreaker"]["failureCount"] == target["failedTasks"]
    ecs = stage.client("ecs")
    arns = [t.arn for t in stage.scheduler.tasks if t.deployment.id == target["id"]]
    tasks = ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"] if arns else []
    running = {box["imageDigest"] for task in tasks for box in task["containers"] if box["name"] == CONTAINER}
    pinned = sorted(running) or [stage.expected_image_digest]  # a deploy not yet begun pins what was pushed
    assert [(i["containerName"], i["imageDigest"]) for i in revision["containerImages"]] == [
        (CONTAINER, digest) for digest in pinned
    ]
    others = [d for d in service["deployments"] if d is not target]
    sources = record["sourceServiceRevisions"]
    if scenario == "rolled_back":
        primary = by_status["PRIMARY"]
        assert record["rollback"]["serviceRevisionArn"] == sources[0]["arn"]
        back = ecs.describe_service_revisions(serviceRevisionArns=[sources[0]["arn"]])["serviceRevisions"][0]
        assert back["taskDefinition"] == primary["taskDefinition"]
        assert [d["status"] for d in listed] == ["ROLLBACK_SUCCESSFUL", "SUCCESSFUL"]
    else:  # the revisions it replaced: those still listed, and the history before the stage began (one_bad_task)
        assert len(sources) == len(others) + len(stage.scheduler.retired)
    if scenario == "stale_image":
        assert revision["containerImages"][0]["imageDigest"] == stage.seeded.previous_digest


def test_a_rolling_deploy_turns_successful_in_both_views(stage_factory: Any) -> None:
    stage = stage_factory("rolling", rolling_delay_s=math.inf)  # held: a delay races the read on a loaded runner
    _, _, before, _ = records_of(stage)
    assert before["status"] == "IN_PROGRESS"
    stage.begin_roll_out()
    assert stage.wait_until(lambda: stage.stable_at is not None, 120)
    service, listed, after, _ = records_of(stage)
    assert after["serviceDeploymentArn"] == before["serviceDeploymentArn"]
    assert [d["rolloutState"] for d in service["deployments"]] == ["COMPLETED"]
    assert after["status"] == "SUCCESSFUL" and "finishedAt" in after
    assert [d["status"] for d in listed] == ["SUCCESSFUL", "SUCCESSFUL"]  # the old one stays in the history


def test_without_records_the_stage_answers_like_an_older_account(stage_factory: Any) -> None:
    stage = stage_factory("healthy", deployment_records=False)
    ecs = stage.client("ecs")
    assert "currentServiceDeployment" not in ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    calls = [
        lambda: ecs.list_service_deployments(cluster=CLUSTER, service=SERVICE),
        lambda: ecs.describe_service_deployments(serviceDeploymentArns=[f"{ARN_PREFIX}:service-deployment/x/y/1"]),
        lambda: ecs.describe_service_revisions(serviceRevisionArns=[f"{ARN_PREFIX}:service-revision/x/y/1"]),
    ]
    for call in calls:
        with pytest.raises(ClientError) as caught:
            call()
        error = caught.value.response
        assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("UnknownOperationException", 400)
    assert all(stage.aws_calls[operation] == 1 for operation in RECORD_OPERATIONS)  # 400s: botocore does not retry


# -- the harness: same verdict from either view -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    exit_code: int
    categories: frozenset[str]
    options: tuple[tuple[str, Any], ...] = ()
    expect_pushed_digest: bool = False
    reads_records: bool = False  # only where deployments show what a record settles (a FAILED rollout)


ROWS = [
    Row("healthy", 0, frozenset()),
    Row("rolling", 0, frozenset(), (("rolling_delay_s", 1.0),)),
    Row("rolled_back", 1, frozenset({"deployment_rolled_back"}), reads_records=True),
    Row("restart_loop", 1, frozenset({"task_restarting"}), (("restart_delay_s", 0.2),)),
    Row("stale_image", 1, frozenset({"stale_image"}), expect_pushed_digest=True),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.scenario for row in ROWS])
def test_the_harness_reaches_the_same_verdict_from_either_view(
    stage_factory: Any, tmp_path: Path, row: Row
) -> None:
    seen: dict[bool, tuple[int, set[str]]] = {}
    for records in (True, False):
        stage = stage_factory(row.scenario, deployment_records=records, **dict(row.options))
        args = ("--expect-image-digest", stage.expected_image_digest) if row.expect_pushed_digest else ()
        before = stage.aws_calls
        run = run_smoke(stage.env, tmp_path / f"records-{records}", *SHORT_RUN, *args)
        made = {op: n - before.get(op, 0) for op, n in stage.aws_calls.items()}
        seen[records] = (run.exit_code, run.categories())
        reads = made.get("ecs.DescribeServiceDeployments", 0), made.get("ecs.DescribeServiceRevisions", 0)
        if records and row.reads_records:
            # Read once, when the deployments showed the FAILED rollout; finished records are not read again.
            assert reads == (1, 1), run.output
        else:
            assert reads == (0, 0), run.output  # a clean roll-out (or an older account) costs no extra call
        stage.stop()  # one stage per process at a time: the records-off stage starts next
    assert seen[True] == seen[False] == (row.exit_code, set(row.categories))


def test_a_rollback_record_fails_the_wait_naming_its_status_and_circuit_breaker(
    stage_factory: Any, aws_env: Any
) -> None:
    stage = stage_factory("rolled_back")
    clients = make_clients("us-east-1", stage.endpoint)
    with pytest.raises(DeployFailed) as caught:
        wait_until_stable(clients, cluster=CLUSTER, service=SERVICE, timeout_s=60)
    error = caught.value
    assert error.kind == "rolled_back"
    assert str(error).startswith("deploy of civicforge-board-mvp:2 was rolled back: the service runs "
                                 "civicforge-board-mvp:1 again")
    assert any(": ROLLBACK_SUCCESSFUL" in line and "(target civicforge-board-mvp:2" in line for line in error.evidence)
    assert "circuit breaker TRIGGERED (2 failed tasks, threshold 2)" in error.evidence
    assert (error.details["status"], error.details["circuit_breaker"]) == ("ROLLBACK_SUCCESSFUL", "TRIGGERED")
    calls = clients.calls.by_operation()
    assert (calls["ecs.DescribeServiceDeployments"], calls["ecs.DescribeServiceRevisions"]) == (1, 1)


def test_a_clean_roll_out_reads_no_record_and_keeps_the_wait_budget(stage_factory: Any, aws_env: Any) -> None:
    stage = stage_factory("rolling", rolling_delay_s=1.0)
    clients = make_clients("us-east-1", stage.endpoint)
    result = wait_until_stable(clients, cluster=CLUSTER, service=SERVICE, timeout_s=90)
    calls = clients.calls.by_operation()
    assert "currentServiceDeployment" in (stage.client("ecs").describe_services(
        cluster=CLUSTER, services=[SERVICE])["services"][0])
    assert not {"ecs.DescribeServiceDeployments", "ecs.DescribeServiceRevisions"} & set(calls)
    assert not {"ecs.DescribeServiceDeployments", "ecs.DescribeServiceRevisions"} & set(stage.aws_calls)
    # The budget of tests/test_stability.py: about 3 calls per full poll, 1 per light poll, ENIs once.
    assert calls["ecs.DescribeServices"] == result.polls + result.light_polls
    assert result.aws_calls <= 4 * result.polls + result.light_polls + 3
    assert result.deployment.deployment_id == stage.scheduler.deployments[0].id


def test_access_denied_on_the_records_falls_back_to_deployments(stage_factory: Any, aws_env: Any) -> None:
    stage = stage_factory("rolled_back")
    denied = {"__type": "AccessDeniedException", "message": "not authorized to perform ecs:DescribeServiceDeployments"}
    stage.moto.fault = lambda operation: (400, denied) if operation == "ecs.DescribeServiceDeployments" else None
    observer = ServiceObserver(make_clients("us-east-1", stage.endpoint), CLUSTER, SERVICE)
    observation = observer.poll()
    observer.poll()
    assert observation.record is None
    assert observer.records.unavailable == "AccessDeniedException on DescribeServiceDeployments"
    assert stage.aws_calls["ecs.DescribeServiceDeployments"] == 1  # refused once: not asked again
    with pytest.raises(DeployFailed) as caught:
        check_rollback(observation, require_primary(observation), None)
    assert caught.value.kind == "rolled_back"
    assert not any("service deployment" in line for line in caught.value.evidence)  # read from deployments


# -- the reader alone, with botocore's Stubber ----------------------------------------------------------------------

CURRENT = f"{ARN_PREFIX}:service-deployment/{CLUSTER}/{SERVICE}/42"
REVISION = f"{ARN_PREFIX}:service-revision/{CLUSTER}/{SERVICE}/7"
TASK_DEFINITION = f"{ARN_PREFIX}:task-definition/civicforge-board-mvp:2"


def stubbed(aws_env: Any) -> tuple[Any, Stubber]:
    clients = make_clients("us-east-1", "http://127.0.0.1:9")  # never reached: the stubber answers
    stubber = Stubber(clients.ecs)
    stubber.activate()
    return clients, stubber


def deployment_answer(status: str) -> dict[str, Any]:
    return {"serviceDeployments": [{
        "serviceDeploymentArn": CURRENT, "status": status, "targetServiceRevision": {"arn": REVISION},
        "deploymentCircuitBreaker": {"status": "MONITORING", "failureCount": 0, "threshold": 3},
    }], "failures": []}


REVISION_ANSWER = {"serviceRevisions": [{
    "serviceRevisionArn": REVISION, "taskDefinition": TASK_DEFINITION,
    "containerImages": [{"containerName": CONTAINER, "imageDigest": "sha256:" + "a" * 64, "image": "repo:latest"}],
}], "failures": []}


@pytest.mark.parametrize("code", ["AccessDeniedException", "UnknownOperationException", "InvalidParameterException"])
def test_a_refused_record_read_means_read_deployments(aws_env: Any, code: str) -> None:
    clients, stubber = stubbed(aws_env)
    stubber.add_client_error("describe_service_deployments", service_error_code=code, http_status_code=400)
    records = DeploymentRecords()
    assert records.read(clients, {"currentServiceDeployment": CURRENT}, changed=True) is None
    assert records.read(clients, {"currentServiceDeployment": CURRENT}, changed=True) is None  # no second call
    stubber.assert_no_pending_responses()
    assert records.unavailable == f"{code} on DescribeServiceDeployments"


def test_a_finished_record_is_read_once_and_an_unfinished_one_on_each_change(aws_env: Any) -> None:
    clients, stubber = stubbed(aws_env)
    service = {"currentServiceDeployment": CURRENT}
    stubber.add_response("describe_service_deployments", deployment_answer("IN_PROGRESS"))
    stubber.add_response("describe_service_revisions", REVISION_ANSWER)
    stubber.add_client_error("describe_service_deployments", service_error_code="ThrottlingException",
                             http_status_code=400)
    stubber.add_response("describe_service_deployments", deployment_answer("SUCCESSFUL"))
    records = DeploymentRecords()
    first = records.read(clients, service, changed=True)
    assert first is not None and (first.status, first.target_task_definition_arn) == ("IN_PROGRESS", TASK_DEFINITION)
    assert first.digest_of(CONTAINER) == "sha256:" + "a" * 64
    assert records.read(clients, service, changed=False) is first  # nothing moved: no call
    assert records.read(clients, service, changed=True) is first  # throttled: keep the last answer, try later
    done = records.read(clients, service, changed=True)
    assert done is not None and done.finished and not done.rolled_back
    assert records.read(clients, service, changed=True) is done  # finished, and the revision was kept
    stubber.assert_no_pending_responses()
    assert records.unavailable is None
    assert records.read(clients, {}, changed=True) is None  # no currentServiceDeployment: deployments only


def test_an_alarm_rollback_names_the_alarm_not_the_circuit_breaker(stage_factory: Any, aws_env: Any) -> None:
    stage = stage_factory("alarm_rollback", bake_time_s=240)
    alarm = stage.canary.alarm_name
    ecs = stage.client("ecs")

    def current() -> dict[str, Any]:
        arn = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["currentServiceDeployment"]
        return ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]

    assert stage.wait_until(lambda: any(d.bake_until for d in stage.scheduler.deployments), 60)
    baking = current()
    assert (baking["status"], baking["lifecycleStage"], baking["alarms"]["status"]) == (
        "IN_PROGRESS", "BAKE_TIME", "MONITORING")
    stage.client("cloudwatch").set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="test")
    assert stage.wait_until(lambda: stage.scheduler.deployments[0].rollout_state == "COMPLETED"
                            and any(d.rollout_state == "FAILED" for d in stage.scheduler.deployments), 60)
    record = current()
    assert record["serviceDeploymentArn"] == baking["serviceDeploymentArn"]
    assert record["status"] == "ROLLBACK_SUCCESSFUL"
    assert record["alarms"] == {"status": "TRIGGERED", "alarmNames": [alarm], "triggeredAlarmNames": [alarm]}
    assert record["deploymentCircuitBreaker"]["status"] == "MONITORING_COMPLETE"
    observation = ServiceObserver(make_clients("us-east-1", stage.endpoint), CLUSTER, SERVICE).poll()
    assert observation.record is not None and observation.record.rolled_back
    assert f"deployment alarms TRIGGERED: {alarm}" in observation.record.evidence()
