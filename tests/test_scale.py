"""Every task checked at once, with per-task reporting intact, from 2 to 24 tasks.

- 24 tasks (``--tasks 24``): every task gets every check and its verdict rows; the one
  faulty task (index 1 of ``one_bad_task``) is the one named.
- One table: the same verdict, exit code, per-task check outcomes and categories come
  out serially (``--serial``), with the default lanes, and under ``-n 2``, healthy and faulty.
- A lane that dies is a harness error (exit 6) and its unfinished tests are error rows.
- The pure lane plan, and the wait's AWS calls against moto with 150 tasks
  (describe_tasks in batches of 100, one ENI lookup for all of them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from ecs_verdict.aws import make_clients
from ecs_verdict.discovery import DESCRIBE_TASKS_BATCH, ServiceObserver, lookup_addresses
from ecs_verdict.lanes import LanePlan, decode, encode, plan_lanes
from stage import Stage
from tests.conftest import StagePlan, on_shared_stage
from tests.smoke_runs import SmokeRun, run_smoke, with_plugin

CHECKS_PER_TASK = {
    "test_health_answers_healthy", "test_single_use_invite_admits_the_participant_once", "test_board_has_an_owner",
    "test_owner_account_is_an_owner", "test_owner_can_invite_and_manage_members",
    "test_participant_cannot_create_invites", "test_participant_cannot_remove_members",
    "test_requests_without_credentials_are_refused", "test_removing_a_non_member_answers_404",
}
INVITE_CHECK = "test_single_use_invite_admits_the_participant_once"
MODES: dict[str, tuple[str, ...]] = {"serial": ("--serial",), "concurrent": (), "xdist -n 2": ("-n", "2")}


def faulty_task_ids(stage: Stage, fault: str) -> set[str]:
    """The stage's own record of which running tasks carry ``fault``."""
    return {task.id for task in stage.scheduler.live_tasks() if fault in task.plan.faults}


def test_24_tasks_all_get_their_checks_and_the_faulty_one_is_named(stage_factory: Any, tmp_path: Path) -> None:
    stage = stage_factory("one_bad_task", tasks=24)
    bad = faulty_task_ids(stage, "urlsafe")
    assert len(bad) == 1  # index 1 of 24, as with 2

    run = run_smoke(stage.env, tmp_path / "report")

    assert run.exit_code == 1, run.output[-3000:]
    verdict = run.verdict
    task_ids = {task["task_id"] for task in verdict["tasks"]}
    assert task_ids == set(stage.task_ips())
    assert len(task_ids) == 24
    for task_id in task_ids:
        assert {name for name, task in run.outcomes() if task == task_id} == CHECKS_PER_TASK, task_id
    assert set(run.failing()) == {(INVITE_CHECK, bad_id) for bad_id in bad}
    (diagnosis,) = run.diagnoses("code_error")
    assert diagnosis["task_id"] in bad
    assert overlapping_tasks(run), "no two tasks' tests ran at the same time"


def overlapping_tasks(run: SmokeRun) -> bool:
    """Whether a test of one task ran while a test of another task was running (Allure start/stop)."""
    spans = []
    for path in (run.report_dir / "allure-results").glob("*-result.json"):
        result = json.loads(path.read_text())
        task = result["name"].rpartition("[")[2].rstrip("]")
        spans.append((result["start"], result["stop"], task))
    spans.sort()
    return any(later_start < stop and later_task != task
               for index, (_, stop, task) in enumerate(spans)
               for later_start, _, later_task in spans[index + 1:])


def outcome_summary(run: SmokeRun) -> tuple[Any, ...]:
    verdict = run.verdict
    return (verdict["verdict"], run.exit_code, sorted(run.outcomes().items(), key=str), sorted(run.categories()))


@on_shared_stage(StagePlan("healthy"), StagePlan("one_bad_task"))
def test_the_same_outcomes_serial_concurrent_and_under_xdist(shared_stage: Stage, tmp_path: Path) -> None:
    runs = {mode: run_smoke(shared_stage.env, tmp_path / mode.replace(" ", "_"), *args)
            for mode, args in MODES.items()}

    seen = {mode: outcome_summary(run) for mode, run in runs.items()}
    assert seen["concurrent"] == seen["serial"]
    assert seen["xdist -n 2"] == seen["serial"]
    healthy = not faulty_task_ids(shared_stage, "urlsafe")
    assert runs["serial"].exit_code == (0 if healthy else 1), runs["serial"].output[-3000:]
    assert len(runs["serial"].outcomes()) == 1 + len(CHECKS_PER_TASK) * 2
    assert overlapping_tasks(runs["concurrent"])
    assert not overlapping_tasks(runs["serial"])


LANE_DIES = '''
import os

def pytest_runtest_call(item):
    if item.name.startswith("test_health_answers_healthy") and item.name.endswith("[{short}]"):
        os._exit(3)
'''


def test_a_lane_that_dies_is_a_harness_error_with_its_tests_as_errors(healthy_stage: Stage, tmp_path: Path) -> None:
    victim = sorted(healthy_stage.task_ips())[1]
    env = with_plugin(tmp_path, "lane_dies", LANE_DIES.format(short=victim[:8]), healthy_stage.env)

    run = run_smoke(env, tmp_path / "report", "-p", "lane_dies")

    assert run.exit_code == 6, run.output[-3000:]
    assert f"harness error: RuntimeError: the lane checking task {victim[:8]} ended with exit status 3" in run.output
    rows = {name: outcome for (name, task), outcome in run.outcomes().items() if task == victim}
    assert rows["test_health_answers_healthy"] == "error"
    others = {outcome for (name, task), outcome in run.outcomes().items() if task not in (victim, None)}
    assert others == {"passed"}


# -- the pure lane plan -------------------------------------------------------------------------------


def test_a_lane_per_task_in_collection_order_and_the_taskless_tests_first() -> None:
    keys = [None, "a", "b", "c", "a", "b", "c"]
    assert plan_lanes(keys) == LanePlan(first=(0,), lanes=((1, 4), (2, 5), (3, 6)))


def test_more_tasks_than_lanes_share_lanes_whole() -> None:
    plan = plan_lanes(["a", "b", "c", "a", "b", "c"], max_lanes=2)
    assert plan.lanes == ((0, 2, 3, 5), (1, 4))


def test_one_task_is_not_concurrent() -> None:
    assert not plan_lanes([None, "a", "a"]).concurrent
    with pytest.raises(ValueError, match="at least 1"):
        plan_lanes(["a"], max_lanes=0)


def test_lane_messages_round_trip_and_garbage_is_named() -> None:
    assert decode(encode("report", data={"nodeid": "x"}).strip()) == {"kind": "report", "data": {"nodeid": "x"}}
    assert decode(b"Traceback (most")["kind"] == "garbled"


# -- the wait's AWS calls with many tasks (real boto3 against moto) -----------------------------------


MANY_TASKS = 150


@pytest.fixture
def moto_service(aws_env: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A moto server holding a Fargate service's ``MANY_TASKS`` tasks (each with its own ENI)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="testing",
                                    aws_secret_access_key="testing")
    ec2, ecs = (session.client(name, endpoint_url=endpoint) for name in ("ec2", "ecs"))
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/16")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="board", Description="board", VpcId=vpc)["GroupId"]
    ecs.create_cluster(clusterName="c")
    definition = ecs.register_task_definition(
        family="board", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{"name": "app", "image": "board:1", "memory": 512, "essential": True,
                               "portMappings": [{"containerPort": 8000}]}])["taskDefinition"]["taskDefinitionArn"]
    network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}
    ecs.create_service(cluster="c", serviceName="board", taskDefinition=definition, desiredCount=MANY_TASKS,
                       launchType="FARGATE", networkConfiguration=network)
    for _ in range(MANY_TASKS // 10):
        ecs.run_task(cluster="c", taskDefinition=definition, count=10, launchType="FARGATE", group="service:board",
                     networkConfiguration=network)
    try:
        yield {"endpoint": endpoint, "ecs": ecs}
    finally:
        server.stop()


def test_a_poll_of_150_tasks_describes_them_in_batches_of_100(moto_service: dict[str, Any]) -> None:
    clients = make_clients("us-east-1", moto_service["endpoint"])
    observer = ServiceObserver(clients, "c", "board")

    observation = observer.poll()

    assert len(observation.live_tasks) == MANY_TASKS
    calls = clients.calls.by_operation()
    assert calls["ecs.DescribeTasks"] == math.ceil(MANY_TASKS / DESCRIBE_TASKS_BATCH) == 2
    assert calls["ecs.DescribeServices"] == 1
    # RUNNING, then STOPPED (first look), each through botocore's paginator (moto answers one page whatever
    # maxResults says, so the pages themselves are botocore's to follow).
    assert calls["ecs.ListTasks"] == 2

    addresses = lookup_addresses(clients, [task.eni_id for task in observation.live_tasks if task.eni_id])
    assert len(addresses) == MANY_TASKS
    assert clients.calls.by_operation()["ec2.DescribeNetworkInterfaces"] == 1
