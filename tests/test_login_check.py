"""The accounts' login check before the tests: one login at a time per task, a refusal asked again alone.

The real service on PostgreSQL shares one database connection and cursor across its threads: logins
that arrive at one task at the same moment can answer 500, or 401 for a valid password
(``shared/civicforge-api.md``). The check must neither cause that nor believe it.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from plugins.accounts import Account
from plugins.board_api import check_logins
from ecs_verdict.redact import SecretRegistry
from tests.loopback import serving

PASSWORD = "right-password"
ACCOUNTS = [Account("owner", "owner", PASSWORD)] + [Account("participant", f"p{i}", PASSWORD) for i in range(5)]


class SharedCursorTask:
    """A task whose logins misbehave like the real service's shared cursor: two at once -> the second is 401."""

    def __init__(self, refuse_first_login_of: str | None = None) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_at_once = 0
        self.logins: list[str] = []
        self.refuse_first_login_of = refuse_first_login_of
        self.arrived = threading.Event()

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        task = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with task.lock:
                    task.in_flight += 1
                    task.most_at_once = max(task.most_at_once, task.in_flight)
                    overlapping = task.in_flight > 1
                    first_of_user = body["username"] not in task.logins
                    task.logins.append(body["username"])
                # Hold each login until another one arrives (bounded): overlapping logins then really overlap.
                task.arrived.set()
                task.arrived.wait(0.2)
                refused = overlapping or body["password"] != PASSWORD or (
                    first_of_user and body["username"] == task.refuse_first_login_of)
                with task.lock:
                    task.in_flight -= 1
                answer = ({"detail": "Invalid username or password"} if refused else
                          {"token": f"token-{body['username']}", "user_id": 1, "username": body["username"]})
                data = json.dumps(answer).encode()
                self.send_response(401 if refused else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def tasks_serving(*tasks: SharedCursorTask) -> Iterator[list[str]]:
    with ExitStack() as stack:
        yield [stack.enter_context(serving(task.handler())) for task in tasks]


@pytest.fixture
def two_tasks() -> Iterator[tuple[list[SharedCursorTask], list[str]]]:
    tasks = [SharedCursorTask(), SharedCursorTask()]
    for urls in tasks_serving(*tasks):
        yield tasks, urls


def test_no_task_sees_two_logins_at_once_and_every_account_logs_in(two_tasks) -> None:
    tasks, urls = two_tasks
    result = check_logins(urls, ACCOUNTS, SecretRegistry())
    assert [answer.status_code for _account, answer in result.answers] == [200] * len(ACCOUNTS)
    assert [task.most_at_once for task in tasks] == [1, 1]
    assert sorted(name for task in tasks for name in task.logins) == sorted(a.username for a in ACCOUNTS)
    assert result.notes == ()


def test_a_refusal_seen_once_is_asked_again_alone_and_noted() -> None:
    task = SharedCursorTask(refuse_first_login_of="p2")
    for urls in tasks_serving(task):
        result = check_logins(urls, ACCOUNTS, SecretRegistry())
    answers = {account.username: answer.status_code for account, answer in result.answers}
    assert answers == {account.username: 200 for account in ACCOUNTS}
    assert task.logins.count("p2") == 2
    assert result.notes == ("the login of 'p2' was refused (401) once and accepted when asked again alone",)


def test_a_wrong_password_is_still_refused() -> None:
    task = SharedCursorTask()
    wrong = [ACCOUNTS[0], Account("participant", "p9", "wrong-password")]
    for urls in tasks_serving(task):
        result = check_logins(urls, wrong, SecretRegistry())
    assert [answer.status_code for _account, answer in result.answers] == [200, 401]
    assert task.logins.count("p9") == 2  # asked again alone, refused again
    assert result.notes == ()


def test_a_task_that_gives_no_answer_is_none_not_an_error() -> None:
    result = check_logins(["http://127.0.0.1:9"], ACCOUNTS[:2], SecretRegistry())
    assert [answer for _account, answer in result.answers] == [None, None]
