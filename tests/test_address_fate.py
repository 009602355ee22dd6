"""A task seen without its address is looked at until its fate is known, however slow the machine.

ECS releases a stopping task's public IP (or deletes its ENI) while describe_tasks can
still show it RUNNING; on a loaded runner the wait's address lookup lands in that gap more
often. Here ECS's moves are scripted against the wait's EC2 address lookups (a botocore
hook on the wait's own client fires them just before the Nth lookup), so each case plays
out the same way on a quiet or a loaded machine: no sleep, no timing.
"""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest

from ecs_verdict.aws import AwsClients, make_clients
from ecs_verdict.errors import CouldNotVerify, DeployFailed
from ecs_verdict.stability import wait_until_stable
from stage import Stage, moto_quirks
from stage.scheduler import HEALTH_CHECK_FAILED
from stage.seed import PORT, REGION
from stage.task_network import AddressPool
from tests.conftest import StagePlan, on_shared_stage

HEALTHY = StagePlan("healthy")
CRASHED = "Essential container in task exited"
# Not a network any stage hands out (127.0.0.N public, 127.1.0.N private): these tasks are the test's own.
TEST_NETWORK = "127.3.0"


@dataclass(frozen=True, slots=True)
class OwnTask:
    """A task of the test's own service, with the Elastic IP the test gave its ENI."""

    arn: str
    eni_id: str
    allocation_id: str
    ip: str

    @property
    def task_id(self) -> str:
        return self.arn.rsplit("/", 1)[1]


@dataclass(slots=True)
class OwnService:
    """A service of the test's own in the stage's moto, whose tasks the test moves by hand (ECS's part)."""

    stage: Stage
    addresses: AddressPool
    cluster: str = ""
    service: str = ""
    task_definition: str = ""
    tasks: list[OwnTask] = field(default_factory=list)

    def create(self, *, desired: int, health_check: bool, assign_public_ip: str = "ENABLED") -> None:
        ecs = self.stage.client("ecs")
        suffix = uuid.uuid4().hex[:8]
        self.cluster, self.service = f"fate-{suffix}", f"svc-{suffix}"
        ecs.create_cluster(clusterName=self.cluster)
        container: dict[str, Any] = {"name": "app", "image": "app:1", "memory": 512,
                                     "portMappings": [{"containerPort": PORT}]}  # fmt: skip
        if health_check:
            container["healthCheck"] = {"command": ["CMD-SHELL", "true"]}
        self.task_definition = ecs.register_task_definition(
            family=f"fam-{suffix}", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256",
            memory="512", containerDefinitions=[container],
        )["taskDefinition"]["taskDefinitionArn"]  # fmt: skip
        ecs.create_service(cluster=self.cluster, serviceName=self.service, taskDefinition=self.task_definition,
                           desiredCount=desired, launchType="FARGATE", networkConfiguration=self._network(
                               assign_public_ip))  # fmt: skip

    def _network(self, assign_public_ip: str) -> dict[str, Any]:
        seeded = self.stage.seeded
        return {"awsvpcConfiguration": {"subnets": [seeded.subnet_id], "securityGroups": [seeded.security_group_id],
                                        "assignPublicIp": assign_public_ip}}  # fmt: skip

    def start_task(self, *, health: str) -> OwnTask:
        """A task RUNNING with an Elastic IP on its ENI, as ECS shows one that booted."""
        ecs, ec2 = self.stage.client("ecs"), self.stage.client("ec2")
        primary = ecs.describe_services(cluster=self.cluster, services=[self.service])["services"][0]["deployments"][0]
        raw = ecs.run_task(cluster=self.cluster, taskDefinition=self.task_definition, launchType="FARGATE",
                           group=f"service:{self.service}", startedBy=primary["id"],
                           networkConfiguration=self._network("ENABLED"))["tasks"][0]  # fmt: skip
        eni_id = next(d["value"] for d in raw["attachments"][0]["details"] if d["name"] == "networkInterfaceId")
        ip = self.addresses.take()
        allocation_id = ec2.allocate_address(Domain="vpc", Address=ip)["AllocationId"]
        ec2.associate_address(AllocationId=allocation_id, NetworkInterfaceId=eni_id)
        task = moto_quirks.find_task(REGION, self.cluster, raw["taskArn"])
        moto_quirks.set_task_fields(task, last_status="RUNNING", health_status=health, started_at=now())
        moto_quirks.set_container_fields(task, last_status="RUNNING", health_status=health)
        own = OwnTask(raw["taskArn"], eni_id, allocation_id, ip)
        self.tasks.append(own)
        return own

    def settle(self) -> None:
        """ECS's view once its tasks run: the roll-out COMPLETED, every wanted task RUNNING (moto keeps it IN_PROGRESS)."""
        svc = moto_quirks.find_service(REGION, self.cluster, self.service)
        running = len(self.tasks)
        primary = {**svc.deployments[0], "rolloutState": "COMPLETED", "runningCount": running, "pendingCount": 0}
        moto_quirks.publish_service_state(REGION, self.cluster, self.service, deployments=[primary], events=[],
                                          running=running, pending=0, task_definition_arn=self.task_definition)

    def release_address(self, task: OwnTask) -> None:
        """ECS took the task's public IP away; the task is still shown RUNNING."""
        ec2 = self.stage.client("ec2")
        association = ec2.describe_addresses(AllocationIds=[task.allocation_id])["Addresses"][0]["AssociationId"]
        ec2.disassociate_address(AssociationId=association)

    def give_address_back(self, task: OwnTask) -> None:
        self.stage.client("ec2").associate_address(AllocationId=task.allocation_id, NetworkInterfaceId=task.eni_id)

    def stop(self, task: OwnTask, reason: str, *, exit_code: int) -> None:
        """ECS stopped the task (its address released first, as Fargate does while deprovisioning)."""
        if any(a.get("AssociationId") for a in self.stage.client("ec2").describe_addresses(
                AllocationIds=[task.allocation_id])["Addresses"]):  # fmt: skip
            self.release_address(task)
        stamp = now()
        stop_code = "ServiceSchedulerInitiated" if reason == HEALTH_CHECK_FAILED else "EssentialContainerExited"
        ecs_task = moto_quirks.find_task(REGION, self.cluster, task.arn)
        moto_quirks.set_task_fields(ecs_task, last_status="STOPPED", desired_status="STOPPED", stopped_reason=reason,
                                    stop_code=stop_code, stopping_at=stamp, stopped_at=stamp)  # fmt: skip
        moto_quirks.set_container_fields(ecs_task, last_status="STOPPED", exit_code=exit_code)


@dataclass(slots=True)
class EcsScript:
    """ECS's moves, each made just before the wait's Nth EC2 address lookup (what a slow runner shows)."""

    moves: dict[int, Callable[[], None]]
    lookups: int = 0

    def __call__(self, **_: Any) -> None:
        self.lookups += 1
        move = self.moves.get(self.lookups)
        if move is not None:
            move()

    def attach(self, clients: AwsClients) -> None:
        clients.ec2.meta.events.register("before-call.ec2.DescribeNetworkInterfaces", self)


class Health200(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_: Any) -> None:
        pass


@contextmanager
def answering(ip: str) -> Iterator[None]:
    """The task's app: 200 on any GET at ip:PORT (a loopback address the test's pool claimed)."""
    server = http.server.ThreadingHTTPServer((ip, PORT), Health200)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def now() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def own_service(shared_stage: Stage) -> Iterator[OwnService]:
    addresses = AddressPool(PORT, network=TEST_NETWORK)
    try:
        yield OwnService(shared_stage, addresses)
    finally:
        addresses.close()


def clients_for(stage: Stage) -> AwsClients:
    return make_clients(stage.env["AWS_DEFAULT_REGION"], stage.env["AWS_ENDPOINT_URL"])


@on_shared_stage(HEALTHY)
def test_starting_tasks_stopped_while_their_address_is_looked_up_are_named_as_stopping(
        own_service: OwnService, aws_env: Any) -> None:  # fmt: skip
    """The restart loop of a boot longer than startPeriod: ECS stops both tasks as the wait looks their IPs up."""
    own = own_service
    own.create(desired=2, health_check=True)
    first, second = own.start_task(health="UNKNOWN"), own.start_task(health="UNKNOWN")
    script = EcsScript({1: lambda: [own.stop(task, HEALTH_CHECK_FAILED, exit_code=137) for task in (first, second)]})
    clients = clients_for(own.stage)
    script.attach(clients)

    with pytest.raises(DeployFailed, match=r"keep stopping: 2 stopped .*Task failed container health checks") as caught:
        wait_until_stable(clients, cluster=own.cluster, service=own.service, timeout_s=120)

    assert caught.value.kind == "tasks_stopping"
    assert set(caught.value.details["stopped_tasks"]) == {first.task_id, second.task_id}


@on_shared_stage(HEALTHY)
def test_a_ready_task_still_running_without_its_address_is_looked_at_again_until_it_stops(
        own_service: OwnService, aws_env: Any) -> None:  # fmt: skip
    """Two fresh looks show the task RUNNING without its IP; the third shows it stopped: its reason decides."""
    own = own_service
    own.create(desired=2, health_check=False)
    first, second = own.start_task(health="UNKNOWN"), own.start_task(health="UNKNOWN")
    script = EcsScript({
        1: lambda: own.release_address(first),
        2: lambda: [own.stop(task, CRASHED, exit_code=1) for task in (first, second)],
    })  # fmt: skip
    clients = clients_for(own.stage)
    script.attach(clients)

    with pytest.raises(DeployFailed, match=r"keep stopping: 2 stopped .*Essential container in task exited") as caught:
        wait_until_stable(clients, cluster=own.cluster, service=own.service, timeout_s=120)

    assert caught.value.kind == "tasks_stopping"
    assert any("(exit code 1)" in line for line in caught.value.evidence)
    assert script.lookups == 2, "the second look at the addressless task is the one that saw it stopping"


@on_shared_stage(HEALTHY)
def test_a_task_whose_address_comes_back_on_a_later_look_is_tested(own_service: OwnService, aws_env: Any) -> None:
    """RUNNING without its IP on two fresh looks, with it on the third: a target, not could-not-verify."""
    own = own_service
    own.create(desired=2, health_check=False)
    first, second = own.start_task(health="UNKNOWN"), own.start_task(health="UNKNOWN")
    own.settle()
    script = EcsScript({1: lambda: own.release_address(first), 3: lambda: own.give_address_back(first)})
    clients = clients_for(own.stage)
    script.attach(clients)

    with ExitStack() as apps:
        for task in (first, second):
            apps.enter_context(answering(task.ip))
        result = wait_until_stable(clients, cluster=own.cluster, service=own.service, timeout_s=120)

    assert sorted(target.ip for target in result.deployment.targets) == sorted([first.ip, second.ip])
    assert script.lookups == 3


@on_shared_stage(HEALTHY)
def test_only_a_task_running_without_its_address_until_the_deadline_is_could_not_verify(
        own_service: OwnService, aws_env: Any) -> None:  # fmt: skip
    own = own_service
    own.create(desired=1, health_check=False)
    task = own.start_task(health="UNKNOWN")
    own.settle()
    script = EcsScript({1: lambda: own.release_address(task)})
    clients = clients_for(own.stage)
    script.attach(clients)

    with pytest.raises(CouldNotVerify, match=r"has no public IP .*use --address private.*deadline") as caught:
        wait_until_stable(clients, cluster=own.cluster, service=own.service, timeout_s=4)

    assert caught.value.kind == "no_public_ip"
    assert caught.value.details["task_id"] == task.task_id
    assert caught.value.details["looks"] == script.lookups >= 2, "one look is never the answer"


@on_shared_stage(HEALTHY)
def test_a_service_that_assigns_no_public_ip_is_named_at_once(own_service: OwnService, aws_env: Any) -> None:
    """assignPublicIp DISABLED is a setting, not a moment: no look will bring a public IP, so none is waited for."""
    own = own_service
    own.create(desired=1, health_check=False, assign_public_ip="DISABLED")
    task = own.start_task(health="UNKNOWN")
    own.release_address(task)  # as ECS runs it: no public IP ever
    clients = clients_for(own.stage)

    with pytest.raises(CouldNotVerify, match=r"has no public IP .*assignPublicIp is DISABLED.*--address private") as caught:
        wait_until_stable(clients, cluster=own.cluster, service=own.service, timeout_s=120)

    assert caught.value.kind == "no_public_ip"
    assert clients.calls.by_operation()["ec2.DescribeNetworkInterfaces"] == 1
