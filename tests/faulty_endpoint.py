"""An HTTP endpoint on loopback that fails chosen requests the way networks do, in front of a real one.

``FaultyEndpoint(upstream, plan)`` answers each request (counted from 1, over every connection)
as ``plan(n)`` says: ``"pass"`` forwards it to ``upstream`` (the stage's moto) and relays the
answer; ``"reset"`` drops the connection with a TCP reset before any byte of an answer;
``"stall"`` answers nothing until the client gives up (or the endpoint stops). The clients
under test are real (boto3), so what they see is what they would see from AWS on a bad network.
Loopback only: ``upstream`` must be a 127.0.0.0/8 URL.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import socketserver
import struct
import threading
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlsplit

Fault = Literal["pass", "reset", "stall"]
STALL_LIMIT_S = 30.0  # a stalled request is let go at the latest when the endpoint stops, or after this
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


class FaultyEndpoint:
    """A threaded HTTP/1.1 relay with a fault plan; use as a context manager; ``url`` is its address."""

    def __init__(self, upstream: str, plan: Callable[[int], Fault]) -> None:
        parts = urlsplit(upstream)
        if not ipaddress.ip_address(parts.hostname or "").is_loopback:
            raise ValueError(f"upstream must be on loopback, got {upstream}")
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.plan = plan
        self.seen: list[Fault] = []  # what each request got, in arrival order
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        endpoint = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                endpoint._serve(self)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def count(self, fault: Fault) -> int:
        with self._lock:
            return self.seen.count(fault)

    def __enter__(self) -> FaultyEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _serve(self, handler: socketserver.StreamRequestHandler) -> None:
        while True:  # one connection, many requests (keep-alive), as botocore sends them
            request = _read_request(handler)
            if request is None:
                return
            with self._lock:
                fault = self.plan(len(self.seen) + 1)
                self.seen.append(fault)
            if fault == "reset":
                # SO_LINGER 0: close sends RST, the way a middlebox drops a connection.
                handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if fault == "stall":
                self._stopping.wait(STALL_LIMIT_S)
                return
            handler.wfile.write(self._relay(*request))
            handler.wfile.flush()

    def _relay(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
        upstream = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            upstream.request(method, path, body=body, headers=dict(headers))
            answer = upstream.getresponse()
            content = answer.read()
            lines = [f"HTTP/1.1 {answer.status} {answer.reason}"]
            lines += [f"{name}: {value}" for name, value in answer.getheaders() if name.lower() not in HOP_BY_HOP]
            lines.append(f"Content-Length: {len(content)}")
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + content
        finally:
            upstream.close()


def _read_request(handler: socketserver.StreamRequestHandler) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
    try:
        start = handler.rfile.readline()
    except OSError:
        return None
    if not start.strip():
        return None
    method, path, _version = start.decode("latin-1").split(" ", 2)
    headers: list[tuple[str, str]] = []
    while True:
        line = handler.rfile.readline().decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    length = int(next((value for name, value in headers if name.lower() == "content-length"), "0"))
    body = handler.rfile.read(length) if length else b""
    return method, path, [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP], body
