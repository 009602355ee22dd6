"""The CivicForge stand-in, run as real processes and spoken to over real HTTP.

Several stand-in "tasks" share one prepared SQLite file per module, as ECS
tasks share one database; each task may carry its own fault switches. The
tests pin the API doc's status codes and ``detail`` strings, and for every
fault the status, the body and the line it leaves in the task's log. The
recorded exchanges of the real service are replayed in test_replay_standin.py.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from stage.faults import parse_faults
from stage.standin.app import DEFAULT_SECRET_KEY, SlowResponses, Settings, create_app, issue_token, read_token
from stage.standin.db import (
    PERMISSION_NAMES,
    ROLE_PERMISSIONS,
    add_membership,
    connect,
    insert_user,
    migrate,
    prepare_database,
    utc_now_naive,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = {
    "owner": {"username": "smoke-owner", "password": "owner-pass-1"},
    "participant": {"username": "smoke-participant", "password": "participant-pass-1"},
}
STARTUP_DEADLINE_S = 30.0
LOG_DEADLINE_S = 10.0
POLL_INTERVAL_S = 0.05
# The real service logs its mounted API without the /api prefix (recorded).
ACCESS_LINE = re.compile(r'INFO: +127\.0\.0\.1:\d+ - "GET /health HTTP/1\.1" 200 OK')
INVITE_TOKEN = r"[A-Za-z0-9_-]{43}"
REAL_INVITE_BASE = "http://localhost:8000"  # BASE_URL is unset in the real deployment (recorded)
TABLE_LINES = ["", "Database initialized with tables:", "  ✓ users", "  ✓ quests", "  ✓ verifications",
               "  ✓ experience_ledger", "  ✓ board_config", "  ✓ board_invites", "  ✓ board_memberships"]


@dataclass(frozen=True, slots=True)
class Task:
    """One running stand-in process and where its output goes."""

    process: subprocess.Popen[bytes]
    base_url: str
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10.0)


def _once(task: Task, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One request on its own connection: after an unhandled exception uvicorn closes the
    connection it answered the 500 on, so a pooled client could be reset on its next request."""
    return httpx.request(method, task.base_url + path, timeout=10.0, **kwargs)  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _launch(db: Path, logs: Path, name: str, *args: str) -> Task:
    port = _free_port()
    stdout_path, stderr_path = logs / f"{name}.out", logs / f"{name}.err"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "stage.standin", "--host", "127.0.0.1", "--port", str(port), "--db", str(db), *args],
            cwd=REPO_ROOT, stdout=out, stderr=err,
        )
    return Task(process, f"http://127.0.0.1:{port}", stdout_path, stderr_path)


def _pause(task: Task) -> bool:
    """Wait one poll interval (on the process itself); True when it has exited."""
    try:
        task.process.wait(timeout=POLL_INTERVAL_S)
    except subprocess.TimeoutExpired:
        return False
    return True


def _wait_until_answering(task: Task) -> None:
    deadline = datetime.now() + timedelta(seconds=STARTUP_DEADLINE_S)
    while datetime.now() < deadline:
        try:
            httpx.get(task.base_url + "/api/health", timeout=2.0)
            return
        except httpx.TransportError:
            if _pause(task):
                pytest.fail(f"stand-in exited with {task.process.returncode}:\n{task.stderr()}")
    pytest.fail(f"stand-in at {task.base_url} did not answer within {STARTUP_DEADLINE_S}s:\n{task.stderr()}")


def _wait_for_log(task: Task, stream: str, text: str, deadline_s: float = LOG_DEADLINE_S) -> str:
    """The stream's content once it contains ``text`` (uvicorn logs a traceback after the 500 is sent)."""
    read = task.stdout if stream == "stdout" else task.stderr
    deadline = datetime.now() + timedelta(seconds=deadline_s)
    while datetime.now() < deadline:
        if text in (content := read()):
            return content
        _pause(task)
    pytest.fail(f"{text!r} never appeared in the task's {stream}:\n{read()}")


def _stop(task: Task, sig: int = signal.SIGTERM) -> int:
    if task.process.poll() is None:
        task.process.send_signal(sig)
        try:
            task.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            task.process.kill()
            task.process.wait()
    return task.process.returncode


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("standin-db") / "board.db"
    prepare_database(str(db), ACCOUNTS)
    return db


@pytest.fixture(scope="module")
def fleet(shared_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Task]]:
    """Every long-lived task, launched together (start-up dominates the module's run time)."""
    logs = tmp_path_factory.mktemp("standin-logs")
    specs = {
        "healthy": (),
        "faulty": ("--fault", "no_root_health", "--fault", "rowcount", "--fault", "urlsafe",
                   "--fault", "slow_ms=20", "--version", "7.7.7"),
        "no_owner": ("--fault", "no_owner"),
        "lax": ("--fault", "participant_can_invite"),
        "unmigrated": ("--fault", "no_migrations"),
        "dropping": ("--fault", "reset_once=/api/me"),
    }
    tasks = {name: _launch(shared_db, logs, name, *args) for name, args in specs.items()}
    try:
        for task in tasks.values():
            _wait_until_answering(task)
        yield tasks
    finally:
        for task in tasks.values():
            task.process.send_signal(signal.SIGTERM)  # all at once: shutting down takes a moment each
        for task in tasks.values():
            _stop(task)


@pytest.fixture(scope="module")
def healthy(fleet: dict[str, Task]) -> Task:
    return fleet["healthy"]


@pytest.fixture(scope="module")
def api(healthy: Task) -> Iterator[httpx.Client]:
    with healthy.client() as client:
        yield client


def _login(client: httpx.Client, account: str) -> dict[str, str]:
    response = client.post("/api/auth/login", json={k: ACCOUNTS[account][k] for k in ("username", "password")})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def _register(client: httpx.Client, username: str, **extra: str) -> tuple[int, dict[str, str]]:
    body = {"username": username, "email": f"{username}@example.test", "password": "pw-" + username,
            "real_name": username.title(), **extra}
    response = client.post("/api/auth/register", json=body)
    assert response.status_code == 200, response.text
    return response.json()["user_id"], {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture(scope="module")
def owner(api: httpx.Client) -> dict[str, str]:
    return _login(api, "owner")


@pytest.fixture(scope="module")
def participant(api: httpx.Client) -> dict[str, str]:
    return _login(api, "participant")


def _invite(client: httpx.Client, headers: dict[str, str], **body: object) -> str:
    response = client.post("/api/boards/board_001/invites", headers=headers, json=body)
    assert response.status_code == 200, response.text
    return response.json()["invite_url"].split("token=", 1)[1]


def _is_naive_iso(text: str) -> bool:
    return datetime.fromisoformat(text).tzinfo is None


# --- database and tokens (no process) ---------------------------------------------------


def test_role_table_matches_the_api_doc_and_holds_granted_permissions_only() -> None:
    granted = {role: set(perms) for role, perms in ROLE_PERMISSIONS.items()}
    assert granted == {
        "owner": {"view_board", "create_quest", "verify_quest", "create_invites", "manage_members",
                  "view_analytics", "edit_any_quest", "delete_any_quest"},
        "organizer": {"view_board", "create_quest", "verify_quest", "create_invites", "view_analytics",
                      "edit_own_quest"},
        "reviewer": {"view_board", "verify_quest", "view_analytics", "comment_on_quest"},
        "friend": {"view_board", "create_quest", "claim_quest", "verify_quest"},
        "participant": {"view_board", "claim_quest", "submit_work"},
    }
    # Recorded: no false entries; the owner's keys in the real service's order.
    assert all(set(perms.values()) == {True} for perms in ROLE_PERMISSIONS.values())
    assert list(ROLE_PERMISSIONS["owner"]) == ["view_board", "create_quest", "edit_any_quest", "delete_any_quest",
                                               "verify_quest", "manage_members", "create_invites", "view_analytics"]
    assert list(ROLE_PERMISSIONS["participant"]) == ["view_board", "claim_quest", "submit_work"]
    assert set().union(*ROLE_PERMISSIONS.values()) == set(PERMISSION_NAMES)
    assert len(PERMISSION_NAMES) == 12


def test_prepare_database_is_idempotent_and_safe_when_run_twice_at_once(tmp_path: Path) -> None:
    db = str(tmp_path / "race.db")
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def prepare() -> None:
        start.wait()
        try:
            prepare_database(db, ACCOUNTS)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    prepare_database(db, ACCOUNTS)

    conn = connect(db)
    users = conn.execute("SELECT username, email, role, real_name FROM users ORDER BY id").fetchall()
    members = conn.execute("SELECT board_id, user_id, role FROM board_memberships").fetchall()
    assert errors == []
    assert [tuple(row) for row in users] == [
        ("smoke-owner", "smoke-owner@smoke.civicforge.test", "Organizer", "Smoke Owner"),
        ("smoke-participant", "smoke-participant@smoke.civicforge.test", "Participant", "Smoke Participant"),
    ]
    assert [tuple(row) for row in members] == [("board_001", 1, "owner")]


def test_tokens_are_hs256_jwt_shaped_with_an_iso_exp() -> None:
    token = issue_token(7, "someone", "key-a")
    header, payload, _ = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    assert decode(header) == {"alg": "HS256", "typ": "JWT"}
    claims = decode(payload)
    assert claims["sub"] == "7" and _is_naive_iso(claims["exp"])
    assert read_token(token, "key-a") == 7
    assert read_token(token, "key-b") is None
    assert read_token(issue_token(7, "someone", "key-a", now=utc_now_naive() - timedelta(hours=25)), "key-a") is None


def test_slow_ms_installs_the_delay_middleware(tmp_path: Path) -> None:
    # The delay itself is not timed here (no timing assertions); benchmarks measure it.
    app = create_app(Settings(db_path=str(tmp_path / "x.db"), faults=parse_faults(["slow_ms=250"])))
    plain = create_app(Settings(db_path=str(tmp_path / "x.db")))
    assert [(m.cls, m.kwargs) for m in app.user_middleware] == [(SlowResponses, {"delay_s": 0.25})]
    assert plain.user_middleware == []


# --- health and start-up -------------------------------------------------------------------


def test_health_answers_like_the_real_service(healthy: Task, api: httpx.Client, shared_db: Path) -> None:
    assert api.get("/api/health").json() == {"status": "healthy", "database": "connected"}
    assert api.get("/health").json() == {"status": "healthy", "database": "connected"}
    head = api.head("/api/health")
    assert (head.status_code, head.headers["allow"]) == (405, "GET")
    assert ACCESS_LINE.search(_wait_for_log(healthy, "stdout", '"GET /health HTTP/1.1" 200 OK'))
    assert '"GET /api/health' not in healthy.stdout()
    lines = healthy.stdout().splitlines()
    # The database was prepared (config and owner exist): no "Creating ..." nor "Added user" line.
    assert lines[:12] == [f"Running migrations on sqlite:///{shared_db}", "Applying SQLite schema...",
                          "Migrations complete!", *TABLE_LINES]
    assert "Uvicorn running on http://127.0.0.1:" in healthy.stderr()


def test_the_api_is_mounted_at_api_like_the_real_service(api: httpx.Client) -> None:
    redirect = api.get("/api/health/")
    assert (redirect.status_code, redirect.headers["location"]) == (307, str(api.base_url.join("/api/health")))
    paths = api.get("/api/openapi.json").json()["paths"]
    assert "/me" in paths and "/health" in paths and not any(path.startswith("/api") for path in paths)
    quests = api.get("/api/quests")  # listed by the real service, never exercised by a recording
    assert (quests.status_code, quests.json()) == (501, {"detail": "GET /quests is not modelled by the stand-in"})


def test_startup_bootstraps_the_first_organizer_and_sigterm_exits_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    conn = connect(str(db))
    migrate(conn)
    participant_id = insert_user(conn, username="p", email="p@x.test", password="pw", real_name="P", role="Participant")
    organizer_id = insert_user(conn, username="o", email="o@x.test", password="pw", real_name="O", role="Organizer")
    conn.close()
    task = _launch(db, tmp_path, "fresh")
    try:
        _wait_until_answering(task)
        stdout = task.stdout()
    finally:
        returncode = _stop(task, signal.SIGTERM)
    # The earliest *Organizer* becomes owner, not the earliest user.
    assert (participant_id, organizer_id) == (1, 2)
    # A database whose migrations never ran to the end: the default board configuration is
    # created too, then the owner bootstrap, on this run only (as recorded).
    assert stdout.splitlines()[:14] == [
        f"Running migrations on sqlite:///{db}", "Applying SQLite schema...",
        "Creating default board configuration...", f"Added user {organizer_id} as board owner",
        "Migrations complete!", *TABLE_LINES,
    ]
    assert returncode == 0
    assert "Finished server process" in task.stderr()


def test_warmup_keeps_the_port_closed_then_serves_and_sigint_exits_cleanly(shared_db: Path, tmp_path: Path) -> None:
    task = _launch(shared_db, tmp_path, "warmup", "--fault", "warmup_s=2")
    try:
        _wait_for_log(task, "stdout", TABLE_LINES[-1], deadline_s=STARTUP_DEADLINE_S)
        with pytest.raises(httpx.ConnectError):
            httpx.get(task.base_url + "/api/health", timeout=2.0)
        _wait_until_answering(task)
        assert httpx.get(task.base_url + "/api/health").status_code == 200
    finally:
        returncode = _stop(task, signal.SIGINT)
    assert returncode == 0


def test_reset_once_drops_the_first_request_to_its_path_without_an_answer(fleet: dict[str, Task]) -> None:
    task = fleet["dropping"]
    with httpx.Client(base_url=task.base_url, timeout=5.0) as client:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            client.get("/api/me")
        assert client.get("/api/me").status_code == 403  # once only: then the route answers as ever
        assert client.get("/api/me").status_code == 403
    assert "ASGI callable returned without starting response" not in task.stderr()


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("bogus", "unknown fault 'bogus'; known faults: "),
        ("reset_once=api/me", "fault reset_once needs a request path, e.g. reset_once=/api/me"),
        ("slow_ms=abc", "fault slow_ms needs a number"),
        ("curl_health_check", "'curl_health_check' is a stage fault, not an app fault"),
    ],
)
def test_a_bad_fault_exits_nonzero_with_one_line(fault: str, message: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stage.standin", "--host", "127.0.0.1", "--port", "1", "--db",
         str(tmp_path / "x.db"), "--fault", fault],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr


def test_health_is_503_when_the_database_cannot_be_opened(tmp_path: Path) -> None:
    task = _launch(tmp_path / "missing-dir" / "board.db", tmp_path, "nodb", "--fault", "no_migrations")
    try:
        _wait_until_answering(task)
        response = httpx.get(task.base_url + "/api/health")
    finally:
        _stop(task)
    assert response.status_code == 503
    assert response.json() == {"detail": "Health check failed: unable to open database file"}


# --- auth ------------------------------------------------------------------------------------


def test_register_and_login(api: httpx.Client) -> None:
    body = {"username": "alice", "email": "alice@example.test", "password": "alice-pw", "real_name": "Alice"}
    registered = api.post("/api/auth/register", json=body)
    assert registered.status_code == 200
    assert set(registered.json()) == {"token", "user_id", "username"}
    assert registered.json()["username"] == "alice"
    assert len(registered.json()["token"].split(".")) == 3

    again = api.post("/api/auth/register", json=body)
    same_email = api.post("/api/auth/register", json={**body, "username": "alice2"})
    missing = api.post("/api/auth/register", json={"username": "bob", "password": "x"})
    assert (again.status_code, again.json()) == (400, {"detail": "Username already exists"})
    assert (same_email.status_code, same_email.json()) == (400, {"detail": "Email already exists"})
    assert missing.status_code == 422

    login = api.post("/api/auth/login", json={"username": "alice", "password": "alice-pw"})
    assert login.status_code == 200
    assert login.json()["user_id"] == registered.json()["user_id"] and login.json()["username"] == "alice"
    for wrong in ({"username": "alice", "password": "nope"}, {"username": "nobody", "password": "x"}):
        failed = api.post("/api/auth/login", json=wrong)
        assert (failed.status_code, failed.json()) == (401, {"detail": "Invalid username or password"})


@pytest.mark.parametrize(
    ("authorization", "status", "detail"),
    [
        (None, 403, "Not authenticated"),
        ("Basic c21va2U6c21va2U=", 403, "Invalid authentication credentials"),
        ("Bearer not-a-token", 401, "Invalid authentication credentials"),
        ("Bearer " + issue_token(1, "smoke-owner", "another-key"), 401, "Invalid authentication credentials"),
        ("Bearer " + issue_token(1, "smoke-owner", DEFAULT_SECRET_KEY, now=datetime(2020, 1, 1)),
         401, "Invalid authentication credentials"),
    ],
    ids=["no-header", "basic-scheme", "garbage-bearer", "wrong-key", "expired"],
)
def test_401_versus_403(api: httpx.Client, authorization: str | None, status: int, detail: str) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in (("GET", "/api/me"), ("GET", "/api/boards/board_001/members"),
                         ("POST", "/api/boards/board_001/invites")):
        response = api.request(method, path, headers=headers)
        assert (response.status_code, response.json()) == (status, {"detail": detail}), path


def test_me_for_the_owner_and_a_participant(api: httpx.Client, owner: dict[str, str],
                                            participant: dict[str, str]) -> None:
    me = api.get("/api/me", headers=owner).json()
    assert list(me) == ["id", "username", "real_name", "verified", "role", "reputation", "created_at",
                        "board_membership", "experience_balance"]
    assert (me["username"], me["real_name"], me["verified"], me["role"]) == (
        "smoke-owner", "Smoke Owner", False, "Organizer")
    assert (me["reputation"], me["experience_balance"]) == (0, 20)
    assert _is_naive_iso(me["created_at"])
    assert me["board_membership"]["role"] == "owner"
    assert me["board_membership"]["permissions"] == ROLE_PERMISSIONS["owner"]
    assert set(me["board_membership"]["permissions"].values()) == {True}
    other = api.get("/api/me", headers=participant).json()
    assert (other["role"], other["board_membership"], other["experience_balance"]) == ("Participant", None, 0)


def test_me_for_a_validly_signed_token_of_a_missing_user_is_404(api: httpx.Client) -> None:
    ghost = {"Authorization": "Bearer " + issue_token(999_999, "ghost", DEFAULT_SECRET_KEY)}
    response = api.get("/api/me", headers=ghost)
    assert (response.status_code, response.json()) == (404, {"detail": "user not found"})


# --- invites, joining, members ------------------------------------------------------------------


def test_create_invite(healthy: Task, api: httpx.Client, owner: dict[str, str],
                       participant: dict[str, str]) -> None:
    no_body = api.post("/api/boards/board_001/invites", headers=owner)
    assert (no_body.status_code, no_body.json()) == (422, {"detail": [{
        "type": "missing", "loc": ["body"], "msg": "Field required", "input": None,
        "url": "https://errors.pydantic.dev/2.11/v/missing"}]})
    before = utc_now_naive()
    response = api.post("/api/boards/board_001/invites", headers=owner, json={})
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["invite_url", "expires_at", "role"] and body["role"] == "friend"
    assert re.fullmatch(rf"{re.escape(REAL_INVITE_BASE)}/board/board_001/join\?token={INVITE_TOKEN}",
                        body["invite_url"])
    expires = datetime.fromisoformat(body["expires_at"])
    assert expires.tzinfo is None
    assert before + timedelta(hours=47) < expires < before + timedelta(hours=49)

    reviewer = api.post("/api/boards/board_001/invites", headers=owner, json={"role": "reviewer", "max_uses": 3})
    assert reviewer.json()["role"] == "reviewer"
    denied = api.post("/api/boards/board_001/invites", headers=participant, json={})
    assert (denied.status_code, denied.json()) == (403, {"detail": "No permission to create invites"})

    bad_role = _once(healthy, "POST", "/api/boards/board_001/invites", headers=owner, json={"role": "Owner"})
    assert (bad_role.status_code, bad_role.text) == (500, "Internal Server Error")
    stderr = _wait_for_log(healthy, "stderr", "ValueError: Invalid role: Owner")
    assert "Exception in ASGI application" in stderr
    assert stderr.rstrip().splitlines()[-1] == "ValueError: Invalid role: Owner"


def test_join_checks_in_the_documented_order(api: httpx.Client, owner: dict[str, str]) -> None:
    _, carol = _register(api, "carol")
    _, dave = _register(api, "dave")
    single_use = _invite(api, owner, role="reviewer")
    expired = _invite(api, owner, expires_hours=-1)

    def join(headers: dict[str, str], token: str, board: str = "board_001") -> tuple[int, dict[str, str]]:
        response = api.post(f"/api/boards/{board}/join", headers=headers, json={"token": token})
        return response.status_code, response.json()

    assert join(carol, "no-such-token") == (404, {"detail": "Invalid invite"})
    assert join(carol, single_use, board="board_999") == (404, {"detail": "Invalid invite"})
    assert join(carol, expired) == (400, {"detail": "Invite expired or already used"})
    assert join(carol, single_use) == (200, {"message": "Successfully joined board", "role": "reviewer"})
    assert join(dave, single_use) == (400, {"detail": "Invite expired or already used"})
    assert join(carol, _invite(api, owner)) == (400, {"detail": "Already a board member"})
    assert api.post("/api/boards/board_001/join", headers=carol, json={}).status_code == 422

    members = api.get("/api/boards/board_001/members", headers=dave).json()
    assert members[0]["username"] == "carol" and members[-1]["username"] == "smoke-owner"
    assert list(members[0]) == ["id", "user_id", "username", "real_name", "role", "permissions", "joined_at"]
    assert members[0]["permissions"] == ROLE_PERMISSIONS["reviewer"] and _is_naive_iso(members[0]["joined_at"])
    assert api.get("/api/boards/no_such_board/members", headers=dave).json() == []


def test_remove_member(api: httpx.Client, owner: dict[str, str], participant: dict[str, str]) -> None:
    erin_id, erin = _register(api, "erin")
    api.post("/api/boards/board_001/join", headers=erin, json={"token": _invite(api, owner)})
    owner_id = api.get("/api/me", headers=owner).json()["id"]

    def remove(headers: dict[str, str], user_id: object) -> tuple[int, object]:
        response = api.delete(f"/api/boards/board_001/members/{user_id}", headers=headers)
        return response.status_code, response.json()

    assert remove(participant, erin_id) == (403, {"detail": "No permission to manage members"})
    assert remove(owner, erin_id) == (200, {"message": "Member removed successfully"})
    assert remove(owner, erin_id) == (404, {"detail": "Member not found"})
    assert remove(owner, owner_id) == (400, {"detail": "Cannot remove the only board owner"})
    assert remove(owner, "abc")[0] == 422


CONCURRENT_JOINS = 6


def test_concurrent_joins_of_one_user_end_like_the_real_service(healthy: Task, shared_db: Path, api: httpx.Client,
                                                                 owner: dict[str, str]) -> None:
    # Recorded: one 200; the others 400 "Already a board member" or a plain-text 500 when
    # both passed the check and the unique constraint stopped the second INSERT.
    lena_id, lena = _register(api, "lena")
    token = _invite(api, owner, max_uses=CONCURRENT_JOINS * 2)
    start = threading.Barrier(CONCURRENT_JOINS)
    answers: list[tuple[int, str]] = []

    def join() -> None:
        start.wait()
        response = _once(healthy, "POST", "/api/boards/board_001/join", headers=lena, json={"token": token})
        answers.append((response.status_code, response.text))

    threads = [threading.Thread(target=join) for _ in range(CONCURRENT_JOINS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ok = (200, json.dumps({"message": "Successfully joined board", "role": "friend"}, separators=(",", ":")))
    allowed_losers = {(400, '{"detail":"Already a board member"}'), (500, "Internal Server Error")}
    assert len(answers) == CONCURRENT_JOINS
    assert answers.count(ok) == 1
    assert set(answers) - {ok} <= allowed_losers
    conn = connect(str(shared_db))
    (rows,) = conn.execute("SELECT COUNT(*) FROM board_memberships WHERE user_id = ?", (lena_id,)).fetchone()
    conn.close()
    assert rows == 1


def test_a_second_membership_of_one_user_is_an_integrity_error(tmp_path: Path) -> None:
    # What a lost join race runs into (and the real service lets escape as a 500).
    conn = connect(str(tmp_path / "unique.db"))
    migrate(conn)
    user_id = insert_user(conn, username="u", email="u@x.test", password="pw", real_name="U", role="Participant")
    add_membership(conn, board_id="board_001", user_id=user_id, role="participant")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        add_membership(conn, board_id="board_001", user_id=user_id, role="friend")
    conn.close()


def test_the_earliest_quest_creator_gets_owner_permissions(shared_db: Path, api: httpx.Client,
                                                           owner: dict[str, str]) -> None:
    frank_id, frank = _register(api, "frank")
    denied = api.post("/api/boards/board_001/invites", headers=frank, json={})
    assert denied.status_code == 403
    conn = connect(str(shared_db))
    conn.execute("INSERT INTO quests (title, creator_id, created_at) VALUES ('first', ?, '2000-01-01T00:00:00')",
                 (frank_id,))
    conn.close()
    assert api.post("/api/boards/board_001/invites", headers=frank, json={}).status_code == 200


# --- faults, each over HTTP, on tasks that share the database with a healthy one -------------


def test_no_root_health_and_version(fleet: dict[str, Task]) -> None:
    with fleet["faulty"].client() as faulty:
        root = faulty.get("/health")
        assert (root.status_code, root.json()) == (404, {"detail": "Not Found"})
        assert faulty.get("/api/health").json() == {"status": "healthy", "database": "connected", "version": "7.7.7"}


def test_urlsafe_is_a_real_attribute_error(fleet: dict[str, Task], owner: dict[str, str]) -> None:
    task = fleet["faulty"]
    response = _once(task, "POST", "/api/boards/board_001/invites", headers=owner, json={})
    assert (response.status_code, response.text) == (500, "Internal Server Error")
    stderr = _wait_for_log(task, "stderr", "AttributeError: module 'secrets' has no attribute 'urlsafe'")
    assert "Exception in ASGI application" in stderr
    assert '"POST /boards/board_001/invites HTTP/1.1" 500 Internal Server Error' in task.stdout()


def test_rowcount_makes_the_404_a_500(fleet: dict[str, Task], api: httpx.Client, owner: dict[str, str]) -> None:
    task = fleet["faulty"]
    gina_id, gina = _register(api, "gina")
    api.post("/api/boards/board_001/join", headers=gina, json={"token": _invite(api, owner)})
    missing = _once(task, "DELETE", "/api/boards/board_001/members/424242", headers=owner)
    existing = _once(task, "DELETE", f"/api/boards/board_001/members/{gina_id}", headers=owner)
    assert (missing.status_code, missing.text) == (500, "Internal Server Error")
    stderr = _wait_for_log(task, "stderr", "AttributeError: 'PgCursor' object has no attribute 'rowcount'")
    assert "Exception in ASGI application" in stderr
    assert existing.json() == {"message": "Member removed successfully"}
    assert api.delete("/api/boards/board_001/members/424242", headers=owner).status_code == 404


def test_tasks_share_one_database(fleet: dict[str, Task], api: httpx.Client, owner: dict[str, str]) -> None:
    with fleet["faulty"].client() as faulty:
        hana_id, hana = _register(faulty, "hana")
        assert faulty.get("/api/me", headers=hana).json()["id"] == hana_id
        assert api.get("/api/me", headers=hana).json()["username"] == "hana"
        joined = faulty.post("/api/boards/board_001/join", headers=hana, json={"token": _invite(api, owner)})
        assert joined.status_code == 200
        assert faulty.get("/api/boards/board_001/members", headers=hana).json() == \
            api.get("/api/boards/board_001/members", headers=hana).json()


def test_no_owner_hides_the_owner_on_that_task_only(fleet: dict[str, Task], api: httpx.Client,
                                                    owner: dict[str, str]) -> None:
    with fleet["no_owner"].client() as task:
        assert task.get("/api/me", headers=owner).json()["board_membership"] is None
        denied = task.post("/api/boards/board_001/invites", headers=owner, json={})
        assert (denied.status_code, denied.json()) == (403, {"detail": "No permission to create invites"})
        roles = [member["role"] for member in task.get("/api/boards/board_001/members", headers=owner).json()]
    assert "owner" not in roles
    assert "Added user" not in fleet["no_owner"].stdout()
    assert api.get("/api/me", headers=owner).json()["board_membership"]["role"] == "owner"
    assert api.post("/api/boards/board_001/invites", headers=owner, json={}).status_code == 200


def test_participant_can_invite_on_that_task_only(fleet: dict[str, Task], api: httpx.Client,
                                                  participant: dict[str, str]) -> None:
    _, newcomer = _register(api, "ivan")
    with fleet["lax"].client() as lax:
        for headers in (participant, newcomer):
            allowed = lax.post("/api/boards/board_001/invites", headers=headers, json={})
            assert allowed.status_code == 200 and allowed.json()["role"] == "friend"
    assert api.post("/api/boards/board_001/invites", headers=participant, json={}).status_code == 403


def test_no_migrations_health_passes_but_routes_fail(fleet: dict[str, Task], shared_db: Path,
                                                     api: httpx.Client, owner: dict[str, str]) -> None:
    task = fleet["unmigrated"]
    assert _once(task, "GET", "/api/health").json() == {"status": "healthy", "database": "connected"}
    register = _once(task, "POST", "/api/auth/register", json={
        "username": "judy", "email": "judy@example.test", "password": "pw", "real_name": "Judy"})
    me = _once(task, "GET", "/api/me", headers=owner)
    assert (register.status_code, register.text) == (500, "Internal Server Error")
    assert (me.status_code, me.text) == (500, "Internal Server Error")
    stderr = _wait_for_log(task, "stderr", "sqlite3.OperationalError: no such table: users")
    assert stderr.count("Exception in ASGI application") >= 1
    assert "Running migrations on" not in task.stdout()
    empty = sqlite3.connect(str(shared_db) + ".nomigrations")
    assert empty.execute("SELECT name FROM sqlite_master").fetchall() == []
    empty.close()
    assert api.get("/api/me", headers=owner).status_code == 200
