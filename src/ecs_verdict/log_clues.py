"""Clues in a task's logs and stop reasons: the patterns diagnosis looks for, and where (pytest-free).

uvicorn's access lines split a log into requests, so a traceback is read as the answer to
the request logged before it; an app that mounts its API as a sub-application logs paths
without the mount prefix, which ``logged_as`` allows for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

EXEC_FORMAT = re.compile(r"exec format error", re.IGNORECASE)
MISSING_TABLE = re.compile(
    r"no such table: ?(?P<sqlite>[\w.]+)|relation \"(?P<pg>[^\"]+)\" does not exist", re.IGNORECASE
)
CURSOR_ATTRIBUTE = re.compile(
    r"AttributeError: '(?P<type>\w*(?:Cursor|Result|Connection)\w*)' object has no attribute '(?P<attr>\w+)'"
    r"|has no attribute '(?P<attr2>rowcount|lastrowid)'",
    re.IGNORECASE,
)
# One database connection and cursor shared by the server's threads (the real service on PostgreSQL):
# simultaneous requests read each other's results. psycopg2 says it in these words.
SHARED_CONNECTION = re.compile(
    r"ProgrammingError: no results to fetch|InterfaceError: cursor already closed"
    r"|error with status PGRES_\w+ and no message from the libpq",
    re.IGNORECASE,
)
PYTHON_ERROR = re.compile(
    r"(?:^|[\s:])(?:[\w.]+\.)?(?P<error>AttributeError|NameError|TypeError|KeyError|ImportError|ModuleNotFoundError|"
    r"UnboundLocalError|IndexError|ValueError|ZeroDivisionError|SyntaxError|RecursionError)(?::|$)"
)
HEALTH_STOP = re.compile(r"failed (?:container|ELB) health checks", re.IGNORECASE)
ROLLBACK_EVENT = re.compile(r"roll(?:ing|ed)? ?back|circuit breaker", re.IGNORECASE)
# ECS's words when deployment alarms fail a rollout: "... alarm(s) smoke-alarm are in ALARM state."
ALARM_ROLLBACK = re.compile(r"alarm\(s\) (?P<names>[^\s]+(?:, ?[^\s]+)*) (?:are|is) in ALARM state", re.IGNORECASE)
# uvicorn's access log line: '... - "POST /api/items/42/shares HTTP/1.1" 500 Internal Server Error'
ACCESS_LINE = re.compile(r"\"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+\" (?P<status>\d{3})")


def request_blocks(lines: tuple[str, ...]) -> list[tuple[str | None, list[str]]]:
    """Split a task's log into (request, lines) blocks: a traceback belongs to the request before it."""
    blocks: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in lines:
        access = ACCESS_LINE.search(line)
        if access:
            blocks.append((f"{access['method']} {access['path']}", [line]))
        else:
            blocks[-1][1].append(line)
    return blocks


def request_path(request: object) -> str:
    """``"POST /api/x?y=1"`` -> ``"POST /api/x"``: query strings vary, the route does not."""
    return str(request or "").split("?", 1)[0].strip()


def same_request(logged: str, asked: str) -> bool:
    logged_method, _, logged_path = logged.partition(" ")
    asked_method, _, asked_path = asked.partition(" ")
    return logged_method == asked_method and logged_as(logged_path, asked_path)


def newest_first(ordered: list[tuple[str, tuple[str, ...]]]) -> list[tuple[str, str]]:
    return [(task_id, line) for task_id, lines in ordered for line in reversed(lines)]


def first_match(pattern: re.Pattern[str], clues: Iterable[tuple[str, str]]) -> tuple[str, str, re.Match[str]] | None:
    for task_id, text in clues:
        match = pattern.search(text)
        if match:
            return task_id, text, match
    return None


def answered_404(line: str, path: str) -> bool:
    access = ACCESS_LINE.search(line)
    return access is not None and logged_as(access["path"], path) and access["status"] == "404"


def logged_as(logged: str, asked: str) -> bool:
    """Whether an access line's path can be the request for ``asked``.

    An app that mounts its API as a sub-application logs the path inside the mount:
    a service that mounts its API at ``/api`` logs ``/api/health`` as ``/health``. So a logged path
    matches the asked one, or the asked one with a leading mount prefix left out.
    """
    logged, asked = logged.split("?", 1)[0], asked.split("?", 1)[0]
    if logged == asked:
        return True
    prefix = asked[: -len(logged)] if logged and asked.endswith(logged) else ""
    return prefix.startswith("/") and not prefix.endswith("/") and logged.startswith("/")
