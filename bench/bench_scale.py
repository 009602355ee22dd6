"""Cost as the service grows: ``pytest smoke`` at 2, 8 and 24 tasks, serial and every task at once.

    .venv/bin/python bench/bench_scale.py [--repeats 1] [--tasks 2 8 24]

For each task count, at 0 and 50 ms added latency per response (the stand-in's
``slow_ms``; 2 tasks also at 100 ms), it prints the wall time of ``pytest smoke``
against a stage that is already stable, ``--serial`` and the default (one forked lane
per task), and the harness's memory: the peak RSS of its largest process (what
``getrusage(RUSAGE_CHILDREN)`` reports around the run: the harness or one of its lanes,
which are forks of it) and the peak of the whole tree's PSS (shared pages counted once).
Then, per task count, a rolling deploy is waited for from its start: AWS calls the
harness made during the wait, counted by its own boto3 event hook (the terminal's
"waited ... s; N AWS calls" line), per second. Prints figures and aims; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stage import Stage, StageOptions  # noqa: E402  (after the path set-up: bench/ runs as a script)
from tests.smoke_runs import smoke_command, smoke_env  # noqa: E402

MODES: dict[str, list[str]] = {"serial": ["--serial"], "default": []}
WAITED = re.compile(r"waited (\d+(?:\.\d+)?) s for the deployment; (\d+) AWS calls")
# Runs a command and prints the largest RSS among the processes it waited for (KB on Linux).
MEASURED = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code, file=sys.stderr)")


def tree_pss_kb(root: int) -> int:
    """PSS of ``root`` and every descendant, in KB (0 for processes that are gone)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
                total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            continue
    return total


def run_harness(stage: Stage, workdir: Path, extra: list[str]) -> dict[str, float]:
    """One ``pytest smoke``: wall seconds, exit code, peak single-process RSS and peak tree PSS (MB)."""
    command = [sys.executable, "-c", MEASURED,
               *smoke_command(workdir / "report", "-q", *extra, ledger=workdir / "ledger.jsonl")]
    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=smoke_env(stage.env), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    peak_pss = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):  # a sampling period, not synchronisation
            peak_pss[0] = max(peak_pss[0], tree_pss_kb(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - began
    done.set()
    sampler.join()
    rss_kb, code = (int(part) for part in stderr.strip().splitlines()[-1].split())
    waited = WAITED.findall(stdout)
    seconds, calls = (float(waited[-1][0]), int(waited[-1][1])) if waited else (float("nan"), 0)
    return {"wall_s": wall, "exit": code, "rss_mb": rss_kb / 1024, "pss_mb": peak_pss[0] / 1024,
            "waited_s": seconds, "aws_calls": calls}


def measure(stage: Stage, workdir: Path, extra: list[str], repeats: int) -> dict[str, float]:
    runs = [run_harness(stage, workdir, extra) for _ in range(repeats)]
    return {"wall_s": statistics.median(r["wall_s"] for r in runs), "exit": max(r["exit"] for r in runs),
            "rss_mb": max(r["rss_mb"] for r in runs), "pss_mb": max(r["pss_mb"] for r in runs)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 8, 24])
    args = parser.parse_args()
    print(f"CPU cores here: {os.cpu_count()}; load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    walls: dict[tuple[int, int, str], float] = {}
    rss: dict[int, float] = {}
    waits: dict[int, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        workdir = Path(tmp)
        for tasks in args.tasks:
            for latency in (0, 50, 100) if tasks == 2 else (0, 50):
                faults = (f"slow_ms={latency}",) if latency else ()
                began = time.perf_counter()
                with Stage(StageOptions(scenario="healthy", tasks=tasks, faults=faults)) as stage:
                    up = time.perf_counter() - began
                    for mode, extra in MODES.items():
                        figure = measure(stage, workdir, extra, args.repeats)
                        walls[(tasks, latency, mode)] = figure["wall_s"]
                        if mode == "default" and latency == 0:
                            rss[tasks] = figure["rss_mb"]
                        print(f"tasks={tasks:<3} slow_ms={latency:<4} {mode:<8} {figure['wall_s']:6.2f} s wall "
                              f"(exit {figure['exit']:.0f}); largest process {figure['rss_mb']:.0f} MB RSS, "
                              f"whole harness {figure['pss_mb']:.0f} MB PSS  [stage up in {up:.1f} s]", flush=True)
            with Stage(StageOptions(scenario="rolling", tasks=tasks, rolling_delay_s=3.0)) as stage:
                figure = run_harness(stage, workdir, [])
                waits[tasks] = (figure["waited_s"], int(figure["aws_calls"]))
                rate = figure["aws_calls"] / figure["waited_s"] if figure["waited_s"] else float("nan")
                print(f"tasks={tasks:<3} rolling deploy: waited {figure['waited_s']:.1f} s, "
                      f"{figure['aws_calls']:.0f} AWS calls by the harness = {rate:.2f} calls/s "
                      f"(exit {figure['exit']:.0f})", flush=True)
    print()
    print("aims (printed, not asserted):")
    largest = max(args.tasks)
    if 2 in args.tasks:
        if largest != 2:
            ratio = walls[(largest, 50, "default")] / walls[(2, 50, "default")]
            print(f"  at 50 ms, {largest} tasks / 2 tasks wall (default): {ratio:.2f} (aim <= 2; serial: "
                  f"{walls[(largest, 50, 'serial')] / walls[(2, 50, 'serial')]:.2f})")
        print(f"  at 100 ms, 2 tasks, default / serial: "
              f"{walls[(2, 100, 'default')] / walls[(2, 100, 'serial')]:.2f} (aim <= 0.5)")
        print(f"  pytest smoke at 0 ms, 2 tasks (default): {walls[(2, 0, 'default')]:.2f} s wall (aim <= 3 s)")
    print(f"  largest harness process at {largest} tasks: {rss[largest]:.0f} MB RSS (aim <= 200 MB)")
    seconds, calls = waits[largest]
    print(f"  wait at {largest} tasks: {calls / seconds:.2f} AWS calls/s over {seconds:.1f} s (aim <= 2.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
