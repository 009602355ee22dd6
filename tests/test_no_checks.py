"""A gate never passes on nothing: every task of the deployment gets a check, or the run is exit 6.

Each case is one real `pytest` run as a CI job makes it. The CivicForge suite runs against a
shared healthy stage (two tasks); the cases that need a suite of their own (not registered,
only write tests, empty) run a generic health suite in a temporary folder against a
loopback health server, with the harness's plugins given by ``-p``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from stage import Stage
from tests.conftest import StagePlan, on_shared_stage
from tests.loopback import serving
from tests.smoke_runs import ROOT, RUN_TIMEOUT_S, SmokeRun, run_smoke, smoke_env

PLUGINS = ("-p", "ecs_verdict.pytest_plugin.fixtures", "-p", "ecs_verdict.pytest_plugin.reporting", "-p", "ecs_verdict.pytest_plugin.smoke_plugin")
HEALTH_TEST = '''
import pytest

@pytest.mark.{marker}
def test_health_answers_200(smoke_http, smoke_target, smoke_health_path):
    assert smoke_http.get(smoke_health_path).status_code == 200
'''


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_url() -> Iterator[str]:
    with serving(_Healthy) as base_url:
        yield base_url


def run_suite(folder: Path, report_dir: Path, *args: str, registered: bool = True,
              env: dict[str, str] | None = None) -> SmokeRun:
    """``pytest FOLDER`` with the harness's plugins, as another team's job runs its own suite."""
    suites = ("-o", f"smoke_suites={folder}") if registered else ()
    command = [sys.executable, "-m", "pytest", str(folder), *PLUGINS, *suites, "-p", "no:cacheprovider",
               "--report-dir", str(report_dir), *args]
    env = {**smoke_env({}), "PYTHONPATH": str(ROOT), "SMOKE_SECRET": "", "ECS_CLUSTER": "", "ECS_SERVICE": "",
           "API_BASE_URL": "", **(env or {})}
    result = subprocess.run(command, cwd=folder.parent, env=env, capture_output=True, text=True,
                            timeout=RUN_TIMEOUT_S)
    return SmokeRun(result.returncode, result.stdout + result.stderr, report_dir)


def suite_folder(tmp_path: Path, marker: str | None) -> Path:
    folder = tmp_path / "payments_smoke"
    folder.mkdir()
    if marker is not None:
        (folder / "test_health.py").write_text(HEALTH_TEST.format(marker=marker))
    return folder


def assert_no_checks_ran(run: SmokeRun) -> dict[str, Any]:
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output, run.output[-3000:]
    assert run.exit_code == 6, run.output[-3000:]
    assert run.categories() == {"no_checks_ran"}, run.verdict["diagnoses"]
    assert run.verdict["verdict"] == "error"
    (cause,) = run.diagnoses("no_checks_ran")
    return cause


# -- a suite of its own, against a loopback health server -------------------------------------------


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_a_suite_not_registered_is_exit_6_with_how_to_register_it(tmp_path: Path, health_url: str,
                                                                  workers: tuple[str, ...]) -> None:
    folder = suite_folder(tmp_path, "readonly")
    run = run_suite(folder, tmp_path / "reports", "--target-url", health_url, *workers, registered=False)
    lines = [line for line in run.output.splitlines() if line.startswith("could not verify [no_checks_ran]: ")]
    assert len(lines) == 1, run.output[-3000:]
    assert "payments_smoke is not a registered smoke suite" in lines[0]
    assert "-o smoke_suites=payments_smoke" in lines[0]
    cause = assert_no_checks_ran(run)
    assert "payments_smoke is not a registered smoke suite" in cause["summary"]


def test_the_same_suite_registered_checks_the_task_and_passes(tmp_path: Path, health_url: str) -> None:
    run = run_suite(suite_folder(tmp_path, "readonly"), tmp_path / "reports", "--target-url", health_url)
    assert run.exit_code == 0, run.output[-3000:]
    assert [c["outcome"] for c in run.verdict["checks"]] == ["passed"]


def test_read_only_on_a_suite_without_read_only_tests_is_exit_6(tmp_path: Path, health_url: str) -> None:
    folder = suite_folder(tmp_path, "writes")
    run = run_suite(folder, tmp_path / "reports", "--target-url", health_url, "--read-only")
    cause = assert_no_checks_ran(run)
    assert "1 check(s) skipped by --read-only (they write)" in cause["evidence"]


def test_an_empty_suite_is_exit_6(tmp_path: Path, health_url: str) -> None:
    folder = suite_folder(tmp_path, None)
    run = run_suite(folder, tmp_path / "reports", "--target-url", health_url)
    cause = assert_no_checks_ran(run)
    assert cause["evidence"].endswith("no check asks for this task"), cause


# -- the CivicForge suite against a healthy stage of two tasks ---------------------------------------

on_the_healthy_stage = on_shared_stage(StagePlan("healthy"))


@on_the_healthy_stage
def test_k_matching_nothing_is_exit_6_naming_every_task(shared_stage: Stage, tmp_path: Path) -> None:
    run = run_smoke(shared_stage.env, tmp_path / "reports", "-k", "no_such_check_anywhere")
    cause = assert_no_checks_ran(run)
    tasks = sorted(shared_stage.task_ips())
    assert len(tasks) == 2
    assert cause["summary"].startswith("no check ran on 2 of 2 task(s)")
    assert all(f"task {task[:8]}: " in cause["evidence"] for task in tasks), cause
    assert "deselected by -k 'no_such_check_anywhere'" in cause["evidence"]


@on_the_healthy_stage
def test_k_leaving_one_task_without_checks_is_exit_6_naming_that_task(shared_stage: Stage, tmp_path: Path) -> None:
    checked, left = sorted(shared_stage.task_ips())
    run = run_smoke(shared_stage.env, tmp_path / "reports", "-k", checked[:8])
    cause = assert_no_checks_ran(run)
    assert cause["task_id"] == left
    assert cause["summary"] == f"no check ran on 1 of 2 task(s) ({left[:8]}): not verified"
    assert cause["evidence"].startswith(f"task {left[:8]}: ") and f"deselected by -k '{checked[:8]}'" in cause["evidence"]
    assert {c["task_id"] for c in run.verdict["checks"] if c["outcome"] == "passed"} == {checked}


@on_the_healthy_stage
def test_a_narrowed_run_that_checks_every_task_passes_and_says_what_it_left_out(shared_stage: Stage,
                                                                                 tmp_path: Path) -> None:
    run = run_smoke(shared_stage.env, tmp_path / "reports", "--read-only")
    assert run.exit_code == 0, run.output[-3000:]
    notes = [w for w in run.verdict["warnings"] if w.startswith("note: left out ")]
    assert any("skipped by --read-only (they write)" in note for note in notes), run.verdict["warnings"]
    summary = (tmp_path / "reports" / "summary.md").read_text()
    assert "skipped by --read-only (they write)" in summary
    assert "warning: note: left out " in run.output
