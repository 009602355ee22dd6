"""What the private-service gate costs over the run it starts: ``ecs-verdict-remote`` on the stage.

    .venv/bin/python bench/bench_private_gate.py [--repeats 1] [--poll 0.2 2]

On one healthy stage with the canary stack and a results bucket: a local
``pytest smoke --read-only --address private`` run, then the private gate (same arguments, in
the "VPC") at each poll interval. For each: the exit code, the caller's wall time, the in-VPC
run's own wall time (as the stage played it), the gate's overhead (the difference: RunTask,
polling, the reports' round trip through S3) and the reports it brought back. Prints figures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stage import Stage, StageOptions  # noqa: E402  (after the path set-up: bench/ runs as a script)
from stage.seed import CLUSTER, SERVICE, SMOKE_SECRET  # noqa: E402
from tests.smoke_runs import run_smoke, smoke_env  # noqa: E402

BUCKET = "bench-smoke-results"


def gate_run(stage: Stage, folder: Path, poll_s: float) -> tuple[int, float, float, int]:
    runs_before = len(stage.harness_tasks.runs)  # type: ignore[union-attr]
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "ecs_verdict.remote", "--ecs-cluster", CLUSTER, "--ecs-service",
                           SERVICE, "--results-uri", f"s3://{BUCKET}/bench", "--report-dir", str(folder),
                           "--poll-interval", str(poll_s), "--", "--read-only", "--smoke-secret", SMOKE_SECRET],
                          cwd=ROOT, env=smoke_env(stage.env), capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - began
    played = stage.harness_tasks.runs[runs_before].run  # type: ignore[union-attr]
    in_vpc = (played.stopped_at - played.started_at).total_seconds() if played else float("nan")
    files = sum(1 for path in folder.rglob("*") if path.is_file())
    return done.returncode, wall, in_vpc, files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--poll", type=float, nargs="+", default=[0.2, 2.0])
    args = parser.parse_args()
    with Stage(StageOptions(scenario="healthy")) as stage:
        stage.install_canary()
        stage.client("s3").create_bucket(Bucket=BUCKET)
        print(f"{'run':<26} {'exit':>4} {'caller s':>9} {'in-VPC s':>9} {'overhead s':>11} {'files':>6}")
        with tempfile.TemporaryDirectory() as tmp:
            local = []
            for index in range(args.repeats):
                began = time.monotonic()
                run = run_smoke(stage.env, Path(tmp) / f"local-{index}", "--read-only", "--address", "private")
                local.append((run.exit_code, time.monotonic() - began))
            wall = statistics.median(w for _, w in local)
            codes = ",".join(map(str, sorted({c for c, _ in local})))
            print(f"{'local pytest smoke':<26} {codes:>4} {wall:>9.1f} {'-':>9} {'-':>11} {'-':>6}", flush=True)
            for poll in args.poll:
                results = [gate_run(stage, Path(tmp) / f"gate-{poll}-{i}", poll) for i in range(args.repeats)]
                codes = ",".join(map(str, sorted({r[0] for r in results})))
                caller = statistics.median(r[1] for r in results)
                in_vpc = statistics.median(r[2] for r in results)
                files = statistics.median(r[3] for r in results)
                print(f"{f'private gate, poll {poll:g} s':<26} {codes:>4} {caller:>9.1f} {in_vpc:>9.1f} "
                      f"{caller - in_vpc:>11.1f} {files:>6.0f}", flush=True)


if __name__ == "__main__":
    main()
