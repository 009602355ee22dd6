"""What Allure 3 reads beyond the test results, so the report tells the truth on its first screen (pytest-free).

Allure 3 ignores Allure 2's ``categories.json``; it takes category rules from its config
(``allurerc.mjs``, whose rules ``report/allure-categories.json`` holds: ``allure3_categories``),
matched here on a label each failed result carries (``smoke_category``). The run adds to
its results folder:

- ``smoke-globals.json``: global errors (one per cause, with its tasks, evidence and next
  step) and global attachments (the verdict as markdown, the timeline as HTML);
- ``smoke-perf.json``: the metric ``smoke_verdict_exit_code`` that the config's quality gate
  (``metricMax`` 0) fails on;
- ``smoke-report.json``: the headline, the suite's report name, the verdict's exit code (which
  ``report/allure-report.mjs`` gives the report as its global exit code) and one category rule
  per suite cause (``suite_categories``): the static rules know only the harness's categories.

Each failed result gets its cause, evidence, next step and last HTTP exchange first (its
message and description), and the fixtures that did nothing worth reading are left out.
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecs_verdict.categories import CATEGORIES
from ecs_verdict.causes import merge_causes
from ecs_verdict.suite import NO_SUITE, SuiteProfile

CATEGORY_LABEL = "smoke_category"
TASK_LABEL = "smoke_task"  # the pytest layer sets it on every result of a task's test
VERDICT_METRIC = "smoke_verdict_exit_code"
GLOBALS_FILE = "smoke-globals.json"
METRICS_FILE = "smoke-perf.json"
REPORT_FILE = "smoke-report.json"
VERDICT_ATTACHMENT = "smoke-verdict-attachment.md"
TIMELINE_ATTACHMENT = "smoke-timeline-attachment.html"
RESULT_SUFFIX = "-result.json"
CONTAINER_SUFFIX = "-container.json"
HEADLINE_TASKS = 3  # task ids named in the headline before "and N more"
EXCHANGE_CHARS = 2000  # of each request/response quoted in a failed result's description
_WORDS = {"pass": "PASS", "fail": "FAIL", "error": "COULD NOT VERIFY"}


def allure3_categories() -> dict[str, Any]:
    """Allure 3 category rules: one per harness category, matching the ``smoke_category`` label, by task."""
    return {"rules": [_category_rule(category, title) for category, title in CATEGORIES.items()]}


def suite_categories(suite: SuiteProfile) -> list[dict[str, Any]]:
    """The same rules for the suite's own causes, written at run time (``smoke-report.json``)."""
    return [_category_rule(cause.category, cause.title) for cause in suite.causes]


def _category_rule(category: str, title: str) -> dict[str, Any]:
    return {
        "id": category,
        "name": f"{category}: {title}",
        "matchers": [{"statuses": ["failed", "broken"], "labels": {CATEGORY_LABEL: f"^{category}$"}}],
        "groupBy": [{"label": TASK_LABEL}],
        "groupByMessage": False,
        "expand": True,
    }


@dataclass(frozen=True, slots=True)
class Cause:
    """One cause as a person reads it: the same category and summary, with every task it was seen on."""

    category: str
    summary: str
    evidence: str
    next_step: str
    task_ids: tuple[str, ...]
    links: tuple[tuple[str, str], ...] = ()  # (title, url): into the AWS console (ecs_verdict.console_links)

    def where(self, total_tasks: int) -> str:
        """``on 2 of 2 tasks: 2618a261, d4ff58d0`` (the first few), or "" for a cause of the whole service."""
        if not self.task_ids:
            return ""
        shown = ", ".join(task_id[:8] for task_id in self.task_ids[:HEADLINE_TASKS])
        more = f" and {len(self.task_ids) - HEADLINE_TASKS} more" if len(self.task_ids) > HEADLINE_TASKS else ""
        of = f" of {total_tasks}" if total_tasks >= len(self.task_ids) else ""
        noun = "task" if len(self.task_ids) == 1 and not of else "tasks"
        return f"on {len(self.task_ids)}{of} {noun}: {shown}{more}"

    def line(self, total_tasks: int) -> str:
        where = self.where(total_tasks)
        return f"[{self.category}] {self.summary}" + (f" {where}" if where else "")


def causes(verdict: Mapping[str, Any]) -> list[Cause]:
    """The verdict's causes, each once with its tasks and links (``ecs_verdict.causes`` merged them)."""
    records = verdict.get("causes")
    if records is None:  # a verdict written before the merge (or by hand): merge its diagnoses the same way
        records = merge_causes(verdict.get("diagnoses", []), [task["task_id"] for task in verdict.get("tasks", [])])
    return [Cause(str(r["category"]), str(r["summary"]), str(r.get("evidence") or ""), str(r.get("next_step") or ""),
                  tuple(r.get("task_ids") or ()), tuple((link["title"], link["url"]) for link in r.get("links") or ()))
            for r in records]


def headline(verdict: Mapping[str, Any]) -> str:
    """The report's name: verdict, exit code and the first cause with its tasks, e.g.
    ``FAIL (exit 1): [code_error] the application raised AttributeError on 1 of 2 tasks: bd6c526a``."""
    word = _WORDS.get(str(verdict["verdict"]), str(verdict["verdict"]).upper())
    found = causes(verdict)
    total = len(verdict.get("tasks", []))
    if not found:
        checks = verdict.get("checks", [])
        passed = sum(1 for check in checks if check.get("outcome") == "passed")
        return f"{word} (exit {verdict['exit_code']}): {passed} of {len(checks)} checks passed on {total} tasks"
    more = f" (+{len(found) - 1} more causes)" if len(found) > 1 else ""
    return f"{word} (exit {verdict['exit_code']}): {found[0].line(total)}{more}"


def write_allure3_extras(allure_dir: Path, verdict: Mapping[str, Any], summary_markdown: str,
                         timeline_page: str, now_ms: int, suite: SuiteProfile = NO_SUITE) -> None:
    """The globals, the verdict metric and the report file (see the module docstring)."""
    allure_dir.mkdir(parents=True, exist_ok=True)
    total = len(verdict.get("tasks", []))
    (allure_dir / VERDICT_ATTACHMENT).write_text(summary_markdown, encoding="utf-8")
    (allure_dir / TIMELINE_ATTACHMENT).write_text(timeline_page, encoding="utf-8")
    word = _WORDS.get(str(verdict["verdict"]), str(verdict["verdict"]).upper())
    errors = [
        {"message": f"{word}: {cause.line(total)}",
         "trace": "\n".join([f"evidence: {cause.evidence}", f"next step: {cause.next_step}",
                             *(f"{title}: {url}" for title, url in cause.links)]), "timestamp": now_ms}
        for cause in causes(verdict)
    ]
    if verdict["exit_code"] != 0 and not errors:
        errors.append({"message": headline(verdict), "timestamp": now_ms})
    attachments = [
        {"name": f"Verdict: {word} (exit {verdict['exit_code']})", "source": VERDICT_ATTACHMENT,
         "type": "text/markdown", "timestamp": now_ms},
        {"name": "Timeline of the deployment", "source": TIMELINE_ATTACHMENT, "type": "text/html",
         "timestamp": now_ms},
    ]
    _write_json(allure_dir / GLOBALS_FILE, {"attachments": attachments, "errors": errors})
    metric = {"id": str(uuid.uuid4()), "key": VERDICT_METRIC, "value": int(verdict["exit_code"]),
              "start": now_ms, "stop": now_ms, "title": "Smoke verdict exit code (0 = PASS)"}
    _write_json(allure_dir / METRICS_FILE, [metric])
    _write_json(allure_dir / REPORT_FILE, {"name": headline(verdict), "exit_code": int(verdict["exit_code"]),
                                           "report_name": suite.report_name, "categories": suite_categories(suite)})


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


# -- the failed results --------------------------------------------------------------------------------


def label_failed_result(result: dict[str, Any], cause: Cause, total_tasks: int, exchange: str) -> None:
    """Put the cause first on a failed result: its label, message head and description (in place)."""
    labels = result.setdefault("labels", [])
    if not any(label.get("name") == CATEGORY_LABEL for label in labels):
        labels.append({"name": CATEGORY_LABEL, "value": cause.category})
    details = result.setdefault("statusDetails", {})
    message = str(details.get("message", ""))
    if not message.startswith("["):
        details["message"] = (f"{cause.line(total_tasks)}\nevidence: {cause.evidence}\nnext step: {cause.next_step}"
                              f"\n\n{message}")
    block = (f"<p><b>Cause</b>: {html.escape(cause.line(total_tasks))}</p>"
             f"<p><b>Evidence</b>: {html.escape(cause.evidence)}</p>"
             f"<p><b>Next step</b>: {html.escape(cause.next_step)}</p>")
    if exchange:
        block += f"<p><b>Last HTTP exchange</b></p><pre>{html.escape(exchange)}</pre>"
    original = result.get("descriptionHtml") or (f"<p>{html.escape(result['description'])}</p>"
                                                 if result.get("description") else "")
    result["descriptionHtml"] = block + original
    links = result.setdefault("links", [])
    known = {link.get("url") for link in links}
    links += [{"name": title, "url": url, "type": "link"} for title, url in cause.links if url not in known]


def last_exchange(result: Mapping[str, Any], allure_dir: Path) -> str:
    """The request and response attachments of the result's last step that has them, as text."""
    for step in reversed(result.get("steps", [])):
        texts = []
        for attachment in step.get("attachments", []):
            try:
                body = (allure_dir / str(attachment["source"])).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError, KeyError):
                continue
            texts.append(f"--- {attachment.get('name', '')}\n{body[:EXCHANGE_CHARS]}")
        if texts:
            return f"{step.get('name', '')}\n" + "\n".join(texts)
    return ""


def trim_quiet_fixtures(container: dict[str, Any]) -> bool:
    """Leave out set-up and tear-down fixtures that passed without a step or attachment.

    Thirteen fixture names at 0 s before the HTTP steps (and fifteen after) say nothing; a
    fixture that failed, or made HTTP calls, stays. Returns whether the container changed.
    """
    changed = False
    for stage in ("befores", "afters"):
        fixtures = container.get(stage) or []
        kept = [item for item in fixtures
                if item.get("status") not in (None, "passed") or item.get("steps") or item.get("attachments")]
        if len(kept) != len(fixtures):
            container[stage] = kept
            changed = True
    return changed


if __name__ == "__main__":  # python -m ecs_verdict.allure3 > report/allure-categories.json
    print(json.dumps(allure3_categories(), indent=2))
