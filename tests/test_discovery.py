"""Discovery: targets only from the PRIMARY deployment, and one clear line when it cannot be done.

Pure rules are tested with data shaped exactly like boto3 responses; the rest
against the stage (moto + real stand-in processes) through real boto3 clients.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from ecs_verdict.aws import AwsClients, make_clients
from ecs_verdict.containers import choose_container
from ecs_verdict.deployment import Deployment
from ecs_verdict.discovery import build_targets, resolve_targets
from ecs_verdict.rollout_checks import ready_primary_tasks
from ecs_verdict.errors import CouldNotVerify
from ecs_verdict.observation import Observation, parse_deployment, parse_task
from ecs_verdict.targets import Target, target_from_url, targets_from_urls
from stage import Stage, StageOptions, moto_quirks

REGION = "us-east-1"
TD_NEW = "arn:aws:ecs:us-east-1:123456789012:task-definition/civicforge-board-mvp:8"
TD_OLD = "arn:aws:ecs:us-east-1:123456789012:task-definition/civicforge-board-mvp:7"
DEP_NEW, DEP_OLD = "ecs-svc/1111111111111111111", "ecs-svc/2222222222222222222"
NOW = datetime(2025, 5, 1, 12, 0, tzinfo=timezone.utc)


# -- boto3-shaped data ------------------------------------------------------------------------------


def raw_task(
    task_id: str,
    *,
    task_definition: str = TD_NEW,
    started_by: str | None = DEP_NEW,
    group: str = "service:board",
    last_status: str = "RUNNING",
    desired_status: str = "RUNNING",
    health: str | None = "HEALTHY",
) -> dict[str, Any]:
    """A task as ``describe_tasks()['tasks'][i]`` returns it for Fargate awsvpc."""
    task: dict[str, Any] = {
        "taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/civicforge-cluster/{task_id}",
        "taskDefinitionArn": task_definition,
        "group": group,
        "lastStatus": last_status,
        "desiredStatus": desired_status,
        "startedAt": NOW,
        "attachments": [
            {
                "id": "att-1",
                "type": "ElasticNetworkInterface",
                "status": "ATTACHED",
                "details": [
                    {"name": "subnetId", "value": "subnet-1"},
                    {"name": "networkInterfaceId", "value": f"eni-{task_id[:8]}"},
                    {"name": "privateIPv4Address", "value": "10.0.1.5"},
                ],
            }
        ],
        "containers": [
            {"name": "civicforge-app", "lastStatus": last_status, "imageDigest": "sha256:" + "a" * 64}
        ],
    }
    if started_by is not None:
        task["startedBy"] = started_by
    if health is not None:
        task["healthStatus"] = health
    return task


def observation_of(tasks: list[dict[str, Any]], deployments: list[dict[str, Any]]) -> Observation:
    return Observation(
        cluster="civicforge-cluster", service="board", region=REGION, status="ACTIVE", desired=2, running=2,
        pending=0, deployments=tuple(parse_deployment(d) for d in deployments), events=(),
        tasks=tuple(parse_task(t) for t in tasks), observed_at=NOW,
    )  # fmt: skip


def raw_deployment(deployment_id: str, status: str, task_definition: str, rollout: str = "COMPLETED") -> dict[str, Any]:
    return {"id": deployment_id, "status": status, "taskDefinition": task_definition, "desiredCount": 2,
            "runningCount": 2, "pendingCount": 0, "failedTasks": 0, "createdAt": NOW, "rolloutState": rollout}


# -- targets --------------------------------------------------------------------------------------


def test_target_round_trips_through_json() -> None:
    target = Target(
        task_id="3f2a1b2c9d8e7f6a5b4c3d2e1f0a9b8c", short_id="3f2a1b2c", task_arn="arn:aws:ecs:r:1:task/c/3f2a",
        base_url="http://1.2.3.4:8000", ip="1.2.3.4", private_ip="10.0.1.5", public_ip="1.2.3.4", eni_id="eni-1",
        image_digest="sha256:" + "b" * 64, task_definition_arn=TD_NEW, started_at=NOW.isoformat(), source="ecs",
    )  # fmt: skip
    assert Target.from_dict(json.loads(json.dumps(target.to_dict()))) == target


def test_targets_from_urls_derive_short_stable_ids_and_drop_duplicates() -> None:
    targets = targets_from_urls(["http://127.0.0.2:8000", "http://127.0.0.2:8000/", "https://board.example"])
    assert [t.task_id for t in targets] == ["url-127.0.0.2-8000", "url-board.example-443"]
    assert targets[0].short_id == "url-127.0.0.2-8000"
    assert targets[0].base_url == "http://127.0.0.2:8000"
    assert {t.source for t in targets} == {"url"}


@pytest.mark.parametrize(
    ("url", "fragment"),
    [("127.0.0.2:8000", "http://host:port"), ("http://h:8000/api", "path"), ("http://u:hunter2@h:1", "credentials")],
)
def test_target_url_rejects_what_it_cannot_use(url: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as caught:
        target_from_url(url)
    assert "hunter2" not in str(caught.value)


# -- which tasks count ------------------------------------------------------------------------------


def test_only_running_healthy_tasks_of_the_primary_deployment_are_ready() -> None:
    observation = observation_of(
        [
            raw_task("aaaaaaaa0001"),  # ready
            raw_task("bbbbbbbb0002", task_definition=TD_OLD, started_by=DEP_OLD),  # old deployment
            raw_task("cccccccc0003", started_by=DEP_OLD),  # same revision, older deployment (force-new-deployment)
            raw_task("dddddddd0004", health="UNHEALTHY"),
            raw_task("eeeeeeee0005", last_status="PROVISIONING", health="UNKNOWN"),
            raw_task("ffffffff0006", desired_status="STOPPED"),  # being stopped
        ],
        [raw_deployment(DEP_NEW, "PRIMARY", TD_NEW, "IN_PROGRESS"), raw_deployment(DEP_OLD, "ACTIVE", TD_NEW)],
    )
    ready = ready_primary_tasks(observation, needs_health=True)
    assert [task.short_id for task in ready] == ["aaaaaaaa"]


def test_tasks_without_started_by_are_matched_on_task_definition() -> None:
    observation = observation_of(
        [raw_task("aaaaaaaa0001", started_by=None), raw_task("bbbbbbbb0002", task_definition=TD_OLD, started_by=None)],
        [raw_deployment(DEP_NEW, "PRIMARY", TD_NEW)],
    )
    assert [t.short_id for t in ready_primary_tasks(observation, needs_health=False)] == ["aaaaaaaa"]


def test_parse_task_reads_eni_digest_and_times() -> None:
    task = parse_task(raw_task("3f2a1b2c9d8e"))
    assert (task.task_id, task.short_id, task.eni_id, task.private_ip) == (
        "3f2a1b2c9d8e", "3f2a1b2c", "eni-3f2a1b2c", "10.0.1.5",
    )  # fmt: skip
    assert task.container("civicforge-app").image_digest == "sha256:" + "a" * 64  # type: ignore[union-attr]
    assert task.started_at == NOW


def test_choose_container_defaults_to_the_first_with_a_port() -> None:
    definition = {
        "family": "civicforge-board-mvp",
        "containerDefinitions": [
            {"name": "log-router"},
            {"name": "civicforge-app", "portMappings": [{"containerPort": 8000}], "healthCheck": {"command": ["x"]}},
        ],
    }
    chosen = choose_container(definition, None, None)
    assert (chosen.name, chosen.port, chosen.task_has_health_check) == ("civicforge-app", 8000, True)
    assert choose_container(definition, "civicforge-app", 9000).port == 9000
    with pytest.raises(CouldNotVerify, match=r"container 'web' is not in task definition .*log-router, civicforge-app"):
        choose_container(definition, "web", None)


# -- against the stage ------------------------------------------------------------------------------


def stage_clients(stage: Any, **kwargs: Any) -> AwsClients:
    return make_clients(stage.env["AWS_DEFAULT_REGION"], stage.env["AWS_ENDPOINT_URL"], **kwargs)


@pytest.fixture(scope="module")
def healthy(request: pytest.FixtureRequest) -> Iterator[Stage]:
    """One healthy stage for the whole module: these tests only read it or add resources of their own."""
    with Stage(StageOptions(scenario="healthy")) as stage:
        yield stage




def test_healthy_service_gives_both_tasks_with_one_eni_lookup(healthy: Stage, aws_env: Any) -> None:
    stage = healthy
    clients = stage_clients(stage)
    deployment = resolve_targets(clients, cluster=stage.env["ECS_CLUSTER"], service=stage.env["ECS_SERVICE"])
    assert len(deployment.targets) == 2
    assert {t.ip for t in deployment.targets} == set(stage.task_ips().values())
    assert {t.task_id for t in deployment.targets} == set(stage.task_ips())
    assert {t.image_digest for t in deployment.targets} == {stage.expected_image_digest}
    assert (deployment.container, deployment.port) == ("civicforge-app", 8000)
    assert deployment.health_check is not None
    assert all(t.base_url == f"http://{t.ip}:8000" and len(t.short_id) == 8 for t in deployment.targets)
    calls = clients.calls.by_operation()
    assert calls["ec2.DescribeNetworkInterfaces"] == 1
    assert calls["ecs.DescribeTasks"] == 1
    assert Deployment.from_dict(json.loads(json.dumps(deployment.to_dict()))) == deployment


def test_private_address_uses_the_eni_private_ip(healthy: Stage, aws_env: Any) -> None:
    stage = healthy
    deployment = resolve_targets(
        stage_clients(stage), cluster=stage.env["ECS_CLUSTER"], service=stage.env["ECS_SERVICE"], address="private"
    )
    assert all(t.ip == t.private_ip and t.ip != t.public_ip for t in deployment.targets)


# -- every CouldNotVerify case has its line -------------------------------------------------------------


def extra_service(stage: Any, *, desired: int, health_check: bool = False) -> tuple[str, str, str]:
    """A cluster + service of our own in the stage's moto (unique names; the stage never touches them)."""
    ecs = stage.client("ecs")
    suffix = uuid.uuid4().hex[:8]
    cluster, service = f"disc-{suffix}", f"svc-{suffix}"
    ecs.create_cluster(clusterName=cluster)
    container: dict[str, Any] = {"name": "app", "image": "app:1", "memory": 512,
                                 "portMappings": [{"containerPort": 8000}]}  # fmt: skip
    if health_check:
        container["healthCheck"] = {"command": ["CMD-SHELL", "true"]}
    task_definition = ecs.register_task_definition(
        family=f"fam-{suffix}", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[container],
    )["taskDefinition"]["taskDefinitionArn"]  # fmt: skip
    network = {"awsvpcConfiguration": {"subnets": [stage.seeded.subnet_id], "securityGroups": [stage.seeded.security_group_id],
                                        "assignPublicIp": "ENABLED"}}
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=task_definition, desiredCount=desired,
                       launchType="FARGATE", networkConfiguration=network)  # fmt: skip
    return cluster, service, task_definition


def start_task_without_public_ip(stage: Any, cluster: str, service: str, task_definition: str) -> None:
    ecs = stage.client("ecs")
    primary = ecs.describe_services(cluster=cluster, services=[service])["services"][0]["deployments"][0]
    network = {"awsvpcConfiguration": {"subnets": [stage.seeded.subnet_id], "securityGroups": [stage.seeded.security_group_id],
                                        "assignPublicIp": "ENABLED"}}
    arn = ecs.run_task(cluster=cluster, taskDefinition=task_definition, launchType="FARGATE", group=f"service:{service}",
                       startedBy=primary["id"], networkConfiguration=network)["tasks"][0]["taskArn"]  # fmt: skip
    moto_quirks.set_task_fields(moto_quirks.find_task(REGION, cluster, arn), last_status="RUNNING")


def test_cluster_not_found(healthy: Stage, aws_env: Any) -> None:
    stage = healthy
    with pytest.raises(CouldNotVerify) as caught:
        resolve_targets(stage_clients(stage), cluster="no-such-cluster", service="board")
    assert str(caught.value) == (
        "ECS cluster 'no-such-cluster' not found in region us-east-1: check --ecs-cluster (aws ecs list-clusters)"
    )
    assert caught.value.kind == "cluster_not_found"


def test_service_not_found(healthy: Stage, aws_env: Any) -> None:
    stage = healthy
    with pytest.raises(CouldNotVerify) as caught:
        resolve_targets(stage_clients(stage), cluster=stage.env["ECS_CLUSTER"], service="civicforge-board-mvp-service")
    assert caught.value.kind == "service_not_found"
    assert "ECS service 'civicforge-board-mvp-service' not found in cluster 'civicforge-cluster'" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_desired_count_zero(healthy: Stage, aws_env: Any) -> None:
    stage = healthy
    cluster, service, _ = extra_service(stage, desired=0)
    with pytest.raises(CouldNotVerify, match="has desired count 0: nothing to test") as caught:
        resolve_targets(stage_clients(stage), cluster=cluster, service=service)
    assert caught.value.kind == "desired_zero"


def test_no_running_task(healthy: Stage, aws_env: Any) -> None:
    stage = healthy
    cluster, service, _ = extra_service(stage, desired=1)
    with pytest.raises(CouldNotVerify, match=r"^no running task: .* \(its tasks: none started\)") as caught:
        resolve_targets(stage_clients(stage), cluster=cluster, service=service)
    assert caught.value.kind == "no_running_task"


def test_no_public_ip_suggests_private_address(healthy: Stage, aws_env: Any) -> None:
    stage = healthy
    cluster, service, task_definition = extra_service(stage, desired=1)
    start_task_without_public_ip(stage, cluster, service, task_definition)
    with pytest.raises(CouldNotVerify, match=r"has no public IP .*use --address private") as caught:
        resolve_targets(stage_clients(stage), cluster=cluster, service=service)
    assert caught.value.kind == "no_public_ip"
    private = resolve_targets(stage_clients(stage), cluster=cluster, service=service, address="private")
    assert len(private.targets) == 1 and private.targets[0].public_ip is None


def test_a_task_whose_eni_is_gone_is_stopping_not_missing_a_public_ip(healthy: Stage, aws_env: Any) -> None:
    """Seen RUNNING, then its ENI deleted before the address lookup: it is stopping, not lacking a public IP."""
    task = parse_task(raw_task("deadbeef00000000"))  # its ENI, eni-deadbeef, exists nowhere
    with pytest.raises(CouldNotVerify, match=r"ENI eni-deadbeef is gone: the task is stopping") as caught:
        build_targets(stage_clients(healthy), [task], container="civicforge-app", port=8000, address="public")
    assert (caught.value.kind, caught.value.details["task_id"]) == ("no_public_ip", task.task_id)


def test_unreachable_endpoint(aws_env: Any) -> None:
    clients = make_clients("us-east-1", "http://127.0.0.1:9", max_attempts=2)
    with pytest.raises(CouldNotVerify) as caught:
        resolve_targets(clients, cluster="c", service="s")
    assert caught.value.kind == "aws_unreachable"
    assert str(caught.value).startswith("AWS endpoint unreachable: http://127.0.0.1:9")


def test_no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    clients = make_clients("us-east-1", "http://127.0.0.1:9")
    with pytest.raises(CouldNotVerify) as caught:
        resolve_targets(clients, cluster="c", service="s")
    assert str(caught.value) == "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    assert caught.value.kind == "no_credentials"


@pytest.mark.parametrize("region", ["us-nowhere-1", "not a region"])
def test_unknown_region(aws_env: Any, region: str) -> None:
    aws_env.delenv("AWS_ENDPOINT_URL", raising=False)
    aws_env.delenv("AWS_ENDPOINT_URL_ECS", raising=False)
    clients = make_clients(region)
    with pytest.raises(CouldNotVerify, match="unknown AWS region .*--aws-region us-east-1") as caught:
        resolve_targets(clients, cluster="c", service="s")
    assert caught.value.kind == "unknown_region"


def test_no_region(aws_env: Any, tmp_path: Any) -> None:
    aws_env.delenv("AWS_REGION", raising=False)
    aws_env.delenv("AWS_DEFAULT_REGION", raising=False)
    aws_env.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(CouldNotVerify, match="no AWS region set: pass --aws-region us-east-1") as caught:
        make_clients(None)
    assert caught.value.kind == "no_region"
