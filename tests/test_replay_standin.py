"""The stand-in answers and logs like the real service: the recorded exchanges, replayed.

A stand-in process on a fresh database prepared like the recording's gets the 41 recorded
requests in order (`stage.replay`); every answer must match the real one, and the lines
it printed must match the shape of the real service's log. Differences are fixed in the
stand-in, not listed here; the one deliberate difference from the recorded build (root
``/health``) is pinned by name in its own test.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from stage.replay import (
    Difference,
    Exchange,
    compare_response,
    initial_values,
    load_exchanges,
    log_skeleton,
    prepare_replay_database,
    recorded_service_log,
    replay,
    skeleton_differences,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = REPO_ROOT / "tests" / "recordings"
EXCHANGES = RECORDINGS / "civicforge-real-exchanges.jsonl"
REAL_LOG = RECORDINGS / "civicforge-real-logs.txt"
HOST = "127.0.0.1"
STARTUP_DEADLINE_S = 30.0
POLL_INTERVAL_S = 0.05
# Differences the stand-in keeps on purpose, by exchange name, with the reason. Empty: the
# replay runs the stand-in in the recorded build's configuration (no root /health).
DELIBERATE: dict[str, str] = {}
# The recorded build serves only /api/health; the runbook's builds (the stand-in's default)
# also serve root /health, which the smoke suite's health path option is about.
RECORDED_BUILD_FAULTS = ("--fault", "no_root_health")


class StandinExited(RuntimeError):
    """The stand-in process ended before it answered (not worth retrying)."""


@dataclass(frozen=True, slots=True)
class Standin:
    """A stand-in process whose stdout and stderr go, interleaved, to one file (as recorded)."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(encoding="utf-8").splitlines()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _accepting(standin: Standin) -> None:
    """One readiness probe: a TCP connect, which leaves no access line in the log."""
    if standin.process.poll() is not None:
        raise StandinExited(f"stand-in exited with {standin.process.returncode}:\n" + "\n".join(standin.log_lines()))
    port = httpx.URL(standin.base_url).port
    assert port is not None
    socket.create_connection((HOST, port), timeout=1.0).close()


def _start(db: Path, log_path: Path, *args: str) -> Standin:
    port = _free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "stage.standin", "--host", HOST, "--port", str(port), "--db", str(db), *args],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
    return Standin(process, f"http://{HOST}:{port}", log_path)


def _wait_until_accepting(standin: Standin) -> None:
    for attempt in Retrying(stop=stop_after_delay(STARTUP_DEADLINE_S), wait=wait_fixed(POLL_INTERVAL_S),
                            retry=retry_if_exception_type(OSError), reraise=True):
        with attempt:
            _accepting(standin)


def _stop(standin: Standin) -> int:
    if standin.process.poll() is None:
        standin.process.send_signal(signal.SIGTERM)
        try:
            standin.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            standin.process.kill()
            standin.process.wait()
    return standin.process.returncode


@dataclass(frozen=True, slots=True)
class ReplayRun:
    differences: list[Difference]
    log: list[str]
    returncode: int


@pytest.fixture(scope="module")
def exchanges() -> list[Exchange]:
    return load_exchanges(EXCHANGES)


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Standin]]:
    """The recorded build's configuration and the default build, each on its own fresh database."""
    started: dict[str, Standin] = {}
    try:
        for name, args in (("recorded_build", RECORDED_BUILD_FAULTS), ("default_build", ())):
            folder = tmp_path_factory.mktemp(name)
            prepare_replay_database(folder / "board.db")
            started[name] = _start(folder / "board.db", folder / "service.log", *args)
        for standin in started.values():
            _wait_until_accepting(standin)
        yield started
    finally:
        for standin in started.values():
            _stop(standin)


@pytest.fixture(scope="module")
def replayed(standins: dict[str, Standin], exchanges: list[Exchange]) -> ReplayRun:
    """The whole recording replayed once, then the stand-in stopped so its log is complete."""
    standin = standins["recorded_build"]
    differences = replay(exchanges, standin.base_url)
    returncode = _stop(standin)
    return ReplayRun(differences, standin.log_lines(), returncode)


def test_the_recording_is_the_one_described(exchanges: list[Exchange]) -> None:
    names = [exchange.name for exchange in exchanges]
    assert len(exchanges) == 41
    assert len(set(names)) == len(names)
    assert names[0] == "health_api_get" and names[-1] == "me_participant_after_removal"


def test_the_stand_in_answers_every_recorded_request_like_the_real_service(replayed: ReplayRun) -> None:
    unexpected = [str(difference) for difference in replayed.differences if difference.name not in DELIBERATE]
    assert unexpected == []
    stale = sorted(set(DELIBERATE) - {difference.name for difference in replayed.differences})
    assert stale == [], "listed as deliberate but no longer different: remove them from DELIBERATE"


def test_the_stand_in_logs_like_the_real_service(replayed: ReplayRun) -> None:
    recorded = log_skeleton(recorded_service_log(REAL_LOG))
    actual = log_skeleton(replayed.log)
    differences = skeleton_differences(recorded, actual)
    assert not differences, "\n".join(differences)
    # The facts the skeleton carries, spelled out: no /api in access lines, the real
    # migration lines, and the 500's last traceback line.
    assert 'INFO:     <client> - "GET /health HTTP/1.1" 200 OK' in actual
    assert not any('"GET /api/' in line or '"POST /api/' in line for line in replayed.log)
    assert actual[:4] == ["Running migrations on sqlite:///<db>", "Applying SQLite schema...",
                          "Migrations complete!", ""]
    assert "ValueError: Invalid role: Reviewer" in actual
    assert replayed.returncode == 0


def test_the_default_build_serves_root_health_where_the_recorded_build_does_not(
    standins: dict[str, Standin], exchanges: list[Exchange]
) -> None:
    # Deliberate: the runbook's builds serve root /health (the default stand-in), the
    # recorded build answers it 404; the replay above runs with no_root_health instead.
    health_root = [exchange for exchange in exchanges if exchange.name == "health_root_get"]
    differences = replay(health_root, standins["default_build"].base_url)
    assert [str(difference) for difference in differences] == [
        "health_root_get: status: expected 404, got 200",
        "health_root_get: body: missing key 'detail'",
        "health_root_get: body: unexpected key 'status' = \"healthy\"",
        "health_root_get: body: unexpected key 'database' = \"connected\"",
    ]


# --- the comparison on hand-made answers (no process) ----------------------------------------------


def _exchange(exchanges: list[Exchange], name: str) -> Exchange:
    return next(exchange for exchange in exchanges if exchange.name == name)


def _answer(status: int, body: object, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def test_a_false_permission_entry_and_a_wrong_type_are_differences(exchanges: list[Exchange]) -> None:
    recorded = _exchange(exchanges, "me_participant_after_join")
    body = dict(recorded.response["body"])
    body["created_at"] = "2026-12-01T20:27:01.315188"
    body["board_membership"] = {"id": 2, "role": "participant", "permissions": {
        "view_board": True, "claim_quest": True, "submit_work": True, "create_invites": False}}
    assert compare_response(recorded, _answer(200, body), initial_values()) == [
        "body.board_membership.permissions: unexpected key 'create_invites' = false"]
    body["verified"] = 0
    body["created_at"] = "2026-12-01T20:27:01+00:00"
    assert compare_response(recorded, _answer(200, body), initial_values()) == [
        "body.verified: expected boolean false, got integer 0",
        'body.created_at: expected "<timestamp YYYY-MM-DDTHH:MM:SS.ffffff>", got "2026-12-01T20:27:01+00:00"',
        "body.board_membership.permissions: unexpected key 'create_invites' = false",
    ]


def test_status_content_type_detail_and_placeholders_are_compared(exchanges: list[Exchange]) -> None:
    bad_role = _exchange(exchanges, "invite_owner_role_Reviewer_capitalised")
    as_json = _answer(500, {"detail": "Invalid role: Reviewer"})
    assert compare_response(bad_role, as_json, initial_values()) == [
        "content type: expected 'text/plain; charset=utf-8', got 'application/json'",
        'body: expected "Internal Server Error", got "{\\"detail\\":\\"Invalid role: Reviewer\\"}"',
    ]
    unknown = _exchange(exchanges, "join_unknown_token")
    assert compare_response(unknown, _answer(400, {"detail": "Invite expired or already used"}), {}) == [
        "status: expected 404, got 400",
        'body.detail: expected "Invalid invite", got "Invite expired or already used"',
    ]
    invite = _exchange(exchanges, "invite_owner_participant_1use_1h")
    values: dict[str, str] = {}
    url = "http://localhost:8000/board/board_001/join?token=" + "t" * 43
    answer = _answer(200, {"invite_url": url, "expires_at": "2026-12-01T21:27:01.243684", "role": "participant"})
    assert compare_response(invite, answer, values) == []
    assert values == {"invite-token": "t" * 43}


def test_an_invite_url_on_the_task_address_is_one_difference_and_still_teaches_the_token(
    exchanges: list[Exchange],
) -> None:
    invite = _exchange(exchanges, "invite_owner_participant_1use_1h")
    values: dict[str, str] = {}
    url = "http://10.0.1.5:8000/board/board_001/join?token=" + "u" * 43
    answer = _answer(200, {"invite_url": url, "expires_at": "2026-12-01T21:27:01.243684", "role": "participant"})
    differences = compare_response(invite, answer, values)
    assert len(differences) == 1 and differences[0].startswith("body.invite_url: expected ")
    assert values == {"invite-token": "u" * 43}


def test_the_redirect_is_compared_without_its_host(exchanges: list[Exchange]) -> None:
    redirect = _exchange(exchanges, "health_api_trailing_slash")
    elsewhere = httpx.Response(307, headers={"location": "http://127.0.0.1:1234/api/health"})
    wrong_path = httpx.Response(307, headers={"location": "http://127.0.0.77:18777/health"})
    assert compare_response(redirect, elsewhere, {}) == []
    assert compare_response(redirect, wrong_path, {}) == [
        "Location: expected http://<host>/api/health, got 'http://127.0.0.77:18777/health'"]


def test_the_replay_refuses_a_non_loopback_address(exchanges: list[Exchange]) -> None:
    with pytest.raises(ValueError, match="not loopback"):
        replay(exchanges, "http://10.0.0.1:8000")


def test_log_skeletons_ignore_addresses_and_frames_but_not_paths_or_the_exception() -> None:
    recorded = ['INFO:     127.0.0.1:35342 - "POST /boards/board_001/invites HTTP/1.1" 500 Internal Server Error',
                "ERROR:    Exception in ASGI application", "Traceback (most recent call last):",
                "[72 traceback frame lines omitted here]", "ValueError: Invalid role: Reviewer",
                'INFO:     127.0.0.1:35356 - "GET /me HTTP/1.1" 200 OK']
    same = ['INFO:     127.0.0.1:4001 - "POST /boards/board_001/invites HTTP/1.1" 500 Internal Server Error',
            "ERROR:    Exception in ASGI application", "Traceback (most recent call last):",
            '  File "/app/stage/standin/db.py", line 283, in create_board_invite',
            '    raise ValueError(f"Invalid role: {role}")', "ValueError: Invalid role: Reviewer",
            'INFO:     127.0.0.1:4002 - "GET /me HTTP/1.1" 200 OK']
    prefixed = [line.replace('"GET /me', '"GET /api/me') for line in same]
    other_error = [line.replace("ValueError: Invalid role: Reviewer", "KeyError: 'Reviewer'") for line in same]
    assert skeleton_differences(log_skeleton(recorded), log_skeleton(same)) == []
    assert '+INFO:     <client> - "GET /api/me HTTP/1.1" 200 OK' in skeleton_differences(
        log_skeleton(recorded), log_skeleton(prefixed))
    assert "+KeyError: 'Reviewer'" in skeleton_differences(log_skeleton(recorded), log_skeleton(other_error))
