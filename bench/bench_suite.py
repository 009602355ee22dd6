"""Wall time of ``pytest smoke`` once the stage is up: serial and ``-n 4``, at 0 and 100 ms added latency.

Prints figures and asserts nothing. Aims: under 3 s serially with no added
latency; at 100 ms, ``-n 4`` at most 0.4 of serial. Each figure is the median of
a few runs, measured from process start to exit (interpreter start, discovery
and the clean-up sweeps included), against a stage that is already stable.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stage import Stage, StageOptions  # noqa: E402  (after the path set-up: bench/ runs as a script)
from tests.smoke_runs import smoke_command, smoke_env  # noqa: E402

REPEATS = 3
LATENCIES_MS = (0, 100)
MODES: dict[str, list[str]] = {"serial": [], "-n 4": ["-n", "4"]}
SESSION_TIME = re.compile(r" in (\d+(?:\.\d+)?)s")  # pytest's final "19 passed in 3.50s"


def time_run(stage: Stage, workdir: Path, extra: list[str]) -> tuple[float, float, int]:
    """Wall seconds for one ``pytest smoke``, pytest's own session seconds, and the exit code."""
    command = smoke_command(workdir / "report", "-q", *extra, ledger=workdir / "ledger.jsonl")
    began = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, env=smoke_env(stage.env), capture_output=True, text=True)
    wall = time.perf_counter() - began
    found = SESSION_TIME.findall(completed.stdout)
    return wall, float(found[-1]) if found else float("nan"), completed.returncode


def main() -> int:
    figures: dict[tuple[int, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        workdir = Path(tmp)
        for latency in LATENCIES_MS:
            faults = (f"slow_ms={latency}",) if latency else ()
            with Stage(StageOptions(scenario="healthy", faults=faults)) as stage:
                for mode, extra in MODES.items():
                    times, sessions, codes = [], [], set()
                    for _ in range(REPEATS):
                        seconds, session, code = time_run(stage, workdir, extra)
                        times.append(seconds)
                        sessions.append(session)
                        codes.add(code)
                    figures[(latency, mode)] = statistics.median(times)
                    spread = f"{min(times):.2f}-{max(times):.2f}"
                    print(f"slow_ms={latency:<4} {mode:<7} median {figures[(latency, mode)]:6.2f} s wall "
                          f"(runs {spread} s; pytest session {statistics.median(sessions):.2f} s; "
                          f"exit {sorted(codes)})", flush=True)
    serial, parallel = figures[(100, "serial")], figures[(100, "-n 4")]
    print(f"serial at 0 ms: {figures[(0, 'serial')]:.2f} s (aim: under 3 s)")
    print(f"-n 4 / serial at 100 ms: {parallel / serial:.2f} (aim: at most 0.40)")
    print(f"CPUs here: {os.cpu_count()}; xdist starts 4 interpreters, which a small or busy machine pays for")
    return 0


if __name__ == "__main__":
    sys.exit(main())
