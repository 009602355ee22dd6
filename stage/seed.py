"""Seed the CivicForge deployment into a fresh moto, as shared/civicforge-api.md describes it.

Cluster, service, two revisions of the task family (the previous release and
this deploy), the ECR repository with pinned digests, the log group and the
Secrets Manager secrets, including the smoke accounts. Everything here is a
plain boto3 call: what the harness later reads back is what real AWS would
hold.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from stage.moto_quirks import ACCOUNT_ID, CONTAINER_MEMORY_MIB

REGION = "us-east-1"
CLUSTER = "civicforge-cluster"
SERVICE = "civicforge-board-service"
FAMILY = "civicforge-board-mvp"
CONTAINER = "civicforge-app"
PORT = 8000
LOG_GROUP = "/ecs/civicforge-board-mvp"
LOG_PREFIX = "ecs"
REPOSITORY = "civicforge-board-mvp"
SECRET_PREFIX = "civicforge/board-mvp"
SMOKE_SECRET = f"{SECRET_PREFIX}/smoke-accounts"
DESIRED_COUNT = 2  # the default; StageOptions(tasks=N) / `--tasks N` sets another
PARTICIPANT_POOL = 3  # participant accounts in the smoke secret (the least; see participant_pool)
MAX_TASKS = 100  # 127.0.0.N and 127.1.0.N give each task its own two addresses, with room for replacements

# The runbook's fixed check (lesson 1) and the broken one the template still has.
URLLIB_HEALTH_CHECK = (
    "python -c \"import urllib.request; urllib.request.urlopen('http://localhost:8000{path}')\" || exit 1"
)
CURL_HEALTH_CHECK = "curl -f http://localhost:8000{path} || exit 1"


def image_digest(label: str) -> str:
    """A stable sha256 digest per image label, so runs are comparable."""
    return "sha256:" + hashlib.sha256(f"civicforge-board-mvp:{label}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Seeded:
    previous_task_definition: str
    current_task_definition: str
    subnet_id: str
    security_group_id: str
    repository_uri: str
    pushed_digest: str  # what the deploy pushed as :latest
    previous_digest: str
    smoke_accounts: dict[str, dict[str, str]]
    secret_key: str
    desired_count: int = DESIRED_COUNT


def health_check(path: str, *, curl: bool, start_period: bool = True) -> dict[str, Any]:
    command = (CURL_HEALTH_CHECK if curl else URLLIB_HEALTH_CHECK).format(path=path)
    check = {"command": ["CMD-SHELL", command], "interval": 30, "timeout": 5, "retries": 3, "startPeriod": 60}
    if not start_period:
        del check["startPeriod"]
    return check


def participant_pool(tasks: int) -> int:
    """Participant accounts the stage seeds: one per task (at least 3), so every task's invite check can
    run at once; a real secret lists what its operator made, and the harness waits for a free one."""
    return max(PARTICIPANT_POOL, tasks)


def seed(clients: dict[str, Any], *, health_check_path: str, curl_health_check: bool, secret_key: str,
         desired_count: int = DESIRED_COUNT, no_start_period: bool = False) -> Seeded:
    ec2, ecs, ecr, logs, sm = (clients[name] for name in ("ec2", "ecs", "ecr", "logs", "secretsmanager"))

    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg_id = ec2.create_security_group(GroupName="civicforge-board-sg", Description="board 8000/tcp", VpcId=vpc_id)[
        "GroupId"
    ]

    repository_uri = ecr.create_repository(repositoryName=REPOSITORY)["repository"]["repositoryUri"]
    previous_digest, pushed_digest = image_digest("previous"), image_digest("current")
    for digest, tag in ((previous_digest, "previous"), (pushed_digest, "latest")):
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": digest},
            "layers": [],
        })
        ecr.put_image(repositoryName=REPOSITORY, imageManifest=manifest, imageTag=tag, imageDigest=digest)

    logs.create_log_group(logGroupName=LOG_GROUP)

    # The owner, then a pool of participants: overlapping runs each join a different one.
    accounts = {"owner": {"username": "smoke-owner", "password": secrets.token_urlsafe(18)}}
    for number in range(1, participant_pool(desired_count) + 1):
        key = "participant" if number == 1 else f"participant_{number}"
        suffix = "" if number == 1 else f"-{number}"
        accounts[key] = {"username": f"smoke-participant{suffix}", "password": secrets.token_urlsafe(18)}
    secret_arns = {}
    for name, value in (
        ("DATABASE_URL", "sqlite:///shared/civicforge.db"),
        ("CIVICFORGE_SECRET_KEY", secret_key),
    ):
        secret_arns[name] = sm.create_secret(Name=f"{SECRET_PREFIX}/{name}", SecretString=value)["ARN"]
    pool = [account for key, account in accounts.items() if key.startswith("participant_")]
    smoke_secret = {"owner": accounts["owner"], "participant": accounts["participant"], "participants": pool}
    sm.create_secret(Name=SMOKE_SECRET, SecretString=json.dumps(smoke_secret))

    ecs.create_cluster(clusterName=CLUSTER)
    task_definitions = []
    for release, curl, start_period in (("previous", False, True), ("latest", curl_health_check, not no_start_period)):
        container = {
            "name": CONTAINER,
            "image": f"{repository_uri}:{release}",
            "essential": True,
            "memory": CONTAINER_MEMORY_MIB,
            "portMappings": [{"containerPort": PORT, "hostPort": PORT, "protocol": "tcp"}],
            "environment": [{"name": "TOKEN_EXPIRY_HOURS", "value": "24"}],
            "secrets": [{"name": name, "valueFrom": arn} for name, arn in secret_arns.items()],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": LOG_GROUP,
                    "awslogs-region": REGION,
                    "awslogs-stream-prefix": LOG_PREFIX,
                },
            },
            "healthCheck": health_check(health_check_path, curl=curl, start_period=start_period),
        }
        registered = ecs.register_task_definition(
            family=FAMILY,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            executionRoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/civicforge-task-execution-role",
            containerDefinitions=[container],
            runtimePlatform={"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        )
        task_definitions.append(registered["taskDefinition"]["taskDefinitionArn"])

    ecs.create_service(
        cluster=CLUSTER,
        serviceName=SERVICE,
        taskDefinition=task_definitions[1],
        desiredCount=desired_count,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": [subnet_id], "securityGroups": [sg_id], "assignPublicIp": "ENABLED"}
        },
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}},
    )
    return Seeded(
        previous_task_definition=task_definitions[0],
        current_task_definition=task_definitions[1],
        subnet_id=subnet_id,
        security_group_id=sg_id,
        repository_uri=repository_uri,
        pushed_digest=pushed_digest,
        previous_digest=previous_digest,
        smoke_accounts=accounts,
        secret_key=secret_key,
        desired_count=desired_count,
    )
