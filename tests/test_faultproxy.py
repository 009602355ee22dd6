"""The fault proxy (stage/faultproxy.py): each kind of fault does what it says, is counted, and repeats with its seed.

Against a stdlib HTTP/1.1 server on loopback; the AWS side with real boto3 clients (retries off, so
one injected answer is one error). The last tests put it in front of a stage.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import botocore.config
import botocore.exceptions
import httpx
import pytest

from stage import Stage
from stage.faultproxy import AWS, TASKS, AwsNoise, FaultProxy, NetworkFaults, TaskNoise
from tests.conftest import StageFactory
from tests.loopback import serving


class KeepAliveHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._answer(b"ok")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length", "0"))
        self._answer(b"posted " + self.rfile.read(length))

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@contextmanager
def proxied(faults: NetworkFaults, side: str = TASKS) -> Iterator[tuple[FaultProxy, str]]:
    """A proxy in front of a keep-alive server; yields it and the URL to ask."""
    with serving(KeepAliveHandler) as upstream:
        host, port = upstream.removeprefix("http://").split(":")
        proxy = FaultProxy(faults)
        bound = proxy.open("127.0.0.1", 0, upstream=(host, int(port)), side=side)  # type: ignore[arg-type]
        try:
            yield proxy, f"http://127.0.0.1:{bound[1]}"
        finally:
            proxy.stop()


def outcome(client: httpx.Client, url: str, method: str = "GET") -> str:
    try:
        return str(client.request(method, url, content=b"x" if method == "POST" else None).status_code)
    except httpx.TransportError as error:
        return type(error).__name__


def wait_for(condition: object, timeout_s: float = 5.0) -> bool:
    """Poll ``condition()`` until it holds, bounded (the proxy's threads count in their own time)."""
    done = threading.Event()
    for _ in range(int(timeout_s / 0.02)):
        if condition():  # type: ignore[operator]
            return True
        done.wait(0.02)
    return bool(condition())  # type: ignore[operator]


def test_a_reset_reaches_the_client_as_connection_reset_for_the_methods_named_only() -> None:
    with proxied(NetworkFaults(tasks=TaskNoise(reset=1.0, methods=frozenset({"GET"})))) as (proxy, url):
        with httpx.Client() as client:
            assert outcome(client, url) == "ReadError"
            assert outcome(client, url, "POST") == "200"
        assert proxy.counts() == {"tasks.requests": 2, "tasks.reset": 1}


def test_a_stalled_request_outlasts_the_clients_read_timeout_and_is_counted() -> None:
    with proxied(NetworkFaults(tasks=TaskNoise(stall=1.0, stall_s=30.0))) as (proxy, url):
        with httpx.Client(timeout=httpx.Timeout(0.5)) as client:
            assert outcome(client, url) == "ReadTimeout"
        assert wait_for(lambda: proxy.counts().get("tasks.stall") == 1)


def test_faults_fall_on_the_same_requests_for_the_same_seed_and_elsewhere_for_another() -> None:
    def pattern(seed: int) -> list[str]:
        with proxied(NetworkFaults(tasks=TaskNoise(reset=0.3), seed=seed)) as (proxy, url):
            with httpx.Client() as client:
                seen = [outcome(client, url) for _ in range(40)]
            assert proxy.counts()["tasks.reset"] == seen.count("ReadError")
        return seen

    first = pattern(7)
    assert 0 < first.count("ReadError") < 40
    assert pattern(7) == first
    assert pattern(8) != first


def test_a_warming_target_answers_503_for_its_first_requests_and_again_when_rearmed() -> None:
    with proxied(NetworkFaults(tasks=TaskNoise(warmup_503_requests=2))) as (proxy, url):
        with httpx.Client() as client:
            assert [outcome(client, url) for _ in range(3)] == ["503", "503", "200"]
            proxy.rearm_warmup()
            assert [outcome(client, url) for _ in range(2)] == ["503", "503"]
        assert proxy.counts()["tasks.warmup_503"] == 4


def test_an_idle_keep_alive_connection_is_closed_and_the_next_request_opens_a_new_one() -> None:
    with proxied(NetworkFaults(tasks=TaskNoise(idle_close_s=0.2))) as (proxy, url):
        with httpx.Client() as client:
            assert outcome(client, url) == "200"
            assert wait_for(lambda: proxy.counts().get("tasks.idle_close") == 1)
            assert outcome(client, url) == "200"  # the client saw the FIN: a new connection


def test_a_request_racing_the_servers_idle_timeout_gets_no_answer() -> None:
    # idle_race_s=0: every reused connection lost the race; a fresh one is served.
    with proxied(NetworkFaults(tasks=TaskNoise(idle_race_s=0.0))) as (proxy, url):
        with httpx.Client() as client:
            assert outcome(client, url) == "200"
            assert outcome(client, url) in ("ReadError", "RemoteProtocolError")
            assert outcome(client, url) == "200"
        assert proxy.counts()["tasks.idle_race"] == 1


def aws_client(service: str, endpoint: str) -> object:
    config = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1})
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=config)


def error_of(call: object) -> str:
    try:
        call()  # type: ignore[operator]
    except botocore.exceptions.ClientError as error:
        return f"{error.response['ResponseMetadata']['HTTPStatusCode']} {error.response['Error']['Code']}"
    except botocore.exceptions.BotoCoreError as error:
        return type(error).__name__
    return "answered"


@pytest.mark.parametrize(("noise", "ecs_error", "ec2_error"), [
    (AwsNoise(throttle=1.0), "400 ThrottlingException", "503 RequestLimitExceeded"),
    (AwsNoise(reset=1.0), "ConnectionClosedError", "ConnectionClosedError"),
], ids=["throttle", "reset"])
def test_aws_faults_reach_boto3_as_aws_words_them(noise: AwsNoise, ecs_error: str, ec2_error: str) -> None:
    with proxied(NetworkFaults(aws=noise), side=AWS) as (proxy, url):
        assert error_of(lambda: aws_client("ecs", url).list_clusters()) == ecs_error
        assert error_of(lambda: aws_client("ec2", url).describe_addresses()) == ec2_error
        assert sum(proxy.counts().get(f"aws.{kind}", 0) for kind in ("throttle", "reset")) == 2


def test_aws_server_errors_are_500s_and_503s() -> None:
    with proxied(NetworkFaults(aws=AwsNoise(server_error=1.0)), side=AWS) as (proxy, url):
        errors = {error_of(lambda: aws_client("ecs", url).list_clusters()) for _ in range(12)}
        assert errors == {"500 InternalFailure", "503 ServiceUnavailable"}
        assert proxy.counts()["aws.500"] + proxy.counts()["aws.503"] == 12


def test_behind_the_proxy_every_task_address_and_the_aws_endpoint_go_through_it(stage_factory: StageFactory) -> None:
    stage: Stage = stage_factory("healthy", network_faults=NetworkFaults(), start_period_scale=0.5)
    proxy = stage.network
    addresses = [*stage.task_ips().values(), *stage.task_private_ips().values()]
    with httpx.Client() as client:
        statuses = [client.get(f"http://{address}:{stage.port}/health").status_code for address in addresses]
    assert statuses == [200] * 4
    assert proxy.counts()["tasks.requests"] == 4

    ecs = aws_client("ecs", stage.env["AWS_ENDPOINT_URL"])
    assert ecs.describe_services(cluster=stage.env["ECS_CLUSTER"], services=[stage.env["ECS_SERVICE"]])["services"]
    assert proxy.counts()["aws.requests"] == 1
    assert stage.env["AWS_ENDPOINT_URL"] != stage.endpoint


def test_a_replaced_task_is_reached_through_the_proxy_at_its_new_address(stage_factory: StageFactory) -> None:
    stage: Stage = stage_factory("healthy", network_faults=NetworkFaults(), start_period_scale=0.5)
    old = stage.scheduler.live_tasks()[0]
    old.process.kill()  # type: ignore[union-attr]
    assert stage.wait_until(lambda: len(stage.task_ips()) == 2 and old.id not in stage.task_ips()
                            and all(t.health == "HEALTHY" for t in stage.scheduler.live_tasks()), 30)
    with httpx.Client() as client:
        statuses = [client.get(f"http://{ip}:{stage.port}/health").status_code for ip in stage.task_ips().values()]
    assert statuses == [200, 200]
