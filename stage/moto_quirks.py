"""Every place the stage works around moto, in one module.

moto simulates the AWS APIs but not the ECS scheduler (see shared/moto-notes.md):
services start no tasks, deployments are frozen, tasks advance a status on
every describe call, there are no public IPs, private IPs are random 10.x
addresses (never to be sent to) and there is no health. The stage plays
the scheduler by writing the fields real ECS would show straight onto moto's
backend objects, which moto then serialises by their snake_case names.
Anything that depends on moto's internals lives here so a moto upgrade is
checked in one place.
"""

from __future__ import annotations

import io
import json
import urllib.parse
import threading
import urllib.request
from collections import Counter
from typing import Any, Callable, Protocol

from moto import backends
from moto.ec2.utils import generate_dns_from_ip
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

ACCOUNT_ID = "123456789012"

# A WSGI middleware may answer an operation itself (throttling, 5xx) instead of moto.
OperationFault = Callable[[str], "tuple[int, dict[str, Any]] | None"]


class OperationHook(Protocol):
    """Answers JSON-protocol operations moto lacks, or amends moto's answer to one it has."""

    def answer(self, operation: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """(HTTP status, JSON body) for an operation the hook answers itself; None: moto answers."""

    def rewrite(self, operation: str, response: dict[str, Any]) -> dict[str, Any] | None:
        """moto's JSON answer amended (None: unchanged); called for every answered JSON operation."""


class QueryHook(Protocol):
    """Answers a query-protocol (XML) operation moto gets wrong, e.g. ``elbv2.DescribeTargetHealth``."""

    def answer_query(self, operation: str, params: dict[str, str]) -> tuple[int, bytes] | None:
        """(HTTP status, XML body) for an operation the hook answers itself; None: moto answers."""


class HookChain:
    """Several hooks on one server: the first that answers an operation wins; every rewrite applies in turn."""

    def __init__(self, *hooks: OperationHook) -> None:
        self.hooks = hooks

    def answer(self, operation: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        for hook in self.hooks:
            answer = hook.answer(operation, request)
            if answer is not None:
                return answer
        return None

    def rewrite(self, operation: str, response: dict[str, Any]) -> dict[str, Any] | None:
        changed = None
        for hook in self.hooks:
            rewritten = hook.rewrite(operation, response if changed is None else changed)
            changed = rewritten if rewritten is not None else changed
        return changed


class MotoServer:
    """moto's WSGI app on a loopback port, in a thread of this process.

    Like ``moto.server.ThreadedMotoServer`` but with two things the stage needs:
    a count of AWS calls by operation (for bench/ and the call-budget tests) and an
    optional hook that fails chosen operations (throttling as real AWS does it).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = DomainDispatcherApplication(create_backend_app)
        self._server: BaseWSGIServer = make_server(
            host, port, self._middleware, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        self.calls: Counter[str] = Counter()
        self.fault: OperationFault | None = None
        # moto 5.2.5 has no service deployments or revisions (through the server: HTTP 500):
        # stage.deployment_records answers them, and adds currentServiceDeployment to DescribeServices.
        self.hook: OperationHook | None = None
        # moto answers `healthy` for every ELB target: stage.load_balancer answers target health from its probes.
        self.query_hook: QueryHook | None = None
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()
        freeze_task_transitions(self.endpoint)

    def stop(self) -> None:
        try:
            _post(self.endpoint, "/moto-api/state-manager/unset-transition", {"model_name": "ecs::task"})
            _post(self.endpoint, "/moto-api/reset", None)
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)

    def _middleware(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        operation = _operation_of(environ)
        if operation:
            with self._lock:
                self.calls[operation] += 1
            answer = self.fault(operation) if self.fault else None
            if answer is not None:
                return _json_answer(start_response, *answer)
            if self.hook is not None and environ.get("HTTP_X_AMZ_TARGET"):
                return self._hooked(self.hook, operation, environ, start_response)
            if self.query_hook is not None and not environ.get("HTTP_X_AMZ_TARGET"):
                answer_xml = self.query_hook.answer_query(operation, _query_params(environ))
                if answer_xml is not None:
                    return _xml_answer(start_response, *answer_xml)
        return self._app(environ, start_response)

    def _hooked(self, hook: OperationHook, operation: str, environ: dict[str, Any],
                start_response: Callable[..., Any]) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        answer = hook.answer(operation, json.loads(body or b"{}"))
        if answer is not None:
            return _json_answer(start_response, *answer)
        seen: list[Any] = []
        chunks = self._app(environ, lambda status, headers, *_exc_info: seen.append((status, headers)))
        try:
            payload = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        status, headers = seen[0]
        rewritten = hook.rewrite(operation, json.loads(payload)) if status.startswith("200") and payload else None
        if rewritten is not None:
            payload = json.dumps(rewritten).encode()
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(payload))))
        start_response(status, headers)
        return [payload]


def _json_answer(start_response: Callable[..., Any], status: int, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body).encode()
    reason = "OK" if status == 200 else "Injected"
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(payload)))],
    )
    return [payload]


def _xml_answer(start_response: Callable[..., Any], status: int, body: bytes) -> list[bytes]:
    start_response(f"{status} OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


def _query_params(environ: dict[str, Any]) -> dict[str, str]:
    """A query-protocol call's form parameters (the body is put back for moto)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return {key: values[0] for key, values in urllib.parse.parse_qs(body.decode(errors="replace")).items()}


# Query-protocol services by their SigV4 signing name, where it differs from the operation prefix used here.
QUERY_SERVICES = {"elasticloadbalancing": "elbv2"}


class _QuietHandler(MotoRequestHandler):
    """moto's handler without a stderr line per request (it drowns the harness's output)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def _operation_of(environ: dict[str, Any]) -> str:
    """'ecs.DescribeServices' for JSON-protocol calls, 'ec2.DescribeAddresses' or 'elbv2.DescribeTargetHealth'
    for query calls (every query call but ELB's is counted under ec2, as before ELB was played)."""
    if environ.get("PATH_INFO", "").startswith("/moto-api"):
        return ""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        prefix, _, action = target.rpartition(".")
        service = {"AmazonEC2ContainerServiceV20141113": "ecs", "AmazonEC2ContainerRegistry_V20150921": "ecr"}.get(
            prefix, prefix.split("_")[0].lower()
        )
        return f"{service}.{action}"
    # Query protocol (EC2): the action is in the form body; read it and put it back.
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    action = urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", ["unknown"])[0]
    scope = environ.get("HTTP_AUTHORIZATION", "").partition("Credential=")[2].split(",")[0].split("/")
    service = QUERY_SERVICES.get(scope[3], "ec2") if len(scope) > 3 else "ec2"
    return f"{service}.{action}"


# The stage's own calls to moto's control API (freeze transitions, reset). A reset of every backend, in a
# process that also runs the scheduler, took over 5 s at load average 30-40 on 2 cores and failed the
# stage's stop; a loopback call that answers returns at once, so the bound only has to be generous.
CONTROL_TIMEOUT_S = 120.0


def _post(endpoint: str, path: str, body: dict[str, Any] | None) -> None:
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(endpoint + path, data=data, method="POST")
    with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT_S):
        pass


def freeze_task_transitions(endpoint: str) -> None:
    """Stop moto advancing a task's lastStatus on every describe_tasks call.

    Without this a RUNNING task reads STOPPED after about four polls, which would
    make every waiting harness see a restart loop that is not there.
    """
    _post(
        endpoint,
        "/moto-api/state-manager/set-transition",
        {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1_000_000_000}},
    )


def ecs_backend(region: str) -> Any:
    return backends.get_backend("ecs")[ACCOUNT_ID][region]


def find_task(region: str, cluster: str, task_arn: str) -> Any:
    return ecs_backend(region).tasks[cluster][task_arn]


def find_service(region: str, cluster: str, service: str) -> Any:
    return ecs_backend(region).services[f"{cluster}:{service}"]


def set_task_fields(task: Any, **fields: Any) -> None:
    """Write real-ECS task fields moto lacks (health_status, started_at, stop_code...).

    moto's ``last_status`` is a managed state; assigning it is the supported way
    to move it by hand once transitions are frozen.
    """
    for name, value in fields.items():
        setattr(task, name, value)


def set_container_fields(task: Any, **fields: Any) -> None:
    for container in task.containers:
        for name, value in fields.items():
            # moto keeps the exit code under a camelCase attribute of its own
            setattr(container, "exitCode" if name == "exit_code" else name, value)


def set_private_ip(region: str, cluster: str, task_arn: str, eni_id: str, address: str) -> None:
    """Give a task's ENI the private address the stage chose, in EC2 and in the task's attachment.

    moto makes up a random 10.x address whatever the subnet, and the stage must never send
    traffic there; it gives each task a loopback address instead (127.1.0.N) that the task
    really listens on. EC2 serialises the ENI's attributes by name; ECS copied the address
    into the attachment's details at run_task, so that copy is rewritten too.
    """
    eni = backends.get_backend("ec2")[ACCOUNT_ID][region].get_network_interface(eni_id)
    dns_name = generate_dns_from_ip(address)
    eni.private_ip_address = address
    eni.private_dns_name = dns_name
    eni.private_ip_addresses = [{"Primary": True, "PrivateIpAddress": address, "PrivateDnsName": dns_name}]
    task = find_task(region, cluster, task_arn)
    for attachment in task.attachments:
        for detail in attachment.get("details", []):
            if detail["name"] == "privateIPv4Address":
                detail["value"] = address
            elif detail["name"] == "privateDnsName":
                detail["value"] = dns_name


def publish_service_state(
    region: str,
    cluster: str,
    service: str,
    *,
    deployments: list[dict[str, Any]],
    events: list[dict[str, Any]],
    running: int,
    pending: int,
    task_definition_arn: str,
) -> None:
    """moto keeps one frozen PRIMARY deployment and no events: replace both."""
    svc = find_service(region, cluster, service)
    svc.deployments = deployments
    svc.events = events
    svc.running_count = running
    svc.pending_count = pending
    svc.task_definition = task_definition_arn


def set_service_load_balancers(region: str, cluster: str, service: str, load_balancers: list[dict[str, Any]]) -> None:
    """The service's ``loadBalancers`` (with blue/green's advancedConfiguration), as if created with them."""
    find_service(region, cluster, service).load_balancers = load_balancers


# Fields moto needs that real AWS would not: a Fargate container without
# container-level memory, or a VPC without DNS hostnames, crash moto's run_task.
CONTAINER_MEMORY_MIB = 512


def give_containers_memory(region: str, task_definition: str) -> None:
    """Container-level memory for a task definition that has only the task's (valid on Fargate).

    moto's run_task adds up container-level memory and crashes without it (HTTP 500): each
    container without any is given the task's memory, before its first RunTask.
    """
    definition = ecs_backend(region).describe_task_definition(task_definition)
    for container in definition.container_definitions:
        if not any(key in container for key in ("memory", "memoryReservation", "Memory", "MemoryReservation")):
            container["memory"] = int(definition.memory or CONTAINER_MEMORY_MIB)

