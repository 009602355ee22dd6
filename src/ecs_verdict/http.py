"""HTTP clients for the smoke tests that remember every exchange (pytest-free).

Each test talks to one task through a client whose hooks record method, URL,
status and duration, plus redacted request and response text, so a failure
report can show exactly what was sent and answered, and Allure can show one
step per request.

A request that gets no HTTP answer (reset, timeout, server gone mid-request) is not
a finding about the service: :class:`RetryingTransport` sends it again when that is
safe (GET, HEAD, OPTIONS, a request marked ``smoke_repeat_safe``, or any request that
never left: connect refused), a bounded number of times, within one
:class:`RetryBudget` for the whole run; every failed attempt is an exchange with no
status. What still has no answer raises :class:`NoAnswer`. Idle connections are kept
for less than servers keep them (uvicorn 5 s, ALB 60 s), and requests that must not be
repeated go on a fresh connection, so no request races a server closing an idle one.
"""

from __future__ import annotations

import functools
import multiprocessing
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx
import tenacity

from ecs_verdict.redact import SecretRegistry, redact_headers

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
MAX_BODY_CHARS = 2000
# Under uvicorn's 5 s keep-alive timeout (the real service) and an ALB's 60 s: the client lets go first.
DEFAULT_KEEPALIVE_EXPIRY_S = 2.0
DEFAULT_ATTEMPTS = 3  # per request: the first try and two retries
DEFAULT_RETRY_BUDGET = 60  # retries in a whole run, all tasks together: a sick network ends, not loops
DEFAULT_BACKOFF_S = 0.2
DEFAULT_BACKOFF_MAX_S = 2.0
REPEAT_SAFE = "smoke_repeat_safe"  # request extension: the caller knows sending it twice changes nothing more
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# No HTTP answer came back: what a retry may cure.
NO_ANSWER_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
# The request never reached the server: safe to send again whatever its method.
NOTHING_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


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


def describe_error(error: BaseException) -> str:
    """An exception as one line: ``ReadError: [Errno 104] Connection reset by peer``."""
    text = " ".join(str(error).split()) or "no message"
    return f"{type(error).__name__}: {text}"


class NoAnswer(httpx.TransportError):
    """A request got no HTTP answer after its retries: nothing is known about what the service would say.

    A ``TransportError``, so code that catches ``httpx.HTTPError`` keeps working.
    """

    def __init__(self, method: str, url: str, attempts: int, last_error: str, *,
                 request: httpx.Request | None = None) -> None:
        self.method = method
        self.url = url
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(f"{method} {url}: no HTTP answer after {attempts} attempt{'s' * (attempts != 1)} "
                         f"({last_error})", request=request)


def is_repeat_safe(request: httpx.Request) -> bool:
    """Whether sending ``request`` twice does no more than sending it once (by method or by the caller's mark)."""
    return request.method in IDEMPOTENT_METHODS or bool(request.extensions.get(REPEAT_SAFE))


@dataclass(frozen=True, slots=True)
class RetryCounts:
    """What a run's retries came to."""

    retries: int
    requests_retried: int
    unanswered: int
    limit: int

    def describe(self) -> str:
        return (f"HTTP: {self.requests_retried} request(s) retried ({self.retries} retries, budget {self.limit}); "
                f"{self.unanswered} left unanswered")


class RetryBudget:
    """The retries one run may spend, all tasks together; shared by processes forked after it is made.

    The counters live in shared memory (``multiprocessing``'s fork context), so a task lane
    spends from the same budget as its siblings and the run reads what every lane spent.
    """

    def __init__(self, limit: int = DEFAULT_RETRY_BUDGET) -> None:
        self.limit = limit
        # [retries, requests retried, requests left unanswered]
        self._counts = multiprocessing.get_context("fork").Array("q", 3)

    def spend(self, *, first_retry: bool) -> bool:
        """Take one retry if any is left (``first_retry``: the request's first, counted once)."""
        with self._counts.get_lock():
            if self._counts[0] >= self.limit:
                return False
            self._counts[0] += 1
            self._counts[1] += int(first_retry)
            return True

    def unanswered(self) -> None:
        with self._counts.get_lock():
            self._counts[2] += 1

    def add(self, spent: RetryCounts) -> None:
        """Count what another budget spent (an xdist worker's: workers are not forked from the run)."""
        with self._counts.get_lock():
            self._counts[0] += spent.retries
            self._counts[1] += spent.requests_retried
            self._counts[2] += spent.unanswered

    def counts(self) -> RetryCounts:
        with self._counts.get_lock():
            retries, requests, unanswered = self._counts[:]
        return RetryCounts(retries, requests, unanswered, self.limit)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one request is retried: attempts, backoff with jitter, and the sleep (injectable for tests)."""

    attempts: int = DEFAULT_ATTEMPTS
    backoff_s: float = DEFAULT_BACKOFF_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    sleep: Callable[[float], None] = time.sleep


class RetryingTransport(httpx.BaseTransport):
    """Sends a request again when it got no HTTP answer and sending it again is safe.

    Safe: a repeat-safe request (:func:`is_repeat_safe`) after any no-answer error, any
    request after an error that proves nothing was sent (connect refused or timed out, no
    connection free in the pool). Each failed attempt is recorded in ``log`` with no status;
    each retry is taken from ``budget``. The answer's body is read here, so a connection
    lost mid-body is an attempt that failed, not a half answer. Gives up with
    :class:`NoAnswer`.
    """

    def __init__(self, inner: httpx.BaseTransport, log: ExchangeLog, budget: RetryBudget,
                 policy: RetryPolicy = RetryPolicy()) -> None:
        self._inner = inner
        self._log = log
        self._budget = budget
        self._policy = policy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        repeat_safe = is_repeat_safe(request)
        policy = self._policy

        def may_retry(error: BaseException) -> bool:
            if isinstance(error, NOTHING_SENT_ERRORS):
                return True
            return repeat_safe and isinstance(error, NO_ANSWER_ERRORS)

        def budget_spent(state: tenacity.RetryCallState) -> bool:
            return not self._budget.spend(first_retry=state.attempt_number == 1)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(may_retry),
            # Attempts first: a request out of attempts must not take a retry from the budget.
            stop=tenacity.stop_any(tenacity.stop_after_attempt(policy.attempts), budget_spent),
            wait=tenacity.wait_exponential_jitter(multiplier=policy.backoff_s, max=policy.backoff_max_s),
            sleep=policy.sleep,
            reraise=True,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    return self._attempt(request)
        except NO_ANSWER_ERRORS as error:
            self._budget.unanswered()
            raise NoAnswer(request.method, self._log.secrets.redact(str(request.url)), attempts,
                           describe_error(error), request=request) from error
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    def _attempt(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        request.extensions["smoke_started"] = started  # the answer's duration is its own attempt's
        try:
            response = self._inner.handle_request(request)
            try:
                raw = b"".join(response.iter_raw())
            finally:
                response.close()
        except httpx.TransportError as error:
            self._log.record(Exchange(
                method=request.method, url=self._log.secrets.redact(str(request.url)), status=None,
                duration_ms=(time.perf_counter() - started) * 1000,
                request_text=_request_text(request, self._log.secrets), response_text="",
                error=describe_error(error)))
            raise
        # The raw (still encoded) body in a fresh stream: the client decodes it as if it came off the wire.
        return httpx.Response(response.status_code, headers=response.headers, stream=httpx.ByteStream(raw),
                              extensions=response.extensions)

    def close(self) -> None:
        self._inner.close()


class ByMethodTransport(httpx.BaseTransport):
    """Repeat-safe requests on a keep-alive pool; the others on a connection of their own.

    A request that must not be repeated cannot be sent on an idle connection the server
    is closing at that moment (it would be reset, and could not be retried).
    """

    def __init__(self, reusing: httpx.BaseTransport, fresh: httpx.BaseTransport) -> None:
        self._reusing = reusing
        self._fresh = fresh

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return (self._reusing if is_repeat_safe(request) else self._fresh).handle_request(request)

    def close(self) -> None:
        self._reusing.close()
        self._fresh.close()


# The connection was lost before any answer: most often a kept-alive one the server was closing.
RESET_ERRORS: tuple[type[httpx.TransportError], ...] = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


def get_tolerating_one_reset(client: httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
    """``client.get(url)``, sent once more if the connection was reset before any answer came back.

    For the probes that are not tests (the wait's health polls, the preflight's probe):
    one reset is the network, not the task's state, and must not cost a poll.
    """
    try:
        return client.get(url, **kwargs)
    except RESET_ERRORS:
        return client.get(url, **kwargs)


def keepalive_limits(*, reuse: bool = True) -> httpx.Limits:
    """Pool limits that let go of idle connections before servers do (``reuse=False``: none kept)."""
    if not reuse:
        return httpx.Limits(max_keepalive_connections=0)
    return httpx.Limits(keepalive_expiry=DEFAULT_KEEPALIVE_EXPIRY_S)


def plain_transport(*, reuse: bool = True) -> httpx.HTTPTransport:
    """An HTTP transport with the run's TLS context and :func:`keepalive_limits`."""
    return httpx.HTTPTransport(verify=shared_ssl_context(), limits=keepalive_limits(reuse=reuse))


def recording_client(
    base_url: str,
    log: ExchangeLog,
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    budget: RetryBudget | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> httpx.Client:
    """An ``httpx.Client`` for one target whose every exchange lands in ``log``.

    Requests with no HTTP answer are retried (:class:`RetryingTransport`) within
    ``budget`` (the run's; a budget of this client's own when None) and raise
    :class:`NoAnswer` when they stay unanswered. A task that ECS stopped meanwhile is
    the pytest layer's to follow (``ecs_verdict.pytest_plugin.task_fate``).
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
                url=secrets.redact(str(request.url)),
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

    transport: httpx.BaseTransport = ByMethodTransport(plain_transport(), plain_transport(reuse=False))
    transport = RetryingTransport(transport, log, budget if budget is not None else RetryBudget(), retry)
    return httpx.Client(
        base_url=base_url,
        timeout=timeout,
        transport=transport,
        event_hooks={"request": [on_request], "response": [on_response]},
        follow_redirects=False,
    )
