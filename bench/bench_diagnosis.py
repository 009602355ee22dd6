"""What diagnosis adds to a failing run (aim: at most 2 s).

    .venv/bin/python bench/bench_diagnosis.py [--runs 3]

For each failing case (a 500 on one task; a deploy whose tasks keep dying), run
`pytest smoke` against the stage and read how long diagnosis and lint took from the
verdict (its ``diagnosis_s``, measured inside the run around the evidence
gathering, classification and lint), next to the wall time of the whole run and of a
passing run on the same machine in the same session (the baseline).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stage import Stage, StageOptions  # noqa: E402
from tests.smoke_runs import run_smoke  # noqa: E402

CASES = [
    ("passing (baseline)", "healthy", ()),
    ("500 on one task", "one_bad_task", ()),
    ("tasks keep dying", "restart_loop", ()),
]


def one_run(scenario: str, faults: tuple[str, ...]) -> tuple[float, float | None, int]:
    # startPeriod x 0.125 as in the tests: a restart loop shows within seconds, not the real 60 s.
    with Stage(StageOptions(scenario=scenario, faults=faults, restart_delay_s=0.2, start_period_scale=0.125)) as stage, \
            tempfile.TemporaryDirectory() as reports:
        began = time.perf_counter()
        run = run_smoke(stage.env, Path(reports), "--stable-timeout", "90")
        wall = time.perf_counter() - began
        took = run.verdict.get("diagnosis_s")  # on a passing run: the task definition lint alone
        return wall, took, run.exit_code


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    print(f"{'case':22} {'exit':>4} {'run wall s':>11} {'diagnosis s':>12} {'share':>7}")
    for label, scenario, faults in CASES:
        results = [one_run(scenario, faults) for _ in range(runs)]
        wall = statistics.median(r[0] for r in results)
        took = [r[1] for r in results if r[1] is not None]
        diag = statistics.median(took) if took else 0.0
        print(f"{label:22} {results[0][2]:>4} {wall:>11.2f} {diag:>12.2f} {diag / wall:>6.0%}"
              f"   (max diagnosis {max(took, default=0.0):.2f} s over {runs} runs; aim <= 2 s)")


if __name__ == "__main__":
    main()
