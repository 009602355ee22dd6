"""One cause, once (pure): what makes two diagnoses one cause, and the console links each cause carries.

The AWS console URL forms pinned here, and where each comes from (also in docs/reports.md,
"Links into AWS", and in ``src/ecs_verdict/console_links.py``):

- CloudWatch Logs, one log stream: ``https://REGION.console.aws.amazon.com/cloudwatch/home?
  region=REGION#logsV2:log-groups/log-group/GROUP/log-events/STREAM$3Fstart$3DMS$26end$3DMS``,
  names escaped twice and ``%`` written ``$`` (``/`` -> ``$252F``, ``[`` -> ``$255B``), the
  query once (``?`` ``=`` ``&`` -> ``$3F`` ``$3D`` ``$26``). Source: the ``aws-cloudwatch-logs-url``
  package's unit tests (sinofseven/cloudwatch-logs-url-python) and the Stack Overflow question
  "Is there a way to generate the AWS Console URLs for CloudWatch Log Group filters?".
- ECS console v2: a service ``/ecs/v2/clusters/C/services/S/health?region=R``, its deployments
  ``.../services/S/deployments?region=R``, a task ``/ecs/v2/clusters/C/tasks/ID/configuration?region=R``
  (the forms the v2 console shows and public tooling builds). AWS's "Viewing Amazon ECS service
  deployments" reaches one service deployment through the service's Deployments tab; no source
  gives that page's own URL, so the link opens the tab and names the deployment's id.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ecs_verdict.causes import TaskNames, cause_key, merge_causes, tasks_phrase, without_task_ids
from ecs_verdict.console_links import (ConsoleContext, awslogs_options, ecs_service_url, ecs_task_url,
                                        log_stream_url, run_window)

T1 = "2618a2617c0e4b0fa3d3e0b4c1d2e3f4"
T2 = "d4ff58d09a8b4c7d8e9f0a1b2c3d4e5f"
T3 = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
STEP = "Call secrets.token_urlsafe(32) where the quoted log line calls secrets.urlsafe(32), and redeploy."
LOG_LINE = "AttributeError: module 'secrets' has no attribute 'urlsafe'"
CONTEXT = ConsoleContext(
    region="us-east-1", cluster="civicforge-cluster", service="civicforge-board-service",
    log_group="/ecs/civicforge-board-mvp", log_stream_prefix="ecs", container="civicforge-app",
    service_deployment_arn="arn:aws:ecs:us-east-1:123456789012:service-deployment/civicforge-cluster/"
                           "civicforge-board-service/NCWGC2ZR-taawPAYrIaU5",
    stopped_task_ids=frozenset({T3}),
    window=(datetime(2025, 3, 1, 11, 55, tzinfo=timezone.utc), datetime(2025, 3, 1, 12, 1, 30, tzinfo=timezone.utc)),
)


def code_error(task_id: str, line: str = LOG_LINE) -> dict[str, str]:
    return {"category": "code_error", "task_id": task_id, "summary": "the application raised AttributeError",
            "evidence": f"task {task_id[:8]} log: {line}", "next_step": STEP}


# --- one cause, once ----------------------------------------------------------------------------------


def test_the_same_log_line_on_two_tasks_is_one_cause_with_both_tasks() -> None:
    (cause,) = merge_causes([code_error(T1), code_error(T2)], [T1, T2])

    assert cause["category"] == "code_error" and cause["task_ids"] == [T1, T2]
    assert cause["evidence"] == f"task 2618a261 log: {LOG_LINE}"  # the first task's line, as it was
    assert cause["next_step"] == STEP
    assert tasks_phrase(cause["task_ids"], [T1, T2]) == "on 2 of 2 tasks: 2618a261, d4ff58d0"


def test_another_log_line_another_category_or_the_service_stay_their_own_causes() -> None:
    other_line = code_error(T2, "NameError: name 'board' is not defined")
    contract = {**code_error(T1), "category": "contract_violation"}
    service_wide = {"category": "deployment_rolled_back", "task_id": None, "summary": "rolled back",
                    "evidence": "rolloutState=FAILED", "next_step": "read the events"}

    causes = merge_causes([code_error(T1), other_line, contract, service_wide, code_error(T2)], [T1, T2])

    assert [(c["category"], c["task_ids"]) for c in causes] == [
        ("code_error", [T1, T2]), ("code_error", [T2]), ("contract_violation", [T1]), ("deployment_rolled_back", [])]
    assert tasks_phrase([], [T1, T2]) == ""


def test_task_ids_and_addresses_are_what_the_key_takes_out() -> None:
    one = {"category": "permission_regression", "task_id": T1, "summary": "security check failed",
           "evidence": f"POST http://10.0.1.7:8000/api/boards/board_001/invites [task {T1[:8]}]: got 201"}
    two = {**one, "task_id": T2,
           "evidence": f"POST http://10.0.1.17:8000/api/boards/board_001/invites [task {T2[:8]}]: got 201"}
    names = TaskNames.of([T1, T2], ["10.0.1.7", "10.0.1.17"])
    assert cause_key(one, names) == cause_key(two, names)
    assert cause_key(one, TaskNames.of([T1, T2])) != cause_key(two, TaskNames.of([T1, T2]))  # the addresses differ
    # A task id the run never named is still taken out when it is shaped like one; a digest is not.
    assert without_task_ids(f"task {T3} stopped; image sha256:{'ab' * 32}", []) == \
        f"task <task> stopped; image sha256:{'ab' * 32}"
    assert without_task_ids("10.0.1.17 and 10.0.1.7", [], ["10.0.1.7"]) == "10.0.1.17 and <task>"


def test_the_tasks_phrase_counts_of_the_run_lists_a_few_and_names_tasks_outside_it() -> None:
    many = [f"{n:02d}aaaaaa" + "b" * 24 for n in range(24)]
    assert tasks_phrase(many, many, limit=3) == "on 24 of 24 tasks: 00aaaaaa, 01aaaaaa, 02aaaaaa and 21 more"
    assert tasks_phrase([T2], [T1, T2]) == "on 1 of 2 tasks: d4ff58d0"
    assert tasks_phrase([T3], [T1, T2]) == "on task 0b1c2d3e"  # a stopped task, not one the run checked
    assert tasks_phrase([T1, T3], []) == "on tasks 2618a261, 0b1c2d3e"


# --- links into the AWS console -----------------------------------------------------------------------


def test_a_log_stream_link_escapes_names_twice_and_opens_on_the_window() -> None:
    url = log_stream_url("us-east-1", "/ecs/civicforge-board-mvp", f"ecs/civicforge-app/{T1}", CONTEXT.window)
    assert url == (
        "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/"
        "$252Fecs$252Fcivicforge-board-mvp/log-events/ecs$252Fcivicforge-app$252F2618a2617c0e4b0fa3d3e0b4c1d2e3f4"
        "$3Fstart$3D1740830100000$26end$3D1740830490000")


def test_log_stream_escaping_matches_the_consoles_worked_example() -> None:
    # The aws-cloudwatch-logs-url package's own expected URL for this group, stream and window.
    url = log_stream_url("ap-northeast-1", "/aws/lambda/luciferous-devio-index-cl-FunctionCheckIndividualS-qNWf7JYCZBBM",
                         "2024/06/30/[39]3ca88f3a2fff4810b2de52cf027d0a40",
                         (datetime.fromtimestamp(1719759600, timezone.utc), datetime.fromtimestamp(1722437999, timezone.utc)))
    assert url == (
        "https://ap-northeast-1.console.aws.amazon.com/cloudwatch/home?region=ap-northeast-1#logsV2:log-groups/"
        "log-group/$252Faws$252Flambda$252Fluciferous-devio-index-cl-FunctionCheckIndividualS-qNWf7JYCZBBM/log-events/"
        "2024$252F06$252F30$252F$255B39$255D3ca88f3a2fff4810b2de52cf027d0a40$3Fstart$3D1719759600000$26end$3D1722437999000")


def test_ecs_console_links_for_the_service_its_deployments_and_a_task() -> None:
    assert ecs_service_url("us-east-1", "civicforge-cluster", "civicforge-board-service") == (
        "https://us-east-1.console.aws.amazon.com/ecs/v2/clusters/civicforge-cluster/services/civicforge-board-service"
        "/health?region=us-east-1")
    assert ecs_service_url("eu-west-1", "c", "s", "deployments") == (
        "https://eu-west-1.console.aws.amazon.com/ecs/v2/clusters/c/services/s/deployments?region=eu-west-1")
    assert ecs_task_url("us-east-1", "civicforge-cluster", T3) == (
        "https://us-east-1.console.aws.amazon.com/ecs/v2/clusters/civicforge-cluster/tasks/"
        "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e/configuration?region=us-east-1")
    assert ecs_task_url("cn-north-1", "c", T3).startswith("https://cn-north-1.console.amazonaws.cn/ecs/v2/")
    assert ecs_task_url("us-gov-west-1", "c", T3).startswith("https://console.amazonaws-us-gov.com/ecs/v2/")


def test_each_cause_links_its_tasks_logs_its_stopped_tasks_and_the_service_deployment() -> None:
    stopped = {"category": "task_restarting", "task_id": T3, "summary": "tasks keep stopping",
               "evidence": f"task {T3[:8]} stopped: Task failed container health checks", "next_step": "read logs"}

    first, second = merge_causes([code_error(T1), code_error(T2), stopped], [T1, T2], CONTEXT)

    assert [(link["kind"], link["title"]) for link in first["links"]] == [
        ("log_stream", "log stream of task 2618a261"), ("log_stream", "log stream of task d4ff58d0"),
        ("service", "ECS service civicforge-board-service"),
        ("service_deployment", "service deployment NCWGC2ZR-taawPAYrIaU5 (Deployments tab)")]
    assert [link["kind"] for link in second["links"]] == ["log_stream", "task", "service", "service_deployment"]
    assert second["links"][1]["url"].endswith(f"/tasks/{T3}/configuration?region=us-east-1")
    assert second["links"][3]["url"].endswith("/services/civicforge-board-service/deployments?region=us-east-1")


def test_no_links_without_a_region_and_no_log_link_without_awslogs() -> None:
    assert merge_causes([code_error(T1)], [T1], ConsoleContext(None, "c", "s"))[0]["links"] == []
    bare = ConsoleContext("us-east-1", "c", "s")
    assert [link["kind"] for link in merge_causes([code_error(T1)], [T1], bare)[0]["links"]] == ["service"]


def test_the_awslogs_options_come_from_the_task_definition_and_the_window_from_the_run() -> None:
    definition = {"taskDefinition": {"containerDefinitions": [
        {"name": "sidecar"},
        {"name": "civicforge-app", "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": "/ecs/civicforge-board-mvp", "awslogs-region": "us-east-1",
            "awslogs-stream-prefix": "ecs"}}}]}}
    assert awslogs_options(definition, "civicforge-app") == ("/ecs/civicforge-board-mvp", "ecs")
    assert awslogs_options(definition, "sidecar") == (None, None)
    assert awslogs_options(None, "civicforge-app") == (None, None)
    start, end = run_window(datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc), 30.0)
    assert (start.isoformat(), end.isoformat()) == ("2025-03-01T11:55:00+00:00", "2025-03-01T12:01:30+00:00")
