"""collect_evidence against a real moto server with real boto3 clients.

The module hosts its own ``ThreadedMotoServer(port=0)`` (never ``mock_aws``: it would wipe
servers other tests host in this process) and uses unique names. moto cannot produce stop
reasons, exit codes, digests or service events, so those are set on its backend objects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import backends
from moto.server import ThreadedMotoServer

from ecs_verdict.diagnosis import Failure, diagnose, failure_windows
from ecs_verdict.evidence import collect_evidence

ACCOUNT, REGION = "123456789012", "us-east-1"
CONTAINER = "civicforge-app"
RUNNING_DIGEST = "sha256:" + "1" * 64
REGISTRY_DIGEST = "sha256:" + "2" * 64
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class Deployment:
    clients: dict[str, Any]
    cluster: str
    service: str
    task_definition: dict[str, Any]
    live_task: str
    crashed_task: str
    foreign_task: str
    log_group: str
    repository: str
    failure_time: datetime


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    server = ThreadedMotoServer(port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        settings = dict(
            endpoint_url=f"http://{host}:{port}",
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}),
        )
        clients = {name: boto3.client(name, **settings) for name in ("ec2", "ecs", "logs", "ecr")}
        yield _seed(clients)
    finally:
        server.stop()


def _seed(clients: dict[str, Any]) -> Deployment:
    suffix = uuid.uuid4().hex[:8]
    ec2, ecs, logs, ecr = clients["ec2"], clients["ecs"], clients["logs"], clients["ecr"]
    cluster, service = f"evidence-cluster-{suffix}", f"evidence-service-{suffix}"
    log_group, repository = f"/ecs/evidence-{suffix}", f"evidence-repo-{suffix}"

    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # moto's Fargate path needs it
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"sg-{suffix}", Description="evidence", VpcId=vpc)["GroupId"]

    ecr.create_repository(repositoryName=repository)
    ecr.put_image(
        repositoryName=repository,
        imageManifest=json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "layers": []}),
        imageTag="latest",
        imageDigest=REGISTRY_DIGEST,
    )
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repository}:latest"
    ecs.create_cluster(clusterName=cluster)
    task_definition = ecs.register_task_definition(
        family=f"evidence-{suffix}",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": CONTAINER,
                "image": image,
                "memory": 512,  # moto's Fargate path crashes without container-level memory
                "essential": True,
                "healthCheck": {
                    "command": ["CMD-SHELL", "curl -f http://localhost:8000/health || exit 1"],
                    "interval": 30,
                    "timeout": 5,
                    "retries": 3,
                    "startPeriod": 60,
                },
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {"awslogs-group": log_group, "awslogs-stream-prefix": "ecs", "awslogs-region": REGION},
                },
            }
        ],
    )["taskDefinition"]
    ecs.create_service(
        cluster=cluster, serviceName=service, taskDefinition=task_definition["taskDefinitionArn"], desiredCount=1
    )

    network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}

    def run(group_name: str) -> str:
        task = ecs.run_task(
            cluster=cluster,
            taskDefinition=task_definition["taskDefinitionArn"],
            launchType="FARGATE",
            networkConfiguration=network,
            group=group_name,
            startedBy="ecs-svc/123",
        )["tasks"][0]
        return task["taskArn"].rsplit("/", 1)[-1]

    live, crashed, foreign = run(f"service:{service}"), run(f"service:{service}"), run("family:someone-else")
    long_ago = run(f"service:{service}")
    stops = ((crashed, "Task failed container health checks"), (foreign, "Scaling activity"), (long_ago, "Old crash"))
    for task_id, reason in stops:
        ecs.stop_task(cluster=cluster, task=task_id, reason=reason)

    now = datetime.now(timezone.utc)
    failure_time = now - timedelta(seconds=30)
    backend = backends.get_backend("ecs")[ACCOUNT][REGION]
    tasks = {arn.rsplit("/", 1)[-1]: task for arn, task in backend.tasks[cluster].items()}
    tasks[long_ago].stopped_at = now - timedelta(hours=2)  # outside the one-hour look-back
    tasks[crashed].stop_code = "TaskFailedToStart"
    tasks[crashed].stopped_at = now - timedelta(minutes=2)
    tasks[crashed].containers[0].reason = "CannotStartContainerError: exec /bin/bash: exec format error"
    tasks[crashed].containers[0].exitCode = 255  # moto's Container keeps exitCode in camelCase
    tasks[live].containers[0].image_digest = RUNNING_DIGEST
    service_model = backend.services[f"{cluster}:{service}"]
    service_model.events = [
        {"id": f"e{n}", "createdAt": now - timedelta(minutes=20 - n), "message": f"(service {service}) event {n}"}
        for n in range(12)
    ]

    logs.create_log_group(logGroupName=log_group)
    for task_id, lines in (
        (live, ["INFO:     Started server process [1]", "sqlite3.OperationalError: no such table: users"]),
        (crashed, ["Running database migrations...", "exec /bin/bash: exec format error"]),
    ):
        stream = f"ecs/{CONTAINER}/{task_id}"
        logs.create_log_stream(logGroupName=log_group, logStreamName=stream)
        events = [{"timestamp": _ms(now - timedelta(hours=2)), "message": "an old line outside the window"}]
        events += [{"timestamp": _ms(failure_time) + n, "message": line + "\n"} for n, line in enumerate(lines)]
        logs.put_log_events(logGroupName=log_group, logStreamName=stream, logEvents=events)

    return Deployment(
        clients, cluster, service, task_definition, live, crashed, foreign, log_group, repository, failure_time
    )


def gather(d: Deployment, **overrides: Any) -> Any:
    arguments: dict[str, Any] = dict(
        ecs=d.clients["ecs"],
        logs=d.clients["logs"],
        cluster=d.cluster,
        service=d.service,
        task_ids=[d.live_task],
        task_definition=d.task_definition,
        container=CONTAINER,
        around=d.failure_time,
        ecr=d.clients["ecr"],
    )
    arguments.update(overrides)
    return collect_evidence(**arguments)


def test_logs_of_the_failing_and_the_stopped_task_around_the_failure(deployment: Deployment) -> None:
    evidence = gather(deployment)
    assert evidence.logs[deployment.live_task] == (
        "INFO:     Started server process [1]",
        "sqlite3.OperationalError: no such table: users",
    )
    assert evidence.logs[deployment.crashed_task][-1] == "exec /bin/bash: exec format error"
    assert deployment.foreign_task not in evidence.logs
    assert evidence.notes == ()


def test_max_log_lines_keeps_the_newest(deployment: Deployment) -> None:
    evidence = gather(deployment, max_log_lines=1)
    assert evidence.logs[deployment.live_task] == ("sqlite3.OperationalError: no such table: users",)


def test_only_this_services_stopped_tasks_with_reasons_and_exit_codes(deployment: Deployment) -> None:
    evidence = gather(deployment)
    assert [t.task_id for t in evidence.stopped_tasks] == [deployment.crashed_task]
    crashed = evidence.stopped_tasks[0]
    assert crashed.stopped_reason == "Task failed container health checks"
    assert crashed.stop_code == "TaskFailedToStart"
    assert [(c.name, c.reason, c.exit_code) for c in crashed.containers] == [
        (CONTAINER, "CannotStartContainerError: exec /bin/bash: exec format error", 255)
    ]


def test_service_events_newest_first_capped_and_health_check_and_digests(deployment: Deployment) -> None:
    evidence = gather(deployment)
    assert len(evidence.service_events) == 10
    assert evidence.service_events[0].endswith(f"(service {deployment.service}) event 11")
    assert evidence.service_events[-1].endswith("event 2")
    assert evidence.service_events[0][:20].endswith("Z")
    check = evidence.health_check
    assert check is not None
    assert check.command == ("CMD-SHELL", "curl -f http://localhost:8000/health || exit 1")
    assert (check.interval, check.retries, check.start_period) == (30, 3, 60)
    assert evidence.running_digests == {deployment.live_task: RUNNING_DIGEST}
    assert evidence.registry_digest == REGISTRY_DIGEST


def test_the_gathered_evidence_drives_the_diagnosis(deployment: Deployment) -> None:
    evidence = gather(deployment)
    stopping = diagnose(Failure("tasks_stopping", "stability", None, "tasks keep stopping"), evidence)
    assert (stopping.category, stopping.task_id) == ("arch_mismatch", deployment.crashed_task)


def test_aws_errors_become_notes_not_exceptions(deployment: Deployment) -> None:
    evidence = gather(
        deployment,
        cluster=f"no-such-cluster-{uuid.uuid4().hex[:6]}",
        ecr=deployment.clients["ecr"],
        image_tag_repo="no-such-repo:latest",
    )
    assert evidence.stopped_tasks == ()
    joined = " | ".join(evidence.notes)
    assert "describe_services failed: ClusterNotFoundException" in joined
    assert "list_tasks(STOPPED) failed" in joined
    assert "ecr describe_images(no-such-repo:latest) failed: RepositoryNotFoundException" in joined


def test_missing_log_configuration_is_a_note(deployment: Deployment) -> None:
    definition = {"containerDefinitions": [{"name": CONTAINER, "image": "x:latest"}]}
    evidence = gather(deployment, task_definition=definition, ecr=None)
    assert evidence.logs == {}
    assert evidence.health_check is None
    assert any("no awslogs group" in note for note in evidence.notes)


# -- evidence that does not scroll away ----------------------------------------------------------------


def fastapi_traceback(last_line: str, lines: int) -> list[str]:
    """A traceback shaped like uvicorn's for an unhandled error (one real one is 73 lines)."""
    frames = (lines - 3) // 2
    body = [line for n in range(frames) for line in (f'  File "/app/src/board_mvp/layer{n}.py", line {n + 10}, in '
                                                      f"call_{n}", f"    return await call_{n + 1}(request)")]
    return ["ERROR:    Exception in ASGI application", "Traceback (most recent call last):", *body, last_line]


EXPLAINING = "AttributeError: 'PGCursor' object has no attribute 'rowcount'"
UNRELATED = "KeyError: 'quest_id'"
REMOVAL = "DELETE /api/boards/board_001/members/7"


def log_stream(d: Deployment, at: list[tuple[datetime, list[str]]]) -> str:
    """A task id whose log stream holds ``lines`` at each moment; the id is new, the stream its own."""
    task_id = uuid.uuid4().hex
    stream = f"ecs/{CONTAINER}/{task_id}"
    d.clients["logs"].create_log_stream(logGroupName=d.log_group, logStreamName=stream)
    events = [{"timestamp": _ms(moment) + n, "message": line} for moment, lines in at for n, line in enumerate(lines)]
    d.clients["logs"].put_log_events(logGroupName=d.log_group, logStreamName=stream, logEvents=events)
    return task_id


def logs_only(d: Deployment, task_id: str, **overrides: Any) -> Any:
    """The evidence for ``task_id`` with only its logs to speak (the seeded crash's stop reasons left out)."""
    return gather(d, task_ids=[task_id], around=datetime.now(timezone.utc), cluster="cluster-with-no-stopped-tasks",
                  **overrides)


def removal_failed(task_id: str, at: datetime) -> Failure:
    return Failure("check_failed", "test_owner_removes_the_member", task_id, "DELETE member -> 500",
                   details={"status": 500, "request": REMOVAL}, window=(at - timedelta(seconds=1), at))


def test_a_later_unrelated_traceback_does_not_hide_the_one_that_explains_the_failure(deployment: Deployment) -> None:
    failed_at = datetime.now(timezone.utc) - timedelta(minutes=3)
    access = f'INFO:     10.0.1.5:40000 - "{REMOVAL} HTTP/1.1" 500 Internal Server Error'
    task_id = log_stream(deployment, [
        (failed_at, [access, *fastapi_traceback(EXPLAINING, 73)]),
        (failed_at + timedelta(seconds=2), ['INFO:     10.0.1.5:40001 - "GET /api/quests HTTP/1.1" 500 Internal '
                                            'Server Error', *fastapi_traceback(UNRELATED, 80)]),
    ])
    evidence = logs_only(deployment, task_id)
    assert sum(1 for line in evidence.logs[task_id] if line.startswith("Traceback")) == 2  # both whole
    found = diagnose(removal_failed(task_id, failed_at), evidence)
    assert (found.category, found.task_id) == ("db_adapter_error", task_id)
    assert found.summary.startswith("the 'PGCursor' object has no rowcount attribute")
    assert "SQLite" not in found.summary and "PostgreSQL" not in found.summary  # only what the log shows
    old_bound = logs_only(deployment, task_id, max_log_lines=50)
    assert diagnose(removal_failed(task_id, failed_at), old_bound).category != "db_adapter_error"  # lost it


def test_a_task_is_read_around_its_failure_not_up_to_the_end_of_the_run(deployment: Deployment) -> None:
    failed_at = datetime.now(timezone.utc) - timedelta(minutes=4)
    later = [(failed_at + timedelta(seconds=60 + n), fastapi_traceback(UNRELATED, 80)) for n in range(10)]
    task_id = log_stream(deployment, [(failed_at, fastapi_traceback(EXPLAINING, 73)), *later])
    failure = removal_failed(task_id, failed_at)
    around_the_end = logs_only(deployment, task_id)
    assert EXPLAINING not in around_the_end.logs[task_id]  # 800 later lines push it out of any bound
    around_it = logs_only(deployment, task_id, task_windows=failure_windows([failure]))
    assert around_it.logs[task_id][-1] == EXPLAINING and UNRELATED not in around_it.logs[task_id]
    assert diagnose(failure, around_it).category == "db_adapter_error"
