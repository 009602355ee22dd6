"""The harness reused for another service: a health-only suite, a non-CivicForge app, no edit to the harness.

The stage runs ``tests/apps/health_app.py`` as the service's tasks (``--app-cmd``);
``examples/another_service`` is listed in ``smoke_suites`` on the command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.smoke_runs import ROOT, RUN_TIMEOUT_S, smoke_env

APP = ROOT / "tests" / "apps" / "health_app.py"
SUITE = "examples/another_service"


def test_a_second_suite_runs_on_the_generic_harness_alone(stage_factory: Any, tmp_path: Path) -> None:
    stage = stage_factory("healthy", app_cmd=f"{sys.executable} {APP} {{host}} {{port}}")
    env = {**smoke_env(stage.env), "SMOKE_SECRET": ""}  # this service has no CivicForge smoke accounts
    command = [sys.executable, "-m", "pytest", SUITE, "-o", f"smoke_suites={SUITE}", "-p", "no:cacheprovider",
               "--report-dir", str(tmp_path / "reports"), "--ledger", str(tmp_path / "ledger.jsonl")]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    verdict = json.loads((tmp_path / "reports" / "verdict.json").read_text())
    assert {(c["name"], c["outcome"]) for c in verdict["checks"]} == {("test_health_answers_200", "passed")}
    assert {c["task_id"] for c in verdict["checks"]} == set(stage.task_ips())
    assert "health-path: /health (from task definition)" in output
    assert "smoke clean-up" not in output and not (tmp_path / "ledger.jsonl").exists()  # no CivicForge sweeps
