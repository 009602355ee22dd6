"""Requests with no HTTP answer: retried when safe, within one budget, recorded, then NoAnswer.

Real httpx against real loopback servers that reset chosen requests (``tests/loopback.py``);
the backoff's sleep is injected, so nothing here waits except the keep-alive scenario,
whose idle time is the scenario itself.
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from contextlib import ExitStack

import httpx
import pytest

from ecs_verdict.http import (DEFAULT_KEEPALIVE_EXPIRY_S, REPEAT_SAFE, ExchangeLog, NoAnswer, RetryBudget,
                               RetryPolicy, recording_client)
from ecs_verdict.health_probe import get_health
from ecs_verdict.redact import SecretRegistry
from ecs_verdict.targets import target_from_url
from ecs_verdict.preflight import probe_targets
from tests.loopback import Misbehaviour, misbehaving, serving

NO_WAIT = RetryPolicy(sleep=lambda seconds: None)


def client_for(base_url: str, log: ExchangeLog, budget: RetryBudget | None = None,
               policy: RetryPolicy = NO_WAIT) -> httpx.Client:
    return recording_client(base_url, log, budget=budget or RetryBudget(), retry=policy)


def new_log() -> ExchangeLog:
    return ExchangeLog(secrets=SecretRegistry())


def test_a_get_reset_once_is_answered_on_its_retry_and_both_attempts_are_recorded() -> None:
    behaviour = Misbehaviour(reset={1})
    log, budget = new_log(), RetryBudget()
    with serving(misbehaving(behaviour)) as url, client_for(url, log, budget) as client:
        response = client.get("/api/me")
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert behaviour.seen == ["GET /api/me", "GET /api/me"]
    assert [(e.method, e.status) for e in log.exchanges] == [("GET", None), ("GET", 200)]
    assert log.exchanges[0].error is not None and "ReadError" in log.exchanges[0].error
    assert "no answer (ReadError" in log.exchanges[0].title
    counts = budget.counts()
    assert (counts.retries, counts.requests_retried, counts.unanswered) == (1, 1, 0)


def test_a_get_reset_on_every_attempt_raises_no_answer_after_its_attempts() -> None:
    behaviour = Misbehaviour(reset_all=True)
    log, budget = new_log(), RetryBudget()
    with serving(misbehaving(behaviour)) as url, client_for(url, log, budget) as client:
        with pytest.raises(NoAnswer) as caught:
            client.get("/api/me")
    assert caught.value.attempts == 3 == len(behaviour.seen)
    assert str(caught.value).startswith(f"GET {url}/api/me: no HTTP answer after 3 attempts (ReadError: ")
    assert isinstance(caught.value, httpx.TransportError)
    assert [e.status for e in log.exchanges] == [None, None, None]
    assert budget.counts().unanswered == 1


def test_a_post_reset_is_not_repeated() -> None:
    behaviour = Misbehaviour(reset={1})
    log, budget = new_log(), RetryBudget()
    with serving(misbehaving(behaviour)) as url, client_for(url, log, budget) as client:
        with pytest.raises(NoAnswer) as caught:
            client.post("/api/boards/board_001/join", json={"token": "t"})
    assert behaviour.seen == ["POST /api/boards/board_001/join"]  # the server saw it once
    assert caught.value.attempts == 1
    assert budget.counts().retries == 0


def test_a_post_marked_repeat_safe_is_retried() -> None:
    behaviour = Misbehaviour(reset={1})
    with serving(misbehaving(behaviour)) as url, client_for(url, new_log()) as client:
        response = client.post("/api/auth/login", json={}, extensions={REPEAT_SAFE: True})
    assert response.status_code == 200
    assert behaviour.seen == ["POST /api/auth/login"] * 2


def test_a_post_refused_at_connect_is_retried_once_the_server_listens() -> None:
    with socket.socket() as probe:  # a free port with nothing listening on it yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    behaviour = Misbehaviour()
    log = new_log()
    with ExitStack() as servers:
        # The backoff's sleep is where the server comes up: deterministic, and nothing waits.
        policy = RetryPolicy(sleep=lambda seconds: servers.enter_context(serving(misbehaving(behaviour), port)))
        with client_for(f"http://127.0.0.1:{port}", log, policy=policy) as client:
            response = client.post("/api/boards/board_001/invites", json={})
    assert response.status_code == 200
    assert behaviour.seen == ["POST /api/boards/board_001/invites"]
    assert [e.status for e in log.exchanges] == [None, 200]
    assert "ConnectError" in (log.exchanges[0].error or "")


def test_an_exhausted_budget_retries_no_more() -> None:
    behaviour = Misbehaviour(reset_all=True)
    budget = RetryBudget(limit=1)
    with serving(misbehaving(behaviour)) as url, client_for(url, new_log(), budget) as client:
        with pytest.raises(NoAnswer) as first:
            client.get("/health")
        with pytest.raises(NoAnswer) as second:
            client.get("/health")
    assert (first.value.attempts, second.value.attempts) == (2, 1)
    assert len(behaviour.seen) == 3
    counts = budget.counts()
    assert (counts.retries, counts.requests_retried, counts.unanswered) == (1, 1, 2)
    assert counts.describe() == "HTTP: 1 request(s) retried (1 retries, budget 1); 2 left unanswered"


def _spend_twice(budget: RetryBudget) -> None:
    budget.spend(first_retry=True)
    budget.spend(first_retry=False)


def test_the_budget_is_shared_with_processes_forked_after_it_was_made() -> None:
    budget = RetryBudget(limit=3)
    child = multiprocessing.get_context("fork").Process(target=_spend_twice, args=(budget,))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert budget.spend(first_retry=True) is True  # the third of three
    assert budget.spend(first_retry=True) is False
    assert (budget.counts().retries, budget.counts().requests_retried) == (3, 2)


def test_idle_connections_are_let_go_before_the_server_closes_them() -> None:
    """uvicorn closes a connection idle for 5 s; a request crossing that close is reset.

    The server resets a request that arrives on a connection idle 4.8 s or more (the last
    0.2 s before its 5 s close, when the close and the request cross); the client idles
    4.9 s between two rounds, which httpx's default 5 s keep-alive would still reuse.
    Keeping idle connections 2 s, the client opens new ones: no reset at all (not even
    one the retry would hide), and the POSTs never reuse a connection.
    """
    assert DEFAULT_KEEPALIVE_EXPIRY_S < 4.8
    behaviour = Misbehaviour(idle_race_s=4.8)
    log = new_log()
    with serving(misbehaving(behaviour)) as url, client_for(url, log) as client:
        for _round in range(2):
            assert client.get("/api/me").status_code == 200
            assert client.post("/api/boards/board_001/join", json={}).status_code == 200
            assert client.get("/api/boards/board_001/members").status_code == 200
            if _round == 0:
                time.sleep(4.9)  # the scenario: a client idle longer than the server keeps connections
    assert behaviour.resets == 0
    assert all(e.status == 200 for e in log.exchanges)
    # one kept-alive connection per round for the GETs, a connection of its own for each POST
    assert behaviour.connections == 4


# -- the probes that are not tests: the wait's health GET and the preflight's probe -----------------


def test_the_waits_health_probe_tolerates_one_reset() -> None:
    behaviour = Misbehaviour(reset={1})
    with serving(misbehaving(behaviour)) as url, httpx.Client() as http:
        answer = get_health(http, target_from_url(url), "/health")
    assert (answer.status, answer.error) == (200, None)
    assert behaviour.seen == ["GET /health", "GET /health"]


def test_the_waits_health_probe_reports_a_second_reset_as_no_answer() -> None:
    behaviour = Misbehaviour(reset={1, 2})
    with serving(misbehaving(behaviour)) as url, httpx.Client() as http:
        answer = get_health(http, target_from_url(url), "/health")
    assert answer.status is None and answer.error == "ReadError"


def test_the_preflight_probe_of_a_target_url_tolerates_one_reset() -> None:
    behaviour = Misbehaviour(reset={1})
    with serving(misbehaving(behaviour)) as url:
        assert probe_targets((target_from_url(url),), "/health") is None
    assert len(behaviour.seen) == 2
