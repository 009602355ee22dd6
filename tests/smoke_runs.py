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


@dataclass(frozen=True)
class SmokeRun:
    returncode: int
    output: str
    report_dir: Path

    @property
    def verdict(self) -> dict[str, Any]:
        return json.loads((self.report_dir / "verdict.json").read_text())

    def outcomes(self) -> dict[tuple[str, str | None], str]:
        """(check name, task id) -> outcome, from verdict.json."""
        return {(c["name"], c["task_id"]): c["outcome"] for c in self.verdict["checks"]}

    def categories(self) -> set[str]:
        return {d["category"] for d in self.verdict["diagnoses"]}


def run_smoke(env: dict[str, str], report_dir: Path, *args: str, timeout_s: float = 240) -> SmokeRun:
    """``pytest smoke ARGS`` against whatever ``env`` points at (usually ``stage.env``)."""
    full_env = {**os.environ, **env}
    full_env.pop("AWS_PROFILE", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "smoke", "--report-dir", str(report_dir), "-p", "no:cacheprovider", *args],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout_s,
    )
    return SmokeRun(result.returncode, result.stdout + result.stderr, report_dir)
