"""What checking through the load balancer adds to a run: its checks, its AWS calls, its wall time.

    .venv/bin/python bench/bench_lb_checks.py [--runs 3]

Runs the whole suite (`pytest smoke`, as a CI job does) against the healthy stage without a
load balancer (the baseline) and with the stage's ALB in front of the service (the read-only
checks then also go through its listener, `lb`); prints the checks run, the preflight's AWS
calls (the terminal's "N AWS calls": discovery, the wait and the listener's four ELB calls)
and the wall time of each run. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stage import Stage, StageOptions  # noqa: E402
from tests.smoke_runs import run_smoke  # noqa: E402

AWS_CALLS = re.compile(r"; (\d+) AWS calls")


def one_run(load_balancer: bool) -> tuple[float, int, int, int]:
    """Wall time, checks, checks through the listener, AWS calls of the preflight."""
    with Stage(StageOptions(scenario="healthy", load_balancer=load_balancer)) as stage, \
            tempfile.TemporaryDirectory() as reports:
        began = time.perf_counter()
        run = run_smoke(stage.env, Path(reports), "--stable-timeout", "90")
        wall = time.perf_counter() - began
        if run.exit_code != 0:
            print(f"  run exited {run.exit_code}:\n{run.output[-2000:]}")
        checks = run.verdict["checks"]
        calls = AWS_CALLS.search(run.output)
        return wall, len(checks), sum(1 for c in checks if c["task_id"] == "lb"), int(calls.group(1)) if calls else -1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    cases = (("no load balancer (baseline)", False), ("behind the stage's ALB", True))
    # Alternated, so a busy moment of the machine weighs on both alike.
    results: dict[bool, list[tuple[float, int, int, int]]] = {False: [], True: []}
    for _ in range(runs):
        for _label, load_balancer in cases:
            results[load_balancer].append(one_run(load_balancer))
    for label, load_balancer in cases:
        walls = [r[0] for r in results[load_balancer]]
        _, checks, through_lb, calls = results[load_balancer][-1]
        print(f"{label}: {checks} checks ({through_lb} through the listener), {calls} AWS calls in the preflight; "
              f"wall {statistics.median(walls):.1f} s median of {runs} (min {min(walls):.1f}, max {max(walls):.1f})")


if __name__ == "__main__":
    main()
