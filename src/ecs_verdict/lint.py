"""Lint the task definition's container health check on every run.

The runbook's first lesson (tasks restarting forever) came from the health check
itself: it called ``curl``, which python:3.11-slim lacks, and it probed ``/health``
on a build that only serves ``/api/health``. Both are visible in the task
definition before anything breaks, so the harness warns about them even on a
green run. Pure functions over the ``taskDefinition`` dict boto3 returns.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

# Codes are stable: the verdict and the lead's tests key on them.
NO_HEALTH_CHECK = "no_health_check"
HEALTH_CHECK_EXTERNAL_TOOL = "health_check_external_tool"
HEALTH_CHECK_PATH_404 = "health_check_path_404"
HEALTH_CHECK_PATH_FAILING = "health_check_path_failing"
HEALTH_CHECK_NO_START_PERIOD = "health_check_no_start_period"
CONTAINER_NOT_FOUND = "container_not_found"

FIXED_HEALTH_CHECK_EXAMPLE = (
    "python -c \"import urllib.request; urllib.request.urlopen('http://localhost:8000/health')\" || exit 1"
)

# curl/wget as a command word: at the start, after a shell operator, or as a path (/usr/bin/curl).
_EXTERNAL_TOOL = re.compile(r"(?:^|[\s;&|(`])(?:[\w./-]*/)?(curl|wget)(?=\s|$|;|\))")
_URL_PATH = re.compile(r"https?://[^/\s'\"]+(/[^\s'\"?#)\\]*)?")


@dataclass(frozen=True, slots=True)
class LintWarning:
    """One finding about the task definition: a stable ``code`` and a sentence for people."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def unwrap_task_definition(task_definition: dict[str, Any]) -> dict[str, Any]:
    """Accept both ``describe_task_definition()`` output and its ``taskDefinition`` member."""
    inner = task_definition.get("taskDefinition")
    return inner if isinstance(inner, dict) else task_definition


def find_container(task_definition: dict[str, Any], container: str | None = None) -> dict[str, Any] | None:
    """The named container, or else the first essential container with a health check, or the first."""
    definitions = unwrap_task_definition(task_definition).get("containerDefinitions") or []
    if container is not None:
        return next((c for c in definitions if c.get("name") == container), None)
    for candidate in definitions:
        if candidate.get("essential", True) and candidate.get("healthCheck"):
            return candidate
    return definitions[0] if definitions else None


def health_check_shell_text(health_check: dict[str, Any] | None) -> str | None:
    """The health check command as one shell line, without its ``CMD``/``CMD-SHELL`` marker."""
    if not health_check:
        return None
    command = list(health_check.get("command") or [])
    if not command:
        return None
    if command[0] == "CMD-SHELL":
        return " ".join(command[1:])
    if command[0] == "CMD":
        return shlex.join(command[1:])
    return " ".join(command)


def url_path_in(command: str) -> str | None:
    """The path of the first http(s) URL in a shell command (``"/"`` for a bare host), else None."""
    match = _URL_PATH.search(command)
    return (match.group(1) or "/") if match else None


def external_tool_in(command: str) -> str | None:
    """``"curl"`` or ``"wget"`` when a shell command runs one of them, else None."""
    match = _EXTERNAL_TOOL.search(command)
    return match.group(1) if match else None


def health_check_path(task_definition: dict[str, Any], container: str | None = None) -> str | None:
    """The URL path the container's health check probes, e.g. ``"/health"``; None if it names no URL."""
    found = find_container(task_definition, container)
    text = health_check_shell_text(found.get("healthCheck") if found else None)
    return url_path_in(text) if text is not None else None


def external_tool(task_definition: dict[str, Any], container: str | None = None) -> str | None:
    """``"curl"`` or ``"wget"`` when the container's health check depends on one of them, else None."""
    found = find_container(task_definition, container)
    text = health_check_shell_text(found.get("healthCheck") if found else None)
    return external_tool_in(text) if text is not None else None


def lint_task_definition(
    task_definition: dict[str, Any],
    *,
    container: str | None = None,
    health_path_status: dict[str, int] | None = None,
) -> list[LintWarning]:
    """Warnings about the container health check; an empty list means nothing to say.

    ``health_path_status`` maps paths the harness probed on a live task to their HTTP
    status, so a check probing a path that 404s there is caught.
    """
    found = find_container(task_definition, container)
    if found is None:
        wanted = container or "any container"
        return [LintWarning(CONTAINER_NOT_FOUND, f"task definition has no container definition for {wanted}")]
    name = found.get("name", "?")
    health_check = found.get("healthCheck")
    text = health_check_shell_text(health_check)
    if text is None:
        return [
            LintWarning(
                NO_HEALTH_CHECK,
                f"container {name} has no health check: ECS cannot replace a task that hangs; "
                f"add one, e.g. {FIXED_HEALTH_CHECK_EXAMPLE}",
            )
        ]
    warnings: list[LintWarning] = []
    tool = external_tool(task_definition, name)
    if tool is not None:
        warnings.append(
            LintWarning(
                HEALTH_CHECK_EXTERNAL_TOOL,
                f"container {name} health check calls {tool}, which slim images lack (tasks then restart "
                f"forever); use Python's urllib: {FIXED_HEALTH_CHECK_EXAMPLE}",
            )
        )
    path = health_check_path(task_definition, name)
    status = (health_path_status or {}).get(path) if path else None
    if status == 404:
        answering = sorted(p for p, code in (health_path_status or {}).items() if 200 <= code < 400)
        hint = f"; {', '.join(answering)} answers" if answering else ""
        warnings.append(
            LintWarning(
                HEALTH_CHECK_PATH_404,
                f"container {name} health check probes {path}, which answers 404 on the live task{hint}; "
                "match the exact health path in the task definition",
            )
        )
    elif status is not None and status >= 400:
        warnings.append(
            LintWarning(
                HEALTH_CHECK_PATH_FAILING,
                f"container {name} health check probes {path}, which answers {status} on the live task",
            )
        )
    if not health_check.get("startPeriod"):
        warnings.append(
            LintWarning(
                HEALTH_CHECK_NO_START_PERIOD,
                f"container {name} health check has no startPeriod: migrations run before the app listens, "
                "so early failures count against retries; set startPeriod (e.g. 60)",
            )
        )
    return warnings
