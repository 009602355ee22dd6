"""A fault-injecting HTTP/1.1 proxy on loopback: the misbehaving network between a harness and what it tests.

    proxy = FaultProxy(NetworkFaults(tasks=TaskNoise(reset=0.03, stall=0.01), aws=AwsNoise(throttle=0.1)))
    proxy.open("127.0.0.7", 8000, upstream=("127.1.0.7", 8001), side=TASKS, target="task-1")
    proxy.open("127.0.0.1", 0, upstream=("127.0.0.1", moto_port), side=AWS)
    ...
    proxy.counts()  # {"tasks.reset": 2, "tasks.requests": 61, "aws.throttle": 4, ...}

Each client connection gets one upstream connection; requests are read whole (head and body) and
answered in order, so a fault lands on one request, never between two. Faults are decided per
request from the seed, the target and that target's request number, so the same requests meet
the same faults whatever other targets do at the same time. Everything injected is counted by
kind: tests assert counts, never timings.

Task side (TaskNoise): reset a request (RST, SO_LINGER 0) or stall it past the client's read
timeout (then reset), for the listed methods only; close keep-alive connections left idle
(``idle_close_s``, a FIN as a server's keep-alive timeout does) or drop a request that arrives
on one idle that long (``idle_race_s``: the server's timeout fired while the request was in
flight); answer 503 while a target warms up (its first seconds or requests, re-armed by
``rearm_warmup``). AWS side (AwsNoise): throttling as each protocol words it (ECS and the other
JSON APIs: 400 ``ThrottlingException``; EC2: 503 ``RequestLimitExceeded`` XML; other query APIs:
400 ``Throttling``), 500/503 answers, and resets.

Stdlib only, a thread per connection: a stage's harness opens tens of connections, not thousands.
"""

from __future__ import annotations

import random
import re
import select
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

TASKS = "tasks"
AWS = "aws"
Side = Literal["tasks", "aws"]
MAX_HEAD_BYTES = 64 * 1024
RECV_BYTES = 64 * 1024
UPSTREAM_CONNECT_TIMEOUT_S = 3.0
# Kinds counted besides the faults: what went through, and what the upstream did on its own.
REQUESTS = "requests"
UPSTREAM_REFUSED = "upstream_refused"  # the task is gone (its process exited): the client is reset
UPSTREAM_CLOSED = "upstream_closed"  # the server closed an idle connection itself (uvicorn's keep-alive)


@dataclass(frozen=True, slots=True)
class TaskNoise:
    """What the network does to requests to the tasks; rates are fractions of the requests of ``methods``."""

    reset: float = 0.0
    stall: float = 0.0
    methods: frozenset[str] = frozenset({"GET"})
    stall_s: float = 15.0  # a stalled request is held this long at most, or until the client gives up
    idle_close_s: float | None = None  # FIN on a keep-alive connection idle this long
    idle_race_s: float | None = None  # a request on a connection idle this long gets no answer (closed)
    warmup_503_s: float = 0.0  # each target answers 503 for its first seconds...
    warmup_503_requests: int = 0  # ...or its first requests (since it opened, or since rearm_warmup)


@dataclass(frozen=True, slots=True)
class AwsNoise:
    """What the network does to AWS API calls; rates are fractions of all calls."""

    throttle: float = 0.0
    server_error: float = 0.0  # half 500 InternalFailure, half 503 ServiceUnavailable
    reset: float = 0.0


@dataclass(frozen=True, slots=True)
class NetworkFaults:
    tasks: TaskNoise = field(default_factory=TaskNoise)
    aws: AwsNoise = field(default_factory=AwsNoise)
    seed: int = 0


# -- what the proxy does with one request -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Forward:
    pass


@dataclass(frozen=True, slots=True)
class Reset:
    kind: str


@dataclass(frozen=True, slots=True)
class Stall:
    seconds: float


@dataclass(frozen=True, slots=True)
class Respond:
    kind: str
    status: int
    reason: str
    content_type: str
    body: bytes


Action = Forward | Reset | Stall | Respond


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    raw: bytes  # head and body as received, forwarded unchanged


def roll(seed: int, target: str, number: int) -> float:
    """A number in [0, 1) that depends only on the seed, the target and its request number."""
    return random.Random(f"{seed}|{target}|{number}").random()


class TargetState:
    """One target's request numbering and warm-up (shared by every listener in front of it).

    ``key`` is the side and the order the target was first seen in (not its address or task id,
    which change from stage to stage): the same seed then gives the same faults.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.requests = 0
        self.warm_since = time.monotonic()
        self.warm_requests = 0

    def rearm(self) -> None:
        self.warm_since = time.monotonic()
        self.warm_requests = 0


def task_action(noise: TaskNoise, seed: int, target: TargetState, request: Request) -> Action:
    target.requests += 1
    warming = (noise.warmup_503_s and time.monotonic() - target.warm_since < noise.warmup_503_s) or (
        target.warm_requests < noise.warmup_503_requests)
    if warming:
        target.warm_requests += 1
        return Respond("warmup_503", 503, "Service Unavailable", "text/plain", b"warming up")
    if request.method not in noise.methods:
        return Forward()
    chance = roll(seed, target.key, target.requests)
    if chance < noise.reset:
        return Reset("reset")
    if chance < noise.reset + noise.stall:
        return Stall(noise.stall_s)
    return Forward()


CREDENTIAL_SERVICE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


def aws_service(request: Request) -> str:
    """The AWS service a signed request is for (its SigV4 credential scope), e.g. ``ecs`` or ``ec2``."""
    found = CREDENTIAL_SERVICE.search(request.headers.get("authorization", ""))
    return found.group(1) if found else "unknown"


def aws_error(request: Request, status: int, json_code: str, query_code: str, message: str, kind: str) -> Respond:
    """An AWS error answer worded as the request's protocol words it (JSON with X-Amz-Target, else XML)."""
    reason = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}[status]
    if "x-amz-target" in request.headers:
        body = f'{{"__type":"{json_code}","message":"{message}"}}'.encode()
        return Respond(kind, status, reason, "application/x-amz-json-1.1", body)
    if aws_service(request) == "ec2":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{query_code}</Code>"
                f"<Message>{message}</Message></Error></Errors><RequestID>faultproxy</RequestID></Response>").encode()
    else:
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{query_code}</Code><Message>{message}</Message>"
                f"</Error><RequestId>faultproxy</RequestId></ErrorResponse>").encode()
    return Respond(kind, status, reason, "text/xml", body)


def aws_action(noise: AwsNoise, seed: int, target: TargetState, request: Request) -> Action:
    target.requests += 1
    chance = roll(seed, target.key, target.requests)
    if chance < noise.throttle:
        if "x-amz-target" in request.headers:
            return aws_error(request, 400, "ThrottlingException", "", "Rate exceeded", "throttle")
        if aws_service(request) == "ec2":
            return aws_error(request, 503, "", "RequestLimitExceeded", "Request limit exceeded.", "throttle")
        return aws_error(request, 400, "", "Throttling", "Rate exceeded", "throttle")
    chance -= noise.throttle
    if chance < noise.server_error / 2:
        return aws_error(request, 500, "InternalFailure", "InternalError", "We encountered an internal error.",
                         "500")
    if chance < noise.server_error:
        return aws_error(request, 503, "ServiceUnavailable", "Unavailable", "Service is unavailable.", "503")
    if chance < noise.server_error + noise.reset:
        return Reset("reset")
    return Forward()


# -- HTTP/1.1 framing, just enough to find where a request and a response end --------------------------


class Closed(Exception):
    """The peer closed (or reset) the connection."""


class Stream:
    """A socket with a read buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        try:
            data = self.sock.recv(RECV_BYTES)
        except OSError as error:
            raise Closed(str(error)) from None
        if not data:
            raise Closed("end of stream")
        self.buffer += data

    def head(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise Closed("head too long")
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        return head + b"\r\n\r\n"

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line + b"\r\n"

    def chunked(self) -> bytes:
        raw = b""
        while True:
            size_line = self.line()
            raw += size_line
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (trailer := self.line()) != b"\r\n":
                    raw += trailer
                return raw + b"\r\n"
            raw += self.exactly(size + 2)

    def until_closed(self) -> bytes:
        while True:
            try:
                self._fill()
            except Closed:
                data, self.buffer = self.buffer, b""
                return data

    def has_buffered(self) -> bool:
        return bool(self.buffer)


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def body_of(stream: Stream, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return stream.chunked()
    return stream.exactly(int(headers.get("content-length", "0") or 0))


def read_request(stream: Stream) -> Request:
    head = stream.head()
    first, headers = parse_head(head)
    method, _, rest = first.partition(" ")
    body = body_of(stream, headers)
    return Request(method.upper(), rest.rsplit(" ", 1)[0], headers, body, head + body)


def read_response(stream: Stream, method: str) -> tuple[bytes, bool]:
    """The upstream's whole answer, and whether the connection stays open after it."""
    head = stream.head()
    first, headers = parse_head(head)
    status = int(first.split(" ", 2)[1])
    keep = headers.get("connection", "").lower() != "close"
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return head, keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return head + stream.chunked(), keep
    if "content-length" in headers:
        return head + stream.exactly(int(headers["content-length"])), keep
    return head + stream.until_closed(), False


def answer_bytes(respond: Respond) -> bytes:
    head = (f"HTTP/1.1 {respond.status} {respond.reason}\r\ncontent-type: {respond.content_type}\r\n"
            f"content-length: {len(respond.body)}\r\nx-amzn-requestid: faultproxy\r\n\r\n")
    return head.encode("latin-1") + respond.body


def reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0): the peer's next read fails with 'Connection reset by peer'."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


# -- the proxy ---------------------------------------------------------------------------------------


@dataclass
class Listener:
    address: tuple[str, int]
    upstream: tuple[str, int]
    side: Side
    target: TargetState
    sock: socket.socket
    connections: set[socket.socket] = field(default_factory=set)


class FaultProxy:
    """Listeners added and removed as targets come and go; see the module docstring."""

    def __init__(self, faults: NetworkFaults) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._listeners: dict[tuple[str, int], Listener] = {}
        self._targets: dict[str, TargetState] = {}
        self._stopping = threading.Event()

    # -- listeners --------------------------------------------------------------------------------

    def open(self, host: str, port: int, *, upstream: tuple[str, int], side: Side, target: str | None = None
             ) -> tuple[str, int]:
        """Listen on ``host:port`` (0: any free port) in front of ``upstream``; returns the address bound.

        Listeners naming the same ``target`` share its request numbering and warm-up (a task's
        public and private addresses are one server).
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        bound = sock.getsockname()[:2]
        name = f"{side}:{target or f'{upstream[0]}:{upstream[1]}'}"
        with self._lock:
            state = self._targets.get(name)
            if state is None:
                seen = sum(1 for known in self._targets if known.startswith(f"{side}:"))
                state = self._targets[name] = TargetState(f"{side}:{seen}")
            listener = Listener(bound, upstream, side, state, sock)
            self._listeners[bound] = listener
        threading.Thread(target=self._accept, args=(listener,), name=f"faultproxy-{host}:{bound[1]}",
                         daemon=True).start()
        return bound

    def close(self, host: str, port: int) -> None:
        """Stop listening on ``host:port`` and reset its open connections (the task behind it is gone)."""
        with self._lock:
            listener = self._listeners.pop((host, port), None)
            connections = list(listener.connections) if listener else []
        if listener is None:
            return
        _shut(listener.sock)
        for connection in connections:
            _abort(connection)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            addresses = list(self._listeners)
        for host, port in addresses:
            self.close(host, port)

    def rearm_warmup(self) -> None:
        """Every target warms up again (its 503s start over), e.g. before each run of a soak."""
        with self._lock:
            for state in self._targets.values():
                state.rearm()

    def counts(self) -> dict[str, int]:
        """What went through and what was injected, as ``side.kind`` -> count."""
        with self._lock:
            return dict(self._counts)

    def _count(self, side: str, kind: str) -> None:
        with self._lock:
            self._counts[f"{side}.{kind}"] += 1

    # -- connections ------------------------------------------------------------------------------

    def _accept(self, listener: Listener) -> None:
        while True:
            try:
                client, _ = listener.sock.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._listeners.get(listener.address) is not listener:
                    reset(client)
                    return
                listener.connections.add(client)
            threading.Thread(target=self._serve, args=(listener, client), name="faultproxy-conn",
                             daemon=True).start()

    def _serve(self, listener: Listener, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            try:
                upstream = socket.create_connection(listener.upstream, timeout=UPSTREAM_CONNECT_TIMEOUT_S)
                upstream.settimeout(None)
            except OSError:
                self._count(listener.side, UPSTREAM_REFUSED)
                reset(client)
                return
            self._relay(listener, client, upstream)
        finally:
            with self._lock:
                listener.connections.discard(client)
            for sock in (client, upstream):
                if sock is not None:
                    _shut(sock)

    def _relay(self, listener: Listener, client: socket.socket, upstream: socket.socket) -> None:
        incoming, outgoing = Stream(client), Stream(upstream)
        noise = self.faults.tasks
        idle_since = time.monotonic()
        answered = 0  # requests answered on this connection: the next one reuses it
        while not self._stopping.is_set():
            waited = self._wait_for_request(listener, incoming, upstream)
            if waited != "request":
                return
            try:
                request = read_request(incoming)
            except Closed:
                return
            idle_for = time.monotonic() - idle_since
            self._count(listener.side, REQUESTS)
            if listener.side == TASKS and answered and noise.idle_race_s is not None \
                    and idle_for >= noise.idle_race_s:
                self._count(listener.side, "idle_race")
                reset(client)
                return
            action = self._decide(listener, request)
            if isinstance(action, Reset):
                self._count(listener.side, action.kind)
                reset(client)
                return
            if isinstance(action, Stall):
                self._count(listener.side, "stall")
                # Held until the client gives up (it closes) or the stall ends; then reset.
                select.select([client], [], [], action.seconds)
                reset(client)
                return
            if isinstance(action, Respond):
                self._count(listener.side, action.kind)
                try:
                    client.sendall(answer_bytes(action))
                except OSError:
                    return
                answered += 1
                idle_since = time.monotonic()
                continue
            try:
                upstream.sendall(request.raw)
                answer, keep = read_response(outgoing, request.method)
            except (Closed, OSError):
                self._count(listener.side, UPSTREAM_CLOSED)
                reset(client)
                return
            try:
                client.sendall(answer)
            except OSError:
                return
            if not keep or request.headers.get("connection", "").lower() == "close":
                return
            answered += 1
            idle_since = time.monotonic()

    def _wait_for_request(self, listener: Listener, incoming: Stream, upstream: socket.socket) -> str:
        """Until the client's next request begins: "request", or why the connection ends."""
        if incoming.has_buffered():
            return "request"
        idle_close = self.faults.tasks.idle_close_s if listener.side == TASKS else None
        deadline = None if idle_close is None else time.monotonic() + idle_close
        while True:
            timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            readable, _, _ = select.select([incoming.sock, upstream], [], [], timeout)
            if self._stopping.is_set():
                return "stopping"
            if incoming.sock in readable:
                return "request"
            if upstream in readable:
                # The server closed the idle connection itself: so does the proxy, with a FIN.
                self._count(listener.side, UPSTREAM_CLOSED)
                return "upstream closed"
            if deadline is not None and time.monotonic() >= deadline:
                self._count(listener.side, "idle_close")
                return "idle close"

    def _decide(self, listener: Listener, request: Request) -> Action:
        with self._lock:
            if listener.side == TASKS:
                return task_action(self.faults.tasks, self.faults.seed, listener.target, request)
            return aws_action(self.faults.aws, self.faults.seed, listener.target, request)


def _abort(sock: socket.socket) -> None:
    """Wake the thread serving ``sock`` (shutdown) and make its close an RST; that thread closes it.

    Closing a socket another thread is blocked on would free its descriptor for reuse under it.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
