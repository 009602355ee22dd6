"""What a task stopped mid-run costs a run: ``pytest smoke`` with each stop of ``tests/test_task_stopped.py``.

    .venv/bin/python bench/bench_task_stopped.py [--repeats 1]

For each row of the table (the stop, what the service starts instead) and for a run
with no stop, on a fresh 2-task stage: the run's exit code, its wall time, and how long
it waited for the replacement (the "ready after N s" / "waited N s" the report states).
Prints figures; asserts nothing.
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

from stage import Stage, StageOptions  # noqa: E402  (after the path set-up: bench/ runs as a script)
from tests.smoke_runs import run_smoke  # noqa: E402
from tests.test_task_stopped import CHECKS, ROWS, STABLE_TIMEOUT_S, run_with_a_task_stopped  # noqa: E402

# The report's own words: "re-ran on task B (..., ready after N s)" or, when none came, "(waited N s)".
WAITED = re.compile(r"ready after (\d+(?:\.\d+)?) s|\(waited (\d+(?:\.\d+)?) s\)")


def options() -> StageOptions:
    # startPeriod in real seconds (the default): on a busy machine a healthy task is never stopped for a slow boot.
    return StageOptions(scenario="healthy", restart_delay_s=0.2)


def one_run(row: object | None) -> tuple[int, float, float | None]:
    with Stage(options()) as stage, tempfile.TemporaryDirectory() as folder:
        began = time.monotonic()
        if row is None:
            run = run_smoke(stage.env, Path(folder) / "reports", "-k", CHECKS, "--stable-timeout", STABLE_TIMEOUT_S)
        else:
            run, _ = run_with_a_task_stopped(stage, Path(folder), row)  # type: ignore[arg-type]
        wall = time.monotonic() - began
        waited = WAITED.search(run.output)
        return run.exit_code, wall, float(next(g for g in waited.groups() if g)) if waited else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"{'stop':<36} {'exit':>4} {'run s (median)':>15} {'replacement wait s':>19}")
    for name, row in [("no stop", None), *((r.id, r) for r in ROWS)]:
        results = [one_run(row) for _ in range(args.repeats)]
        codes = sorted({code for code, _, _ in results})
        waits = [w for _, _, w in results if w is not None]
        wait = f"{statistics.median(waits):.1f}" if waits else "-"
        print(f"{name:<36} {','.join(map(str, codes)):>4} {statistics.median(w for _, w, _ in results):>15.1f} "
              f"{wait:>19}", flush=True)


if __name__ == "__main__":
    main()
