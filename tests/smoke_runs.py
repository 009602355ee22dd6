"""Run `pytest smoke` the way a CI job does: a subprocess, the stage's environment, a report folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 240
XDIST_WORKER_VARIABLES = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")


@dataclass(frozen=True)
class SmokeRun:
    exit_code: int
    output: str
    report_dir: Path

    @property
    def verdict(self) -> dict[str, Any]:
        path = self.report_dir / "verdict.json"
        assert path.exists(), f"no verdict.json (exit {self.exit_code}):\n{self.output[-3000:]}"
        return json.loads(path.read_text())

    def outcomes(self) -> dict[tuple[str, str | None], str]:
        """(check name, task id) -> outcome, from verdict.json."""
        return {(c["name"], c["task_id"]): c["outcome"] for c in self.verdict["checks"]}

    def failing(self) -> dict[tuple[str, str | None], str]:
        """(check name, task id) -> message, for every check that did not pass."""
        return {(c["name"], c["task_id"]): c["message"] for c in self.verdict["checks"] if c["outcome"] != "passed"}

    def categories(self) -> set[str]:
        return {d["category"] for d in self.verdict["diagnoses"]}

    def diagnoses(self, category: str) -> list[dict[str, Any]]:
        return [d for d in self.verdict["diagnoses"] if d["category"] == category]


def smoke_command(report_dir: Path, *args: str, ledger: Path | None = None) -> list[str]:
    # Each run gets its own ledger beside its report folder: runs of different tests never share one.
    ledger = ledger or report_dir.with_name(report_dir.name + ".ledger.jsonl")
    return [sys.executable, "-m", "pytest", "smoke", "--report-dir", str(report_dir), "--ledger", str(ledger),
            "-p", "no:cacheprovider", *args]


def smoke_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment plus ``env`` (usually ``stage.env``), without a profile to override it."""
    full = {**os.environ, **env}
    full.pop("AWS_PROFILE", None)
    for name in XDIST_WORKER_VARIABLES:  # set when this suite runs under xdist; a CI job's run has none
        full.pop(name, None)
    return full


def with_plugin(folder: Path, name: str, source: str, env: dict[str, str]) -> dict[str, str]:
    """``env`` for a run given ``-p NAME``: the test's own pytest plugin ``source``, written to ``folder``."""
    (folder / f"{name}.py").write_text(source)
    return {**env, "PYTHONPATH": f"{folder}{os.pathsep}{ROOT}"}


def run_smoke(env: dict[str, str], report_dir: Path, *args: str, ledger: Path | None = None,
              timeout_s: float = RUN_TIMEOUT_S) -> SmokeRun:
    """``pytest smoke ARGS`` against whatever ``env`` points at."""
    result = subprocess.run(smoke_command(report_dir, *args, ledger=ledger), cwd=ROOT, env=smoke_env(env),
                            capture_output=True, text=True, timeout=timeout_s)
    return SmokeRun(result.returncode, result.stdout + result.stderr, report_dir)
