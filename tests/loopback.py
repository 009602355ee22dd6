"""An HTTP server on a free loopback port for the harness's own tests (never any other address)."""

from __future__ import annotations

import http.server
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[..., http.server.BaseHTTPRequestHandler]


@contextmanager
def serving(handler: Handler | Any, port: int = 0) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 (a free port, or ``port``) in a thread; yield the base URL; stop it after."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def reset_connection(connection: socket.socket) -> None:
    """Close ``connection`` with a TCP reset and no answer (what a server or a middlebox dropping it does)."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


@dataclass
class Misbehaviour:
    """What a :func:`misbehaving` server does: which requests it resets, and what it saw.

    ``reset``: 1-based numbers of the requests (all paths and connections counted together)
    answered with a reset; ``reset_all``: every request; ``idle_race_s``: a request arriving
    on a kept-alive connection idle this long is reset, as when a request crosses the
    server's close of an idle connection (uvicorn closes them after 5 s).
    """

    reset: set[int] = field(default_factory=set)
    reset_all: bool = False
    idle_race_s: float | None = None
    seen: list[str] = field(default_factory=list)  # "METHOD /path" in arrival order, resets included
    resets: int = 0
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def misbehaving(behaviour: Misbehaviour) -> type[http.server.BaseHTTPRequestHandler]:
    """A keep-alive HTTP/1.1 handler answering 200 ``{"ok": true}`` unless ``behaviour`` says reset."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between them
        answered_at: float | None = None

        def setup(self) -> None:
            super().setup()
            with behaviour.lock:
                behaviour.connections += 1

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            with behaviour.lock:
                behaviour.seen.append(f"{self.command} {self.path}")
                number = len(behaviour.seen)
                idle = (time.monotonic() - self.answered_at) if self.answered_at is not None else 0.0
                racing = behaviour.idle_race_s is not None and self.answered_at is not None \
                    and idle >= behaviour.idle_race_s
                resetting = behaviour.reset_all or number in behaviour.reset or racing
                behaviour.resets += int(resetting)
            if resetting:
                self.close_connection = True
                reset_connection(self.connection)
                return
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.answered_at = time.monotonic()

        do_GET = do_POST = do_DELETE = do_HEAD = _handle

        def finish(self) -> None:
            try:
                super().finish()
            except OSError:
                pass  # the connection was reset on purpose

    return Handler
