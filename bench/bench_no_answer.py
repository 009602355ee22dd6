"""Requests with no answer on a lossy loopback: how many are answered, retried, lost; what a fresh connection costs.

    .venv/bin/python bench/bench_no_answer.py [--requests 2000] [--reset-percent 3]

A loopback server (``tests/loopback.py``) resets a random few percent of requests
without answering. Through the harness's client (``ecs_verdict.http.recording_client``,
real backoff), GETs and POSTs are sent: GETs are retried, POSTs are not (NoAnswer).
Then the price of sending non-repeatable requests on a connection of their own: the
mean time of a POST on a fresh connection next to a GET on a kept-alive one.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ecs_verdict.http import ExchangeLog, NoAnswer, RetryBudget, recording_client  # noqa: E402
from ecs_verdict.redact import SecretRegistry  # noqa: E402
from tests.loopback import Misbehaviour, misbehaving, serving  # noqa: E402


def lossy(requests: int, percent: float, seed: int) -> None:
    rng = random.Random(seed)
    # Which arrivals are reset, drawn up front (retries are arrivals too).
    behaviour = Misbehaviour(reset={n for n in range(1, requests * 3) if rng.random() < percent / 100})
    budget = RetryBudget(limit=requests)  # the bench counts what retries cure, so the budget never binds
    outcome = {"GET": [0, 0], "POST": [0, 0]}  # answered, unanswered
    log = ExchangeLog(secrets=SecretRegistry())
    with serving(misbehaving(behaviour)) as url, recording_client(url, log, budget=budget) as client:
        for n in range(requests):
            method = "POST" if n % 5 == 4 else "GET"
            try:
                client.request(method, "/x", json={} if method == "POST" else None)
                outcome[method][0] += 1
            except NoAnswer:
                outcome[method][1] += 1
    counts = budget.counts()
    print(f"{requests} requests, {percent:g} % of arrivals reset ({behaviour.resets} resets):")
    for method, (answered, lost) in outcome.items():
        print(f"  {method:4} answered {answered}, no answer {lost}")
    print(f"  {counts.describe()}")


def connection_cost(rounds: int) -> None:
    log = ExchangeLog(secrets=SecretRegistry())
    behaviour = Misbehaviour()
    with serving(misbehaving(behaviour)) as url, recording_client(url, log) as client:
        client.get("/warm")
        gets, posts = [], []
        for _ in range(rounds):
            began = time.perf_counter()
            client.get("/x")
            gets.append(time.perf_counter() - began)
            began = time.perf_counter()
            client.post("/x", json={})
            posts.append(time.perf_counter() - began)
    print(f"{rounds} rounds on loopback: GET on a kept-alive connection {statistics.mean(gets) * 1000:.2f} ms, "
          f"POST on a fresh connection {statistics.mean(posts) * 1000:.2f} ms (mean); "
          f"{behaviour.connections} connections in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--reset-percent", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    lossy(args.requests, args.reset_percent, args.seed)
    connection_cost(500)


if __name__ == "__main__":
    main()
