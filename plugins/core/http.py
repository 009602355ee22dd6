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
    notes: list[str] = field(default_factory=list)  # e.g. a clean-up left to the end-of-run sweep

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


def recording_client(
    base_url: str,
    log: ExchangeLog,
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
) -> httpx.Client:
    """An ``httpx.Client`` for one target whose every exchange lands in ``log``."""
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
    return httpx.Client(
        base_url=base_url,
        timeout=timeout,
        transport=transport,
        event_hooks={"request": [on_request], "response": [on_response]},
        follow_redirects=False,
    )
