"""Allure 3's inputs (categories, causes, headline, globals) and the timeline, as pure functions.

The rendered report is pinned by looking in tests/test_html_report.py; here each piece is
checked on plain data: the committed category rules are the harness's, one cause is said
once with its tasks at 2 and at 24 tasks, and the timeline keeps only changes and draws
each lane's states, the checks per task and the verdict.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from ecs_verdict.allure3 import (CATEGORY_LABEL, suite_categories, GLOBALS_FILE, METRICS_FILE, REPORT_FILE, VERDICT_METRIC,
                                  allure3_categories, causes, headline, label_failed_result, trim_quiet_fixtures,
                                  write_allure3_extras)
from ecs_verdict.categories import CATEGORIES
from ecs_verdict.suite import SuiteCause, SuiteProfile
from ecs_verdict.timeline import (TimelineRecorder, check_event, from_dicts, mermaid_gantt, segments,
                                   summary_section, timeline_html, verdict_event)
from tests.test_stability import DEP_NEW, DEP_OLD, NOW, TD_NEW, TD_OLD, deployment, observation, running_task, \
    stopped_task

ROOT = Path(__file__).resolve().parent.parent
TASKS_24 = [f"{number:08x}-0000-4000-8000-000000000000" for number in range(0xa0, 0xa0 + 24)]


def _diagnosis(task_id: str | None, category: str = "code_error",
               summary: str = "the application raised AttributeError") -> dict[str, Any]:
    return {"category": category, "task_id": task_id, "summary": summary,
            "evidence": "log: AttributeError: module 'secrets' has no attribute 'urlsafe'",
            "next_step": "Use secrets.token_urlsafe(32)."}


def _verdict(task_ids: list[str], diagnoses: list[dict[str, Any]], verdict: str = "fail", exit_code: int = 1
             ) -> dict[str, Any]:
    return {"verdict": verdict, "exit_code": exit_code, "tasks": [{"task_id": t} for t in task_ids],
            "checks": [{"name": "c", "task_id": t, "outcome": "passed"} for t in task_ids], "diagnoses": diagnoses}


def test_the_committed_category_rules_are_the_harness_categories() -> None:
    committed = json.loads((ROOT / "report" / "allure-categories.json").read_text(encoding="utf-8"))
    assert committed == allure3_categories(), "python -m ecs_verdict.allure3 > report/allure-categories.json"
    rules = committed["rules"]
    assert [rule["id"] for rule in rules] == list(CATEGORIES)
    # Allure 3 compiles a label matcher's string as a regular expression over the label's value.
    pattern = rules[0]["matchers"][0]["labels"][CATEGORY_LABEL]
    assert re.search(pattern, rules[0]["id"]) and not re.search(pattern, rules[0]["id"] + "_other")
    config = (ROOT / "allurerc.mjs").read_text(encoding="utf-8")
    assert "report/allure-categories.json" in config and VERDICT_METRIC in config


def test_one_cause_is_said_once_with_its_tasks_at_2_and_at_24_tasks() -> None:
    two = ["2618a261-aaaa", "d4ff58d0-bbbb"]
    merged = causes(_verdict(two, [_diagnosis(two[0]), _diagnosis(two[1])]))
    assert len(merged) == 1 and merged[0].task_ids == tuple(two)
    assert headline(_verdict(two, [_diagnosis(t) for t in two])) == (
        "FAIL (exit 1): [code_error] the application raised AttributeError on 2 of 2 tasks: 2618a261, d4ff58d0")
    line = headline(_verdict(TASKS_24, [_diagnosis(t) for t in TASKS_24]))
    assert line == ("FAIL (exit 1): [code_error] the application raised AttributeError on 24 of 24 tasks: "
                    "000000a0, 000000a1, 000000a2 and 21 more")
    other = _diagnosis(None, "task_restarting", "tasks keep stopping")
    assert headline(_verdict(two, [_diagnosis(two[0]), other])).endswith("on 1 of 2 tasks: 2618a261 (+1 more causes)")


def test_a_pass_headline_counts_the_checks() -> None:
    assert headline(_verdict(["a" * 8, "b" * 8], [], "pass", 0)) == "PASS (exit 0): 2 of 2 checks passed on 2 tasks"


def test_the_globals_carry_each_cause_once_the_verdict_metric_and_the_headline(tmp_path: Path) -> None:
    verdict = _verdict(TASKS_24, [_diagnosis(t) for t in TASKS_24])
    write_allure3_extras(tmp_path, verdict, "# summary", "<html></html>", now_ms=1_000)
    globals_ = json.loads((tmp_path / GLOBALS_FILE).read_text())
    assert [error["message"] for error in globals_["errors"]] == [
        "FAIL: [code_error] the application raised AttributeError on 24 of 24 tasks: 000000a0, 000000a1, 000000a2 "
        "and 21 more"]
    assert "next step: Use secrets.token_urlsafe(32)." in globals_["errors"][0]["trace"]
    assert all((tmp_path / item["source"]).exists() for item in globals_["attachments"])
    metric = json.loads((tmp_path / METRICS_FILE).read_text())[0]
    # Allure drops a metric without an id, start and stop; the gate then fails on the missing value.
    assert metric["key"] == VERDICT_METRIC and metric["value"] == 1 and metric["id"] and metric["start"] == 1_000
    assert json.loads((tmp_path / REPORT_FILE).read_text())["exit_code"] == 1


def test_a_could_not_verify_run_without_a_cause_is_still_a_global_error(tmp_path: Path) -> None:
    write_allure3_extras(tmp_path, _verdict([], [], "error", 6), "", "", now_ms=1)
    errors = json.loads((tmp_path / GLOBALS_FILE).read_text())["errors"]
    assert errors[0]["message"].startswith("COULD NOT VERIFY (exit 6)")


def test_a_failed_result_says_its_cause_first_and_quiet_fixtures_go() -> None:
    result: dict[str, Any] = {"status": "failed", "labels": [], "description": "Create -> join",
                              "statusDetails": {"message": "ContractViolation: expected 200, got 500"}}
    cause = causes(_verdict(["d4ff58d0-bbbb"], [_diagnosis("d4ff58d0-bbbb")]))[0]
    label_failed_result(result, cause, 2, "POST /invites -> 500")
    assert {"name": CATEGORY_LABEL, "value": "code_error"} in result["labels"]
    message = result["statusDetails"]["message"]
    assert message.startswith("[code_error] the application raised AttributeError on 1 of 2 tasks: d4ff58d0\n"
                              "evidence: log: AttributeError")
    assert message.endswith("ContractViolation: expected 200, got 500")
    description = result["descriptionHtml"]
    assert description.index("Next step") < description.index("POST /invites -&gt; 500") < description.index("Create")
    container = {"befores": [{"name": "smoke_config", "status": "passed", "steps": []},
                             {"name": "smoke_login", "status": "passed", "steps": [{"name": "POST /login"}]},
                             {"name": "smoke_accounts", "status": "broken"}],
                 "afters": [{"name": "smoke_http::close", "status": "passed"}]}
    assert trim_quiet_fixtures(container)
    assert [item["name"] for item in container["befores"]] == ["smoke_login", "smoke_accounts"]
    assert container["afters"] == []
    assert not trim_quiet_fixtures(container)


# -- the timeline -----------------------------------------------------------------------------------


def _later(seconds: float) -> Any:
    return NOW + timedelta(seconds=seconds)


def test_the_recorder_keeps_only_changes_of_deployments_tasks_and_stops() -> None:
    recorder = TimelineRecorder()
    rolling = [deployment(DEP_NEW, "PRIMARY", TD_NEW, "IN_PROGRESS"), deployment(DEP_OLD, "ACTIVE", TD_OLD, "COMPLETED")]
    looks = [
        (0, rolling, [running_task("aaaa1111", health="UNKNOWN")]),
        (1, rolling, [running_task("aaaa1111", health="UNKNOWN")]),  # nothing changed: no event
        (2, rolling, [running_task("aaaa1111"), stopped_task("bbbb2222", "Task failed container health checks"),
                      {**stopped_task("cccc3333", "Scaling activity initiated by deployment"),
                       "taskDefinitionArn": TD_OLD, "startedBy": DEP_OLD}]),
        (3, [deployment(DEP_NEW, "PRIMARY", TD_NEW, "COMPLETED")], [running_task("aaaa1111")]),
    ]
    for seconds, deployments, tasks in looks:
        seen = observation(deployments, tasks)
        recorder.observe(type(seen)(**{**{f: getattr(seen, f) for f in seen.__slots__}, "observed_at": _later(seconds)}))
    states = [(event.lane, event.state) for event in recorder.events]
    assert states == [
        ("deployment 11111111 (rev 8)", "PRIMARY IN_PROGRESS 2/2"),
        ("deployment 22222222 (rev 7)", "ACTIVE COMPLETED 2/2"),
        ("task aaaa1111", "RUNNING"),
        ("task aaaa1111", "RUNNING/HEALTHY"),
        ("task bbbb2222", "STOPPED"),
        ("task cccc3333", "STOPPED (old deployment)"),  # drained as the roll-out replaced it: not a failure
        ("deployment 11111111 (rev 8)", "PRIMARY COMPLETED 2/2"),
        ("deployment 22222222 (rev 7)", "no longer listed"),  # its lane ends: no bar after it
    ]
    stop = next(event for event in recorder.events if event.state == "STOPPED")
    assert "Task failed container health checks" in stop.detail and stop.outcome == "bad"
    assert stop.at == NOW.timestamp()  # when ECS stopped it (stoppedAt), not the look 2 s later that saw it
    assert [event.outcome for event in recorder.events if event.lane == "task cccc3333"] == ["info"]
    assert from_dicts(json.loads(json.dumps(recorder.to_list()))) == recorder.events  # the xdist boundary


def test_the_pictures_fold_checks_per_task_and_end_on_the_verdict() -> None:
    recorder = TimelineRecorder()
    recorder.observe(observation([deployment(DEP_NEW, "PRIMARY", TD_NEW, "COMPLETED")], [running_task("aaaa1111")]))
    start = NOW.timestamp()
    events = [*recorder.events,
              check_event("test_health", "aaaa1111", "passed", start + 1, start + 1.5),
              check_event("test_invite", "aaaa1111", "failed", start + 1.2, start + 2),
              verdict_event(start + 3, "fail", 1)]
    bars = [(bar.lane, bar.label, bar.outcome) for bar in segments(events)]
    assert bars == [
        ("deployment 11111111 (rev 8)", "PRIMARY COMPLETED 2/2", "ok"),
        ("task aaaa1111", "RUNNING/HEALTHY", "ok"),
        ("task aaaa1111", "2 checks, 1 failed", "bad"),
        ("task aaaa1111", "check test_invite failed", "bad"),
        ("verdict", "FAIL (exit 1)", "bad"),
    ]
    chart = mermaid_gantt(events)
    assert chart.splitlines()[:4] == ["gantt", "    title The deployment as this run observed it (UTC)",
                                      "    dateFormat x", "    axisFormat %H:%M:%S"]
    assert "    section deployment 11111111 (rev 8)" in chart
    assert f"    FAIL (exit 1) :milestone, crit, {int((start + 3) * 1000)}, {int((start + 3) * 1000) + 1}" in chart
    assert summary_section(events).startswith("\n## Timeline\n\n```mermaid\ngantt\n")
    page = timeline_html(events, "board: FAIL")
    assert page.count("<rect") == len(bars) and "<script" not in page and "check test_invite" in page


def test_nothing_observed_draws_nothing() -> None:
    assert summary_section([]) == "" and mermaid_gantt([]) == ""
    assert "Nothing was observed" in timeline_html([], "t")


def test_a_suite_names_the_report_and_its_causes_get_category_rules_at_run_time(tmp_path: Path) -> None:
    """The committed rules know only the harness's categories; a suite's come with the run (smoke-report.json)."""
    shop = SuiteProfile("Shop", "Shop/Smoke", causes=(
        SuiteCause("out_of_stock_fixture", "The fixture product has no stock", "Run the seed job."),))
    verdict = _verdict(["d4ff58d0-bbbb"], [_diagnosis("d4ff58d0-bbbb", "out_of_stock_fixture", "no stock")])
    write_allure3_extras(tmp_path, verdict, "", "", now_ms=1, suite=shop)
    report = json.loads((tmp_path / REPORT_FILE).read_text())
    assert report["report_name"] == "Shop smoke"
    assert report["categories"] == suite_categories(shop)
    [rule] = report["categories"]
    assert rule["id"] == "out_of_stock_fixture" and rule["name"] == "out_of_stock_fixture: The fixture product has no stock"
    assert re.search(rule["matchers"][0]["labels"][CATEGORY_LABEL], "out_of_stock_fixture")
    assert "out_of_stock_fixture" not in {r["id"] for r in allure3_categories()["rules"]}
    # No suite: the generic name, no rules of a suite's.
    write_allure3_extras(tmp_path, verdict, "", "", now_ms=1)
    assert json.loads((tmp_path / REPORT_FILE).read_text())["categories"] == []
    # The report script reads both (it has no test of its own that runs node here).
    script = (ROOT / "report" / "allure-report.mjs").read_text(encoding="utf-8")
    assert "run.report_name" in script and "run.categories" in script
