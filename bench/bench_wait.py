"""How soon after a rolling deploy settles the harness starts testing, next to boto3's waiter.

    .venv/bin/python bench/bench_wait.py [--runs 1] [--rolling-delay 3]

What is measured, per run, against ONE fresh ``rolling`` stage (an old deployment
serving, a new PRIMARY one that begins ``--rolling-delay`` seconds after the stage
is up and takes over once its tasks are healthy):

- the harness: ``pytest smoke`` started as a subprocess the moment the stage is up,
  so it has to wait through the roll-out. Its latency is from ``stage.stable_at``
  (the wall time the stage marked the roll-out COMPLETED) to the start of its first
  test (min ``start`` over ``allure-results/*-result.json``); its AWS calls are the
  ones its stability wait made ("waited X s for the deployment; N AWS calls").
- the runbook's way: in a thread of the same run, boto3's ``services_stable`` waiter
  at its defaults (a DescribeServices every 15 s, 40 attempts) on its own client.
  Its latency is from ``stage.stable_at`` to the moment ``wait()`` returned; its AWS
  calls are counted on that client's ``before-call`` event.

Why: the runbook's ``aws ecs wait services-stable`` sleeps 15 s between looks, so it
notices a finished deploy up to 15 s late, and its success condition (one deployment,
running == desired) knows nothing of health or of which revision runs. The aim is a
harness testing at least 7 times sooner than the waiter returns. The waiter's own
verdict is printed as it happened: it may return before ``stable_at`` (a stable-looking
but unfinished service) or fail; the last DescribeServices it saw is shown.

The waiter's lag is luck of phase: it looks at launch and every 15 s after, so its lag
is the rest of the 15 s cycle in which ``stable_at`` falls (7.5 s averaged over all
phases); each run prints where that was. The harness's lag is split into the end of its
stability wait (a "deployment settled" line, timed as it is written) and the pytest work
before its first test. Both clocks are ``time.time()`` on this machine (the harness is a
child process). Prints figures, and medians over ``--runs``; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import WaiterError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stage import Stage, StageOptions  # noqa: E402 - needs ROOT on the path when run as a script

DEFAULT_ROLLING_DELAY_S = 3.0
HARNESS_TIMEOUT_S = 300.0
# The waiter's defaults, as boto3 ships them (ecs services_stable: delay 15, maxAttempts 40).
WAITER_DEFAULT_BUDGET_S = 15 * 40
AIM_RATIO = 7.0
WAITER_DELAY_S = 15
WAITED_LINE = re.compile(r"waited ([0-9.]+) s for the deployment; (\d+) AWS calls")
SETTLED_LINE = "deployment settled after"


@dataclass(frozen=True, slots=True)
class HarnessFigures:
    """What ``pytest smoke`` did in one run."""

    exit_code: int
    settled_at: float | None  # wall time its "deployment settled" line arrived (end of its wait)
    first_test_at: float | None  # wall time of the first test's start (allure), None if no test ran
    waited_s: float | None
    aws_calls: int | None
    verdict: str | None


@dataclass(frozen=True, slots=True)
class WaiterFigures:
    """What boto3's ``services_stable`` waiter did in one run."""

    returned_at: float
    succeeded: bool
    error: str
    aws_calls: int
    last_seen: str  # the last DescribeServices it read, in a few words


@dataclass(frozen=True, slots=True)
class RunFigures:
    """One run: both contenders against one stage, timed from its ``stable_at``."""

    launched_at: float
    stable_at: float | None
    harness: HarnessFigures
    waiter: WaiterFigures

    @property
    def harness_latency_s(self) -> float | None:
        if self.stable_at is None or self.harness.first_test_at is None:
            return None
        return self.harness.first_test_at - self.stable_at

    @property
    def waiter_latency_s(self) -> float | None:
        if self.stable_at is None:
            return None
        return self.waiter.returned_at - self.stable_at

    @property
    def ratio(self) -> float | None:
        harness, waiter = self.harness_latency_s, self.waiter_latency_s
        if harness is None or waiter is None or harness <= 0:
            return None
        return waiter / harness


class CountedWaiter:
    """boto3's ``services_stable`` waiter at its defaults, on its own counted ECS client."""

    def __init__(self, stage: Stage) -> None:
        env = stage.env
        session = boto3.session.Session(
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        self._ecs = session.client("ecs", endpoint_url=env["AWS_ENDPOINT_URL"])
        self._cluster, self._service = env["ECS_CLUSTER"], env["ECS_SERVICE"]
        self._calls = 0
        self._last_seen = "no answer"
        self._lock = threading.Lock()
        self._ecs.meta.events.register("before-call", self._count)
        self._ecs.meta.events.register("after-call.ecs.DescribeServices", self._remember)
        self.figures: WaiterFigures | None = None
        self._thread = threading.Thread(target=self._run, name="services-stable-waiter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> WaiterFigures:
        self._thread.join(WAITER_DEFAULT_BUDGET_S + 60)
        if self.figures is None:
            raise RuntimeError("the services_stable waiter outlived its own default budget")
        return self.figures

    def _count(self, **_: Any) -> None:
        with self._lock:
            self._calls += 1

    def _remember(self, parsed: dict[str, Any] | None = None, **_: Any) -> None:
        services = (parsed or {}).get("services") or []
        if not services:
            return
        service = services[0]
        rollouts = ", ".join(
            f"{d.get('status')}/{d.get('rolloutState')} {d.get('runningCount')}/{d.get('desiredCount')}"
            for d in service.get("deployments", [])
        )
        with self._lock:
            self._last_seen = (
                f"{len(service.get('deployments', []))} deployment(s) [{rollouts}], "
                f"running {service.get('runningCount')}/{service.get('desiredCount')}"
            )

    def _run(self) -> None:
        succeeded, error = True, ""
        try:
            # No WaiterConfig: delay 15 s, 40 attempts, exactly what the runbook's CLI call uses.
            self._ecs.get_waiter("services_stable").wait(cluster=self._cluster, services=[self._service])
        except WaiterError as failure:
            succeeded, error = False, str(failure).splitlines()[0]
        returned_at = time.time()
        with self._lock:
            self.figures = WaiterFigures(returned_at, succeeded, error, self._calls, self._last_seen)


def first_test_start(allure_dir: Path) -> float | None:
    """Wall time (s) of the earliest test start in the allure results, None when there are none."""
    starts = []
    for path in allure_dir.glob("*-result.json"):
        start = json.loads(path.read_text(encoding="utf-8")).get("start")
        if start is not None:
            starts.append(start / 1000)
    return min(starts) if starts else None


def harness_figures(exit_code: int, output: str, settled_at: float | None, report_dir: Path) -> HarnessFigures:
    """Read the harness's terminal summary, verdict.json and allure results."""
    match = WAITED_LINE.search(output)
    verdict_path = report_dir / "verdict.json"
    verdict = json.loads(verdict_path.read_text(encoding="utf-8"))["verdict"] if verdict_path.exists() else None
    return HarnessFigures(
        exit_code=exit_code,
        settled_at=settled_at,
        first_test_at=first_test_start(report_dir / "allure-results"),
        waited_s=float(match.group(1)) if match else None,
        aws_calls=int(match.group(2)) if match else None,
        verdict=verdict,
    )


def run_once(rolling_delay_s: float, keep_output: bool) -> RunFigures:
    """One stage, the harness and the waiter started together right after it is up."""
    stage = Stage(StageOptions(scenario="rolling", rolling_delay_s=rolling_delay_s))
    stage.start()  # cleans up after itself if it fails
    report_dir = Path(tempfile.mkdtemp(prefix="bench-wait-"))
    harness: subprocess.Popen[str] | None = None
    try:
        # Unbuffered so that the "deployment settled" line is timed when the harness writes it.
        env = {**os.environ, **stage.env, "PYTHONUNBUFFERED": "1"}
        env.pop("AWS_PROFILE", None)
        command = [sys.executable, "-m", "pytest", "smoke", "--report-dir", str(report_dir)]
        waiter = CountedWaiter(stage)
        launched_at = time.time()
        harness = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        waiter.start()
        watchdog = threading.Timer(HARNESS_TIMEOUT_S, harness.kill)
        watchdog.start()
        lines, settled_at = [], None
        assert harness.stdout is not None
        for line in harness.stdout:
            if settled_at is None and line.startswith(SETTLED_LINE):
                settled_at = time.time()
            lines.append(line)
        exit_code = harness.wait()
        watchdog.cancel()
        waiter_figures = waiter.join()
        output = "".join(lines)
        if keep_output:
            print(output)
        figures = RunFigures(launched_at, stage.stable_at,
                             harness_figures(exit_code, output, settled_at, report_dir), waiter_figures)
    finally:
        if harness is not None and harness.poll() is None:  # interrupted: leave no harness behind
            harness.kill()
            harness.wait()
        stage.stop()
        shutil.rmtree(report_dir, ignore_errors=True)
    return figures


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f} s"


def print_run(index: int, run: RunFigures) -> None:
    """One run's table: each contender from stable_at and from the launch, its AWS calls, its outcome."""
    def since(at: float | None) -> float | None:
        return None if at is None else at - run.launched_at

    h, w = run.harness, run.waiter
    stable = since(run.stable_at)
    phase = "" if stable is None else (
        f"; the waiter's next look after it was due near +{WAITER_DELAY_S * (stable // WAITER_DELAY_S + 1):.0f} s"
    )
    print(f"run {index}: roll-out marked stable {seconds(stable)} after launch{phase}")
    print(f"  {'':8} {'from stable_at':>15} {'from launch':>12} {'AWS calls':>10}  outcome")
    print(f"  {'harness':8} {seconds(run.harness_latency_s):>15} {seconds(since(h.first_test_at)):>12} "
          f"{h.aws_calls if h.aws_calls is not None else '—':>10}  exit {h.exit_code}, verdict {h.verdict}, "
          f"its wait {h.waited_s} s")
    outcome = "succeeded" if w.succeeded else f"FAILED: {w.error}"
    print(f"  {'waiter':8} {seconds(run.waiter_latency_s):>15} {seconds(since(w.returned_at)):>12} "
          f"{w.aws_calls:>10}  {outcome}")
    if run.stable_at is not None and h.settled_at is not None and h.first_test_at is not None:
        print(f"  harness split: its wait ended {seconds(h.settled_at - run.stable_at)} after stable_at, "
              f"first test {h.first_test_at - h.settled_at:.2f} s later (pytest start-up of the tests)")
    if w.succeeded and (run.stable_at is None or w.returned_at < run.stable_at):
        print("  note: the waiter called the service stable BEFORE the stage marked the roll-out COMPLETED")
    print(f"  waiter's last look: {w.last_seen}")
    print(f"  ratio waiter/harness (from stable_at): {ratio_text(run.ratio)}")


def ratio_text(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.1f}x (aim >= {AIM_RATIO:.0f}x)"


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs, each on a new stage (default 1)")
    parser.add_argument("--rolling-delay", type=float, default=DEFAULT_ROLLING_DELAY_S,
                        help=f"seconds before the new deployment begins (default {DEFAULT_ROLLING_DELAY_S})")
    parser.add_argument("--show-output", action="store_true", help="print the harness's terminal output")
    args = parser.parse_args()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} (other work on the machine moves these figures)")
    runs = []
    for index in range(1, args.runs + 1):
        run = run_once(args.rolling_delay, args.show_output)
        print_run(index, run)
        runs.append(run)
    harness = median([r.harness_latency_s for r in runs])
    waiter = median([r.waiter_latency_s for r in runs])
    print(f"\nmedians over {len(runs)} run(s), rolling delay {args.rolling_delay:g} s:")
    print(f"  harness starts testing {seconds(harness)} after stable_at, "
          f"{median([r.harness.aws_calls for r in runs])} AWS calls to wait")
    print(f"  waiter returns         {seconds(waiter)} after stable_at, "
          f"{median([r.waiter.aws_calls for r in runs])} AWS calls "
          f"({sum(r.waiter.succeeded for r in runs)}/{len(runs)} succeeded, "
          f"{sum(1 for r in runs if r.waiter.succeeded and (r.stable_at is None or r.waiter.returned_at < r.stable_at))} "
          "of them before stable_at)")
    print(f"  ratio waiter/harness: {ratio_text(median([r.ratio for r in runs]))}")


if __name__ == "__main__":
    main()
