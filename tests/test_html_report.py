"""The HTML report a person opens: Allure 3 renders a real smoke run, headless Chromium shows it.

One run against the stage's ``one_bad_task`` scenario (its default fault: invite creation is a
500 on one of the two tasks) gives passing tests and one failure with evidence. Allure 3
(``make report`` installs it into ``.tools/``) renders the HTML the way ``make report`` does
(``report/allure-report.mjs`` with ``allurerc.mjs`` and its quality gate), a loopback HTTP
server serves it, and Chromium's ``--dump-dom`` is what a browser would show once the
single-page app has loaded its data. The assertions read the rendered page, never the JSON:
what a person sees first on a failed deploy is the verdict, the cause and its task.

Skipped only when Chromium or Node.js is missing (``make browser`` and CI install them); a
missing Allure CLI is a failure that names the make target installing it.
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ecs_verdict.categories import CATEGORIES
from tests.conftest import StageFactory
from tests.loopback import serving

ROOT = Path(__file__).resolve().parent.parent
ALLURE_CLI = ROOT / ".tools" / "node_modules" / ".bin" / "allure"
REPORT_SCRIPT = ROOT / "report" / "allure-report.mjs"
CHROMIUM = Path("/usr/bin/chromium")
PAGE_TIMEOUT_S = 120
# Flags for a quiet, offline, throw-away browser; the virtual time budget lets the
# single-page app fetch its data and render before the DOM is dumped.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=10000")

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium not installed at {CHROMIUM}: run `make browser`"),
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js not installed: the Allure 3 CLI needs it"),
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextmanager
def served(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on a free loopback port; yield its base URL."""
    with serving(functools.partial(_QuietHandler, directory=str(folder))) as base_url:
        yield base_url


def visible_text(url: str) -> str:
    """What Chromium shows at ``url``: the rendered DOM without scripts, styles and tags, one space apart."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        done = subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                              capture_output=True, text=True, timeout=PAGE_TIMEOUT_S)
    assert done.returncode == 0 and done.stdout, f"chromium failed on {url}: {done.stderr[-2000:]}"
    markup = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", done.stdout, flags=re.S | re.I)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _run_smoke(stage_env: dict[str, str], report_dir: Path) -> dict[str, Any]:
    env = {key: value for key, value in {**os.environ, **stage_env}.items() if key != "AWS_PROFILE"}
    command = [sys.executable, "-m", "pytest", "smoke", "-p", "no:cacheprovider", "--report-dir", str(report_dir)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, f"expected a failed smoke run (exit 1), got {done.returncode}:\n{done.stdout[-3000:]}"
    return json.loads((report_dir / "verdict.json").read_text(encoding="utf-8"))


def _render(results: Path, output: Path) -> subprocess.CompletedProcess[str]:
    """``make report``'s rendering: Allure 3 with allurerc.mjs, its quality gate and the run's headline."""
    if not ALLURE_CLI.exists():
        pytest.fail(f"the Allure 3 CLI is not installed at {ALLURE_CLI}: run `make report` or `make test` "
                    "(both install it)", pytrace=False)
    done = subprocess.run(["node", str(REPORT_SCRIPT), str(results), str(output), str(ROOT / ".tools")],
                          cwd=output.parent, capture_output=True, text=True, timeout=PAGE_TIMEOUT_S)
    assert (output / "index.html").exists(), f"the report was not rendered: {done.stderr[-2000:]}"
    return done


def _first_screen(page: str) -> str:
    """The report's header: what the landing page shows above its tabs (name, status, exit code)."""
    start, end = page.index("Report "), page.index(" Results ")
    return page[start:end]


def _result_id(report: Path, name: str) -> str:
    """The rendered report's id of the test result called ``name`` (its page is ``index.html#<id>``)."""
    for path in (report / "data" / "test-results").glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("name") == name:
            return str(data["id"])
    raise AssertionError(f"no test result named {name!r} in the rendered report")


def test_a_failed_deploy_reads_as_failed_on_the_reports_first_screen(stage_factory: StageFactory,
                                                                     tmp_path: Path) -> None:
    stage = stage_factory("one_bad_task")
    verdict = _run_smoke(stage.env, tmp_path / "reports")
    checks = verdict["checks"]
    passed = [c for c in checks if c["outcome"] == "passed"]
    failed = [c for c in checks if c["outcome"] == "failed"]
    assert passed and len(failed) == 1, f"the scenario should fail exactly one check: {checks}"
    failure = failed[0]
    failed_name = f"{failure['name']}[{failure['task_id'][:8]}]"
    report = tmp_path / "allure-report"

    rendered = _render(tmp_path / "reports" / "allure-results", report)
    # The report's quality gate fails on a failed verdict: the command fails too, once the report is written.
    assert rendered.returncode == 1, rendered.stdout + rendered.stderr
    assert "Quality Gate failed" in rendered.stderr and "Smoke verdict exit code" in rendered.stderr
    with served(report) as base_url:
        overview = visible_text(f"{base_url}/index.html")
        details = visible_text(f"{base_url}/index.html#{_result_id(report, failed_name)}")
        categories = visible_text(f"{base_url}/index.html#categories")
        gates = visible_text(f"{base_url}/index.html#qualityGate")
        errors = visible_text(f"{base_url}/index.html#globalErrors")
        timeline = visible_text(f"{base_url}/{_timeline_attachment(report)}")

    diagnosis = next(d for d in verdict["diagnoses"] if d["task_id"] == failure["task_id"])
    task = failure["task_id"][:8]
    assert f"Total {len(checks)} Failed 1 Passed {len(passed)}" in overview
    assert failed_name in overview
    assert f"verdict {verdict['verdict']}" in overview  # environment.properties, as the report's metadata
    # The first screen: the verdict, the cause's category and its task, the exit code, a failed gate.
    header = _first_screen(overview)
    assert "Failed" in header and "FAIL (exit 1)" in header, header
    assert f"[{diagnosis['category']}] {diagnosis['summary']} on 1 of 2 tasks: {task}" in header, header
    assert "with exit code 1" in header and "Quality Gates 1" in overview, overview[:600]
    # The categories tab lists the harness's category, with the task and the failed test under it.
    category = f"{diagnosis['category']}: {CATEGORIES[diagnosis['category']]}"
    listed = categories[categories.index(" Global Errors "):]
    assert category in listed and failure["task_id"] in listed and failed_name in listed, listed[:800]
    assert "Product errors" not in listed  # Allure's default catch-all: every failure has its category
    assert "Smoke verdict exit code (0 = PASS) 1 exceeds the allowed maximum 0" in gates
    assert f"FAIL: [{diagnosis['category']}] {diagnosis['summary']} on 1 of 2 tasks: {task}" in errors

    # The failed test's page: the cause, its evidence and next step, then the HTTP steps; no set-up noise.
    assert failed_name in details and "Failed" in details
    first_error = failure["message"].split(" | ")[0]
    assert _one_line(first_error) in details
    order = [details.index(text) for text in (
        f"Error [{diagnosis['category']}] {diagnosis['summary']}", f"evidence: {_one_line(diagnosis['evidence'])}",
        f"next step: {_one_line(diagnosis['next_step'])}", _one_line(first_error), "Test body",
        f"{failure['message'].split()[1]} {failure['message'].split()[2]} -> 500")]
    assert order == sorted(order), order
    # Fixtures that passed without a step are left out (13 names at 0 s came before the HTTP steps, 15 after).
    assert "pytestconfig" not in details and "smoke_config" not in details and "Set up" not in details

    # The timeline attachment: each task's state, its checks and the verdict, drawn without a script.
    assert f"task {task}" in timeline and "RUNNING/HEALTHY" in timeline and "checks, 1 failed" in timeline
    assert f"check {failure['name']} failed" in timeline and "FAIL (exit 1)" in timeline
    # summary.md ends with the same timeline as a Mermaid gantt (GitHub renders it in the job summary).
    summary = (tmp_path / "reports" / "summary.md").read_text(encoding="utf-8")
    gantt = summary[summary.index("## Timeline\n\n```mermaid\ngantt\n"):]
    assert f"    section task {task}\n    RUNNING/HEALTHY :done, " in gantt
    assert re.search(r"^    \d+ checks, 1 failed :crit, \d+, \d+$", gantt, re.MULTILINE), gantt
    assert gantt.rstrip().endswith("```") and "FAIL (exit 1) :milestone, crit, " in gantt


def _timeline_attachment(report: Path) -> str:
    """The rendered report's copy of the timeline page (a global attachment), relative to the report."""
    for path in (report / "data" / "attachments").glob("*.html"):
        if "Events (UTC)" in path.read_text(encoding="utf-8"):
            return str(path.relative_to(report))
    raise AssertionError("no timeline attachment in the rendered report")
