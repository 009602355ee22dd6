"""Time to bring the stage up (first moto call included) and its memory.

    .venv/bin/python bench/bench_stage.py [--runs 3]

Each run is a fresh process, so moto's lazy backend loading is paid every time,
as a CI job pays it. Prints figures; asserts nothing. Aim: under 3 s.
Baseline in the same run: a bare ThreadedMotoServer answering one ECS call,
so the ratio shows what the stage adds over moto itself on this machine today.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STAGE_UP = """
import json, resource, time
began = time.perf_counter()
from stage import Stage, StageOptions
stage = Stage(StageOptions(scenario="healthy"))
stage.start()
up = time.perf_counter() - began

def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024

tasks = [rss_mb(t.process.pid) for t in stage.scheduler.live_tasks() if t.process is not None]
stage.stop()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"up_s": up, "rss_mb": rss, "task_rss_mb": max(tasks), "tasks": len(tasks)}))
"""

MOTO_ONLY = """
import json, time
began = time.perf_counter()
import boto3
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
ecs = boto3.client("ecs", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
ecs.create_cluster(clusterName="baseline")
print(json.dumps({"up_s": time.perf_counter() - began}))
server.stop()
"""


def measure(code: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    stage = [measure(STAGE_UP) for _ in range(runs)]
    moto = [measure(MOTO_ONLY) for _ in range(runs)]
    up = statistics.median(r["up_s"] for r in stage)
    base = statistics.median(r["up_s"] for r in moto)
    print(f"stage up (healthy, 2 tasks, first moto call included): median {up:.2f} s over {runs} runs "
          f"(min {min(r['up_s'] for r in stage):.2f}, max {max(r['up_s'] for r in stage):.2f}); aim < 3 s")
    print(f"baseline, bare moto server + first ECS call:            median {base:.2f} s")
    print(f"ratio stage/baseline: {up / base:.1f}x")
    print(f"memory: stage process (moto + scheduler) peak RSS {statistics.median(r['rss_mb'] for r in stage):.0f} MB; "
          f"each task process about {statistics.median(r['task_rss_mb'] for r in stage):.0f} MB RSS "
          f"({stage[0]['tasks']} tasks, plus {2} warm spares)")


if __name__ == "__main__":
    main()
