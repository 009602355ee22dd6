"""Task definition lint: the runbook's broken curl health check and its urllib fix."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ecs_verdict.lint import (
    CONTAINER_NOT_FOUND,
    HEALTH_CHECK_EXTERNAL_TOOL,
    HEALTH_CHECK_NO_START_PERIOD,
    HEALTH_CHECK_PATH_404,
    HEALTH_CHECK_PATH_FAILING,
    NO_HEALTH_CHECK,
    health_check_path,
    lint_task_definition,
)

CURL_CHECK = ["CMD-SHELL", "curl -f http://localhost:8000/health || exit 1"]
URLLIB_CHECK = [
    "CMD-SHELL",
    "python -c \"import urllib.request; urllib.request.urlopen('http://localhost:8000/api/health')\" || exit 1",
]


def task_definition(command: list[str] | None, **check: Any) -> dict[str, Any]:
    """A describe_task_definition()['taskDefinition'] shaped like the CivicForge one."""
    container: dict[str, Any] = {
        "name": "civicforge-app",
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/civicforge-board:latest",
        "essential": True,
        "portMappings": [{"containerPort": 8000, "protocol": "tcp"}],
    }
    if command is not None:
        container["healthCheck"] = {"command": command, "interval": 30, "timeout": 5, "retries": 3, **check}
    return {
        "family": "civicforge-board-mvp",
        "revision": 7,
        "networkMode": "awsvpc",
        "containerDefinitions": [container],
    }


def codes(warnings: list[Any]) -> list[str]:
    return [w.code for w in warnings]


def test_the_runbooks_broken_curl_check_is_flagged_twice_with_the_fix() -> None:
    broken = task_definition(CURL_CHECK, startPeriod=60)
    warnings = lint_task_definition(
        broken, container="civicforge-app", health_path_status={"/health": 404, "/api/health": 200}
    )
    assert codes(warnings) == [HEALTH_CHECK_EXTERNAL_TOOL, HEALTH_CHECK_PATH_404]
    assert "calls curl" in warnings[0].message and "urllib.request.urlopen" in warnings[0].message
    assert "probes /health, which answers 404" in warnings[1].message
    assert "/api/health answers" in warnings[1].message


def test_the_fixed_urllib_check_is_clean() -> None:
    fixed = task_definition(URLLIB_CHECK, startPeriod=60)
    assert lint_task_definition(fixed, health_path_status={"/api/health": 200, "/health": 404}) == []


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["CMD", "curl", "-f", "http://localhost:8000/health"], HEALTH_CHECK_EXTERNAL_TOOL),
        (["CMD-SHELL", "wget -qO- http://localhost:8000/health || exit 1"], HEALTH_CHECK_EXTERNAL_TOOL),
        (["CMD-SHELL", "/usr/bin/curl -sf http://localhost:8000/health"], HEALTH_CHECK_EXTERNAL_TOOL),
    ],
)
def test_any_spelling_of_curl_or_wget_is_flagged(command: list[str], code: str) -> None:
    assert code in codes(lint_task_definition(task_definition(command, startPeriod=60)))


def test_a_command_that_merely_mentions_curl_in_a_word_is_not_flagged() -> None:
    command = ["CMD-SHELL", "python /app/check_curly.py http://localhost:8000/health"]
    assert lint_task_definition(task_definition(command, startPeriod=30)) == []


def test_missing_start_period_and_missing_check_are_warned() -> None:
    assert codes(lint_task_definition(task_definition(URLLIB_CHECK))) == [HEALTH_CHECK_NO_START_PERIOD]
    assert codes(lint_task_definition(task_definition(None))) == [NO_HEALTH_CHECK]


def test_other_failing_status_and_unknown_container() -> None:
    td = task_definition(URLLIB_CHECK, startPeriod=60)
    assert codes(lint_task_definition(td, health_path_status={"/api/health": 503})) == [HEALTH_CHECK_PATH_FAILING]
    assert codes(lint_task_definition(td, container="sidecar")) == [CONTAINER_NOT_FOUND]


@pytest.mark.parametrize(
    ("command", "path"),
    [
        (CURL_CHECK, "/health"),
        (URLLIB_CHECK, "/api/health"),
        (["CMD", "curl", "-f", "http://localhost:8000/api/health?deep=1"], "/api/health"),
        (["CMD-SHELL", "curl -f http://localhost:8000 || exit 1"], "/"),
        (["CMD-SHELL", "pgrep uvicorn"], None),
    ],
)
def test_health_check_path_extracts_the_probed_path(command: list[str], path: str | None) -> None:
    assert health_check_path(task_definition(command), "civicforge-app") == path


def test_wrapped_describe_output_and_no_check_are_handled() -> None:
    wrapped = {"taskDefinition": task_definition(CURL_CHECK, startPeriod=60), "tags": []}
    assert health_check_path(wrapped, None) == "/health"
    assert health_check_path(task_definition(None), "civicforge-app") is None


def test_lint_does_not_modify_its_input() -> None:
    td = task_definition(CURL_CHECK)
    before = copy.deepcopy(td)
    lint_task_definition(td, health_path_status={"/health": 404})
    assert td == before
