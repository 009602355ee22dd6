"""``make demo``: the stage with a healthy deployment, ``pytest smoke`` against it through ECS discovery.

The harness is given only the cluster and service names and the simulated AWS
endpoint, never a URL: it finds the tasks the way it would on real AWS.
Exit code: the harness's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from stage.deployment import Stage, StageOptions
from stage.errors import StageError

ROOT = Path(__file__).resolve().parent.parent
REPORT_DIR = ROOT / "reports"


def main(argv: list[str]) -> int:
    scenario = argv[0] if argv else "healthy"
    try:
        stage = Stage(StageOptions(scenario=scenario))
        print(f"demo: bringing up the local stage ({scenario})...", flush=True)
        stage.start()
    except StageError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    try:
        env = {**os.environ, **stage.env}
        env.pop("AWS_PROFILE", None)
        command = [sys.executable, "-m", "pytest", "smoke", "--report-dir", str(REPORT_DIR), *argv[1:]]
        print(f"demo: {' '.join(command[2:])}  (cluster {env['ECS_CLUSTER']}, service {env['ECS_SERVICE']})",
              flush=True)
        code = subprocess.call(command, cwd=ROOT, env=env)
    finally:
        stage.stop()
    verdict_path = REPORT_DIR / "verdict.json"
    if verdict_path.exists():
        verdict = json.loads(verdict_path.read_text())
        checks = verdict["checks"]
        passed = sum(1 for c in checks if c["outcome"] == "passed")
        print(f"demo: verdict {verdict['verdict'].upper()} (exit {verdict['exit_code']}): "
              f"{passed}/{len(checks)} checks passed on {len(verdict['tasks'])} tasks")
    print(f"demo: reports in {REPORT_DIR} (verdict.json, summary.md, junit.xml, allure-results/)")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
