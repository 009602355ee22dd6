"""HTTP clients for the smoke tests that remember every exchange (pytest-free).

Each test talks to one task through a client whose hooks record method, URL,
status and duration, plus redacted request and response text, so a failure
report can show exactly what was sent and answered, and Allure can show one
step per request.
"""

from __future__ import annotations

import functools
import ssl
import time
from dataclasses import dataclass, field
from typing import Callable

import httpx

from plugins.core.redact import SecretRegistry, redact_headers

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
MAX_BODY_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its answer, already free of secrets."""

    method: str
    url: str
    status: int | None
    duration_ms: float
    request_text: str
    response_text: str
    error: str | None = None

    @property
    def title(self) -> str:
        answer = str(self.status) if self.status is not None else f"no answer ({self.error})"
        return f"{self.method} {self.url} -> {answer} ({self.duration_ms:.0f} ms)"


@dataclass
class ExchangeLog:
    """Exchanges of one test, in order; ``on_exchange`` lets the pytest layer add Allure steps."""

    secrets: SecretRegistry
    on_exchange: Callable[[Exchange], None] | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "task replaced during the run; re-resolved once"

    def record(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
        if self.on_exchange is not None:
            self.on_exchange(exchange)


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every client of the run: building one costs ~65 ms, a client per test."""
    return httpx.create_ssl_context()


def _request_text(request: httpx.Request, secrets: SecretRegistry) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in redact_headers(request.headers).items())
    body = request.content.decode(errors="replace") if request.content else ""
    return secrets.redact(f"{request.method} {request.url}\n{headers}\n\n{body[:MAX_BODY_CHARS]}")


class ReResolvingTransport(httpx.BaseTransport):
    """Sends to the target; if it stops answering (task replaced), asks once for its replacement.

    Fargate gives a replaced task a new address. Retrying the dead one would hide
    nothing and find nothing; asking ECS again once, and saying so, keeps the check
    meaningful. A second failure is the test's to report.
    """

    def __init__(self, inner: httpx.BaseTransport, reresolve: Callable[[], tuple[str, str] | None],
                 log: ExchangeLog) -> None:
        self._inner = inner
        self._reresolve = reresolve
        self._log = log
        self._replacement: str | None = None
        self._asked = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._replacement is not None:
            return self._sent(_moved(request, self._replacement))
        try:
            return self._inner.handle_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            if self._asked:
                raise
            self._asked = True
            found = self._reresolve()
            if found is None:
                raise
            self._replacement, note = found
            self._log.notes.append(f"{note} (after {type(error).__name__} on {request.url.host})")
            return self._sent(_moved(request, self._replacement))

    def _sent(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        # httpx re-attaches the original request to the response; keep where it really went.
        response.extensions["smoke_sent_to"] = str(request.url)
        return response

    def close(self) -> None:
        self._inner.close()


def _moved(request: httpx.Request, base_url: str) -> httpx.Request:
    base = httpx.URL(base_url)
    url = request.url.copy_with(scheme=base.scheme, host=base.host, port=base.port)
    headers = httpx.Headers(request.headers)
    headers["Host"] = url.netloc.decode()
    moved = httpx.Request(request.method, url, headers=headers, content=request.content,
                          extensions=request.extensions)
    return moved


def recording_client(
    base_url: str,
    log: ExchangeLog,
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    reresolve: Callable[[], tuple[str, str] | None] | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` for one target whose every exchange lands in ``log``.

    ``reresolve`` (optional) returns ``(new_base_url, note)`` for a replacement
    task, or None; it is asked at most once per client.
    """
    secrets = log.secrets

    def on_request(request: httpx.Request) -> None:
        request.extensions["smoke_started"] = time.perf_counter()

    def on_response(response: httpx.Response) -> None:
        response.read()
        request = response.request
        started = request.extensions.get("smoke_started", time.perf_counter())
        log.record(
            Exchange(
                method=request.method,
                url=secrets.redact(str(response.extensions.get("smoke_sent_to", request.url))),
                status=response.status_code,
                duration_ms=(time.perf_counter() - started) * 1000,
                request_text=_request_text(request, secrets),
                response_text=secrets.redact(
                    f"HTTP {response.status_code}\n"
                    + "\n".join(f"{k}: {v}" for k, v in redact_headers(response.headers).items())
                    + "\n\n"
                    + response.text[:MAX_BODY_CHARS]
                ),
            )
        )

    transport: httpx.BaseTransport = httpx.HTTPTransport(verify=shared_ssl_context())
    if reresolve is not None:
        transport = ReResolvingTransport(transport, reresolve, log)
    return httpx.Client(
        base_url=base_url,
        timeout=timeout,
        transport=transport,
        event_hooks={"request": [on_request], "response": [on_response]},
        follow_redirects=False,
    )
