"""The target health wait's AWS calls per second: a service behind a load balancer, at 24 tasks.

    .venv/bin/python bench/bench_target_health.py [--tasks 24]

Three runs of ``pytest smoke --read-only``, each against a fresh stage of ``--tasks`` tasks,
the harness started the moment the stage is up:

- ``rolling`` without a load balancer: the wait's baseline (describe_services, the tasks, the ENIs);
- ``rolling`` behind the stage's ALB: the same wait plus the target groups' settings (once) and
  their target health (one DescribeTargetHealth per group per read, every target at once, reads at
  least 2 s apart) until every new task is healthy and the old targets drain;
- ``healthy`` with ``sg_blocks_lb``: the longest target wait there is, ELB calling every target
  unhealthy (Target.Timeout) until the target group's recovery time (HealthyThresholdCount x
  interval + timeout) has passed and the run ends on the finding.

For each: the wait's seconds and AWS calls (the harness's own count, its terminal's "waited
... s for the deployment; N AWS calls" line), calls per second, and the elbv2 calls among them
(moto's count by operation: the stage itself never reads target health or target groups).
Prints figures and the aim; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stage import Stage, StageOptions  # noqa: E402  (after the path set-up: bench/ runs as a script)
from tests.smoke_runs import smoke_command, smoke_env  # noqa: E402

WAITED = re.compile(r"waited (\d+(?:\.\d+)?) s for the deployment; (\d+) AWS calls")
HARNESS_TIMEOUT_S = 600
ELB_READS = ("elbv2.DescribeTargetGroups", "elbv2.DescribeTargetHealth")
AIM_CALLS_PER_S = 2.5  # bench_scale's aim for the wait at 24 tasks


@dataclass(frozen=True, slots=True)
class Case:
    label: str
    scenario: str
    load_balancer: bool
    lb_faults: tuple[str, ...] = ()


CASES = (
    Case("rolling, no load balancer", "rolling", False),
    Case("rolling, behind the ALB", "rolling", True),
    Case("sg_blocks_lb (unhealthy until ELB's recovery time)", "healthy", True, ("sg_blocks_lb",)),
)


def run(case: Case, tasks: int, workdir: Path) -> str:
    options = StageOptions(scenario=case.scenario, tasks=tasks, rolling_delay_s=3.0, load_balancer=case.load_balancer,
                           lb_faults=case.lb_faults)
    with Stage(options) as stage:
        report = workdir / case.label.split()[0].strip(",")
        result = subprocess.run(smoke_command(report, "-q", "--read-only", "--stable-timeout", "300",
                                              ledger=workdir / "ledger.jsonl"),
                                cwd=ROOT, env=smoke_env(stage.env), capture_output=True, text=True,
                                timeout=HARNESS_TIMEOUT_S)
        elb = {name.removeprefix("elbv2."): stage.aws_calls.get(name, 0) for name in ELB_READS}
    waited = WAITED.findall(result.stdout)
    verdict = report / "verdict.json"
    causes = sorted({d["category"] for d in json.loads(verdict.read_text())["diagnoses"]}) if verdict.exists() else []
    if not waited:
        return f"{case.label}: no wait line (exit {result.returncode}, causes {causes})"
    seconds, calls = float(waited[-1][0]), int(waited[-1][1])
    rate = calls / seconds if seconds else float("nan")
    health_rate = elb["DescribeTargetHealth"] / seconds if seconds else float("nan")
    return (f"{case.label}: waited {seconds:.1f} s, {calls} AWS calls = {rate:.2f} calls/s; elbv2 "
            f"DescribeTargetGroups {elb['DescribeTargetGroups']}, DescribeTargetHealth "
            f"{elb['DescribeTargetHealth']} ({health_rate:.2f}/s) (exit {result.returncode}, causes {causes or 'none'})")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=24)
    args = parser.parse_args()
    print(f"CPU cores here: {os.cpu_count()}; load average at start: {os.getloadavg()[0]:.1f}; "
          f"tasks: {args.tasks}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-target-health-") as tmp:
        for case in CASES:
            print(run(case, args.tasks, Path(tmp)), flush=True)
    print(f"aim (printed, not asserted): the wait at {AIM_CALLS_PER_S} AWS calls/s or fewer, behind a load "
          "balancer as without")
    return 0


if __name__ == "__main__":
    sys.exit(main())
