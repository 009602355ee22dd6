"""The report files of a run, beside verdict.json: summary.md's timeline, the Allure extras, the last scrub.

Pytest-free: the pytest layer calls :func:`write_report_files` once the verdict is built.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ecs_verdict import timeline as timelines
from ecs_verdict import verdict as verdicts
from ecs_verdict.allure3 import (CONTAINER_SUFFIX, RESULT_SUFFIX, TASK_LABEL, causes, label_failed_result,
                                 last_exchange, trim_quiet_fixtures, write_allure3_extras)
from ecs_verdict.redact import SecretRegistry, scrub_patterns
from ecs_verdict.suite import NO_SUITE, SuiteProfile


def write_report_files(report_dir: Path, allure_dir: Path, verdict: verdicts.Verdict, targets: list[Any],
                       events: list[timelines.TimelineEvent], registry: SecretRegistry,
                       suite: SuiteProfile = NO_SUITE) -> None:
    """verdict.json, summary.md (with its timeline), the Allure extras; then every file under the folders scrubbed.

    ``events``: the wait's and the checks' timeline events (the verdict's is added here).
    """
    verdicts.write_verdict(report_dir / "verdict.json", verdict, registry)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    summary = verdicts.write_summary(report_dir / "summary.md", verdict, registry, step_summary)
    # Redacted before they are drawn or escaped: an escaped or reshaped secret would slip past the last scrub.
    events = [replace(event, state=registry.redact(event.state), detail=registry.redact(event.detail))
              for event in [*events, timelines.verdict_event(time.time(), verdict["verdict"], verdict["exit_code"])]]
    summary += append_timeline(report_dir / "summary.md", events, registry, step_summary)
    write_allure_extras(allure_dir, verdict, targets, suite.report_name)
    clean_verdict = registry.redact_obj(verdict)
    write_allure3_extras(allure_dir, clean_verdict, summary,
                         timelines.timeline_html(events, _timeline_title(clean_verdict)),
                         now_ms=int(time.time() * 1000), suite=suite)
    label_allure_failures(allure_dir, clean_verdict, registry, total_tasks=len(targets))
    scrub_tree(report_dir, registry)
    if allure_dir.resolve() != (report_dir / "allure-results").resolve():
        scrub_tree(allure_dir, registry)


def append_timeline(summary_path: Path, events: list[timelines.TimelineEvent], registry: SecretRegistry,
                    step_summary: str | None) -> str:
    """Append the timeline (a Mermaid gantt) to summary.md and the step summary; return what was appended."""
    block = scrub_patterns(registry.redact(timelines.summary_section(events)))
    if not block:
        return ""
    with open(summary_path, "a", encoding="utf-8") as out:
        out.write(block)
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as out:
            out.write(block)
    return block


def _timeline_title(verdict: verdicts.Verdict) -> str:
    target = verdict["target"]
    return (f"{target.get('service') or '?'}, deployment {target.get('deployment_id') or '?'}: "
            f"{verdict['verdict'].upper()} (exit {verdict['exit_code']})")


def write_allure_extras(allure_dir: Path, verdict: verdicts.Verdict, targets: list[Any], report_name: str) -> None:
    """environment.properties and (in GitHub Actions) executor.json; controller only."""
    allure_dir.mkdir(parents=True, exist_ok=True)
    target = verdict["target"]
    environment = {
        "region": target.get("region"), "cluster": target.get("cluster"), "service": target.get("service"),
        "deployment_id": target.get("deployment_id"), "task_definition": target.get("task_definition"),
        "image_digest": target.get("image_digest"), "targets": ", ".join(t.base_url for t in targets),
        "verdict": verdict["verdict"],
    }
    lines = [f"{key}={_escape_property(str(value))}" for key, value in environment.items() if value]
    (allure_dir / "environment.properties").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        server, repo, run = (os.environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
        executor = {"name": "GitHub Actions", "type": "github", "buildName": f"{repo} run {run}",
                    "buildUrl": f"{server}/{repo}/actions/runs/{run}", "reportName": report_name}
        (allure_dir / "executor.json").write_text(json.dumps(executor, indent=2), encoding="utf-8")


def _escape_property(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", " ").replace(":", "\\:").replace("=", "\\=")


def label_allure_failures(allure_dir: Path, verdict: verdicts.Verdict, registry: SecretRegistry,
                          total_tasks: int = 0) -> None:
    """Each failed result gets its cause first (label, message, description, links); quiet set-up fixtures go.

    The ``smoke_category`` label is what the Allure 3 categories (allurerc.mjs) match on.
    """
    merged = causes(registry.redact_obj(verdict))
    by_task = {task_id: cause for cause in merged for task_id in cause.task_ids}
    general = next((cause for cause in merged if not cause.task_ids), None)
    for path in allure_dir.glob(f"*{RESULT_SUFFIX}"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("status") not in ("failed", "broken"):
            continue
        task_id = next((label["value"] for label in data.get("labels", []) if label.get("name") == TASK_LABEL), None)
        cause = (by_task.get(task_id) if task_id else None) or general
        if cause is not None:
            label_failed_result(data, cause, total_tasks, registry.redact(last_exchange(data, allure_dir)))
            path.write_text(json.dumps(data), encoding="utf-8")
    for path in allure_dir.glob(f"*{CONTAINER_SUFFIX}"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if trim_quiet_fixtures(data):
            path.write_text(json.dumps(data), encoding="utf-8")


def scrub_tree(folder: Path, registry: SecretRegistry) -> None:
    """Replace every registered secret in every text file under ``folder``."""
    if not len(registry) or not folder.exists():
        return
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        clean = registry.redact(text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")
