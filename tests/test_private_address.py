"""The stage's private addresses: each task's ENI has a loopback private IP (127.1.0.N) it listens on.

moto invents a random 10.x private IP, where the stage must never send traffic; the
stage replaces it so ``--address private`` (a runner inside the VPC) is testable end
to end, on loopback only.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from stage import Stage, StageError, StageOptions
from stage.seed import PORT
from stage.task_network import AddressPool
from stage.seed import CLUSTER
from tests.conftest import StagePlan, on_shared_stage
from tests.smoke_runs import run_smoke

PRIVATE_NETWORK = ipaddress.ip_network("127.1.0.0/24")
PUBLIC_NETWORK = ipaddress.ip_network("127.0.0.0/24")
STAGE_ONLY = ("-k", "deployment or health")  # the checks that need no smoke account
ROOT = Path(__file__).resolve().parent.parent


def running_tasks(stage: Stage) -> list[dict[str, Any]]:
    ecs = stage.client("ecs")
    arns = ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"]
    return ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"] if arns else []


def attachment(task: dict[str, Any]) -> dict[str, str]:
    return {d["name"]: d["value"] for d in task["attachments"][0]["details"]}


def interface(stage: Stage, eni_id: str) -> dict[str, Any]:
    return stage.client("ec2").describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]


def in_network(address: str, network: ipaddress.IPv4Network) -> bool:
    return ipaddress.ip_address(address) in network


@on_shared_stage(StagePlan("healthy"))
def test_each_task_has_its_own_loopback_private_ip_on_its_eni_and_in_its_attachment(shared_stage: Stage) -> None:
    stage = shared_stage
    running = running_tasks(stage)
    assert len(running) == 2
    private = {}
    for task in running:
        details = attachment(task)
        eni = interface(stage, details["networkInterfaceId"])
        assert in_network(eni["PrivateIpAddress"], PRIVATE_NETWORK), eni["PrivateIpAddress"]
        assert details["privateIPv4Address"] == eni["PrivateIpAddress"]
        assert [a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"]] == [eni["PrivateIpAddress"]]
        assert details["privateDnsName"] == eni["PrivateDnsName"] == eni["PrivateIpAddresses"][0]["PrivateDnsName"]
        assert in_network(eni["Association"]["PublicIp"], PUBLIC_NETWORK)
        private[task["taskArn"].rsplit("/", 1)[1]] = eni["PrivateIpAddress"]
    assert len(set(private.values())) == 2, private
    assert private == stage.task_private_ips()


@on_shared_stage(StagePlan("healthy"))
def test_the_stand_in_answers_on_both_its_private_and_its_public_address(shared_stage: Stage) -> None:
    stage = shared_stage
    private, public = stage.task_private_ips(), stage.task_ips()
    assert set(private) == set(public) and len(private) == 2
    for task_id in private:
        for address in (private[task_id], public[task_id]):
            answer = httpx.get(f"http://{address}:{PORT}/health", timeout=5)
            assert answer.json() == {"status": "healthy", "database": "connected"}, (task_id, address)


def test_replaced_tasks_get_new_private_addresses(stage_factory: Any) -> None:
    stage = stage_factory("rolling", rolling_delay_s=math.inf)  # held: a delay races the read on a loaded runner
    old = stage.task_private_ips()
    stage.begin_roll_out()
    assert stage.wait_until(lambda: stage.stable_at is not None, 120)
    new = stage.task_private_ips()
    assert len(new) == 2 and not set(old) & set(new)
    assert not set(old.values()) & set(new.values()), (old, new)
    assert all(in_network(address, PRIVATE_NETWORK) for address in new.values())


def test_address_pool_for_private_addresses_skips_one_whose_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stage.scheduler.random.randrange", lambda *_: 0)  # candidates from 127.1.0.2 on
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.1.0.2", 0))
        busy.listen()
        port = busy.getsockname()[1]
        pool = AddressPool(port, "127.1.0")
        assert [pool.take(), pool.take()] == ["127.1.0.3", "127.1.0.4"]


# A pool in another process (an xdist worker's stage) that hands out 127.1.0.2 and keeps it.
OTHER_PROCESS_POOL = """
import random, sys
random.randrange = lambda *_: 0
from stage.task_network import AddressPool
pool = AddressPool(int(sys.argv[1]), "127.1.0")
print(pool.take(), flush=True)
sys.stdin.read()
"""


def test_a_pool_skips_an_address_another_process_took_before_its_task_bound_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stage.task_network.random.randrange", lambda *_: 0)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.1.0.2", 0))
        port = probe.getsockname()[1]  # a port nothing listens on once the probe is closed
    other = subprocess.Popen([sys.executable, "-c", OTHER_PROCESS_POOL, str(port)], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "127.1.0.2"
        # Nothing is bound to 127.1.0.2:port: only the other process's claim keeps this pool off it.
        assert AddressPool(port, "127.1.0").take() == "127.1.0.3"
    finally:
        other.communicate(timeout=30)  # stdin closed: the other process ends and its claim with it
    assert AddressPool(port, "127.1.0").take() == "127.1.0.2"


def test_an_address_a_stopped_task_left_is_not_another_stages_until_its_quarantine_ends(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A request still aimed at the stopped task must meet nothing, not another stage's task on its address
    # (seen under load: a crashed task's checks passed against an xdist neighbour's task).
    monkeypatch.setattr("stage.task_network.random.randrange", lambda *_: 0)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.1.0.2", 0))
        port = probe.getsockname()[1]  # a port nothing listens on once the probe is closed
    stopped_tasks_pool, neighbour = AddressPool(port, "127.1.0"), AddressPool(port, "127.1.0")
    assert stopped_tasks_pool.take() == "127.1.0.2"
    stopped_tasks_pool.release("127.1.0.2")
    assert neighbour.take() == "127.1.0.3"  # .2 is free of listeners, yet still the stopped task's
    monkeypatch.setattr("stage.task_network.QUARANTINE_S", 0.0)
    assert stopped_tasks_pool.take() == "127.1.0.4"  # its next task; and the quarantine of .2 ends
    assert AddressPool(port, "127.1.0").take() == "127.1.0.2"
    for pool in (stopped_tasks_pool, neighbour):
        pool.close()


def test_an_app_command_that_binds_only_private_host_is_healthy_and_answers_there(stage_factory: Any) -> None:
    command = f"{sys.executable} -m http.server --bind {{private_host}} {{port}}"
    stage = stage_factory("healthy", app_cmd=command, health_check_path="/")
    assert [t["healthStatus"] for t in running_tasks(stage)] == ["HEALTHY", "HEALTHY"]
    task_id, private = next(iter(stage.task_private_ips().items()))
    assert httpx.get(f"http://{private}:{PORT}/", timeout=5).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{stage.task_ips()[task_id]}:{PORT}/", timeout=5)


@pytest.mark.parametrize(
    ("app_cmd", "message"),
    [
        ("myapp --bind {private_ip}:{port}",
         "--app-cmd uses {private_ip}; the stage fills only {host}, {private_host}, {port}"),
        ("myapp --bind {host:{port}", "--app-cmd is not a valid template"),
    ],
)
def test_an_app_command_with_a_placeholder_the_stage_does_not_fill_is_refused_before_start(
    app_cmd: str, message: str
) -> None:
    with pytest.raises(StageError) as error:
        Stage(StageOptions(app_cmd=app_cmd))
    assert str(error.value).startswith(message)


def test_the_stand_in_listening_on_two_hosts_stops_at_once_when_one_is_taken(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.1.0.254", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "stage.standin", "--host", "127.0.0.254", "--host", "127.1.0.254",
             "--port", str(port), "--db", str(tmp_path / "standin.db")],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("ERROR:    [Errno 98]"), result.stderr


@on_shared_stage(StagePlan("healthy"))
def test_smoke_with_address_private_passes_against_the_tasks_private_ips(shared_stage: Stage, tmp_path: Path) -> None:
    stage = shared_stage
    run = run_smoke(stage.env, tmp_path, "--address", "private", *STAGE_ONLY)
    assert run.exit_code == 0, run.output
    assert run.verdict["verdict"] == "pass"
    tested = {t["task_id"]: t["ip"] for t in run.verdict["tasks"]}
    assert tested == stage.task_private_ips()
    assert all(in_network(address, PRIVATE_NETWORK) for address in tested.values()), tested
