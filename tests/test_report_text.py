"""A failed deploy reads each cause once, with its tasks and links, in the terminal, summary.md and verdict.json.

- 2 tasks, a fault on one (``one_bad_task``) and on both (``healthy`` + ``urlsafe``): one
  ``why`` line and one summary.md cause naming exactly the faulty tasks; verdict.json keeps a
  diagnosis per task beside the one merged cause; summary.md reads top-down (verdict, why,
  checks, failures' full text collapsed); each log link names a stream the stage really wrote.
  A runner inside the VPC (``--address private``) gets the same causes and links.
- 24 tasks, a fault on every one: still one cause, on 24 of 24 tasks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from stage import Stage
from stage.seed import LOG_GROUP
from tests.conftest import StagePlan, on_shared_stage
from tests.smoke_runs import SmokeRun, run_smoke

URLSAFE_LINE = "AttributeError: module 'secrets' has no attribute 'urlsafe'"
WHY_LINE = re.compile(r"^why \[(?P<category>\w+)\]: (?P<summary>.*?)(?: \((?P<where>on .*)\))?$", re.MULTILINE)
CAUSE_ITEM = re.compile(r"^\d+\. \*\*\[(?P<category>\w+)\]\*\* .*$", re.MULTILINE)


def faulty_tasks(stage: Stage) -> set[str]:
    return {task.id for task in stage.scheduler.live_tasks() if "urlsafe" in task.plan.faults}


def stream_of(log_url: str) -> tuple[str, str]:
    """(log group, log stream) a CloudWatch console link opens: ``$`` back to ``%``, unescaped twice."""
    fragment = log_url.split("#logsV2:log-groups/log-group/", 1)[1]
    group, _, rest = fragment.partition("/log-events/")
    stream = rest.split("$3F", 1)[0]
    return tuple(unquote_plus(unquote_plus(part.replace("$", "%"))) for part in (group, stream))  # type: ignore


def the_one_cause(run: SmokeRun, faulty: set[str]) -> dict[str, Any]:
    """The run's single code_error cause, checked against the terminal, summary.md and verdict.json."""
    verdict = run.verdict
    run_tasks = [task["task_id"] for task in verdict["tasks"]]
    (cause,) = verdict["causes"]
    assert cause["category"] == "code_error" and set(cause["task_ids"]) == faulty
    assert URLSAFE_LINE in cause["evidence"]
    # verdict.json keeps each task's own diagnosis for machines.
    assert {d["task_id"] for d in verdict["diagnoses"]} == faulty and len(verdict["diagnoses"]) == len(faulty)

    why = [match.groupdict() for match in WHY_LINE.finditer(run.output)]
    assert [line["category"] for line in why] == ["code_error"], run.output[-3000:]
    assert why[0]["where"].startswith(f"on {len(faulty)} of {len(run_tasks)} task")
    assert run.output.count("next step: Call secrets.token_urlsafe(32)") == 1
    assert cause["next_step"].count("token_urlsafe") == 1, "the next step says its fix once"

    summary = (run.report_dir / "summary.md").read_text()
    assert [m["category"] for m in CAUSE_ITEM.finditer(summary)] == ["code_error"]
    item = CAUSE_ITEM.search(summary).group()  # type: ignore[union-attr]
    assert f"(on {len(faulty)} of {len(run_tasks)} task" in item
    assert all(task_id[:8] in item for task_id in faulty)
    assert summary.count("- next step:") == 1
    # Top-down: the verdict, then why, then the grid, then the failures' full text (collapsed).
    order = [summary.index(mark) for mark in ("## ❌ FAIL", "### Why: 1 cause", "### Checks",
                                              "failed or errored check(s): the full text</summary>")]
    assert order == sorted(order)
    assert summary.count(URLSAFE_LINE) == 1
    return cause


def assert_links_name_real_streams(stage: Stage, cause: dict[str, Any]) -> None:
    logs = stage.client("logs")
    log_links = [link for link in cause["links"] if link["kind"] == "log_stream"]
    assert len(log_links) == len(cause["task_ids"])
    for task_id, link in zip(cause["task_ids"], log_links):
        group, stream = stream_of(link["url"])
        assert (group, stream) == (LOG_GROUP, f"ecs/civicforge-app/{task_id}")
        found = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=stream)["logStreams"]
        assert [s["logStreamName"] for s in found] == [stream]
    kinds = [link["kind"] for link in cause["links"]]
    assert kinds[-2:] == ["service", "service_deployment"], kinds


@on_shared_stage(StagePlan("one_bad_task"), StagePlan("healthy", ("urlsafe",)))
def test_each_cause_once_with_its_tasks_and_links_at_2_tasks(shared_stage: Stage, tmp_path: Path) -> None:
    faulty = faulty_tasks(shared_stage)
    assert 1 <= len(faulty) <= 2

    run = run_smoke(shared_stage.env, tmp_path / "public")

    assert run.exit_code == 1, run.output[-3000:]
    cause = the_one_cause(run, faulty)
    assert_links_name_real_streams(shared_stage, cause)
    summary = (run.report_dir / "summary.md").read_text()
    assert all(link["url"] in summary for link in cause["links"])

    # A runner inside the VPC reaches the tasks another way; what it reports, and links to, is the same.
    inside = run_smoke(shared_stage.env, tmp_path / "private", "--address", "private")
    assert inside.exit_code == 1, inside.output[-3000:]
    (inside_cause,) = inside.verdict["causes"]
    assert inside_cause["task_ids"] == cause["task_ids"]
    assert [link["url"].split("$3F")[0] for link in inside_cause["links"]] == \
        [link["url"].split("$3F")[0] for link in cause["links"]]  # the same pages; each run's own time window


def test_one_cause_on_24_of_24_tasks(stage_factory: Any, tmp_path: Path) -> None:
    stage = stage_factory("healthy", faults=["urlsafe"], tasks=24)
    faulty = faulty_tasks(stage)
    assert len(faulty) == 24

    run = run_smoke(stage.env, tmp_path / "report")

    assert run.exit_code == 1, run.output[-3000:]
    cause = the_one_cause(run, faulty)
    assert "(on 24 of 24 tasks: " in run.output and " and 16 more)" in run.output  # the CI log lists 8
    summary = (run.report_dir / "summary.md").read_text()
    assert summary.count("log stream of task") == 24
    assert len([link for link in cause["links"] if link["kind"] == "log_stream"]) == 24
