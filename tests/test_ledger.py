"""The ledger of smoke memberships, its inter-process lock, the sweep and the per-test undo.

The ledger and the lock are exercised across real processes (what xdist workers
are). The sweep and ``MembershipWrites`` talk through a real ``BoardApi`` and
httpx client to a small in-memory board served by ``httpx.MockTransport``: the
board is the stand-in here, the code under test is not mocked.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from plugins.board_api import BoardApi, Session, guard_secrets
from plugins.ledger import Ledger, LedgerLockTimeout, MembershipWrites, sweep_memberships
from ecs_verdict.http import NoAnswer
from ecs_verdict.redact import SecretRegistry

BOARD = "board_001"
OWNER_ID, PARTICIPANT_ID = 1, 2
PROCESS_DEADLINE_S = 30.0


# -- the ledger file -----------------------------------------------------------------------------------


def test_outstanding_lists_begun_and_not_removed(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl", "run-a")
    ledger.record("joining", board=BOARD, user_id=PARTICIPANT_ID, task="t1")
    ledger.record("created", board=BOARD, user_id=PARTICIPANT_ID, task="t1")
    assert [(o.board, o.user_id, o.run_id) for o in ledger.outstanding()] == [(BOARD, PARTICIPANT_ID, "run-a")]
    Ledger(ledger.path, "run-b").record("removed", board=BOARD, user_id=PARTICIPANT_ID, task="t2")
    assert ledger.outstanding() == []


def test_entries_record_run_board_user_task_time_and_what(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "nested" / "ledger.jsonl", "run-a")
    ledger.record("created", board=BOARD, user_id=PARTICIPANT_ID, task="3f2a")
    line = json.loads(ledger.path.read_text().splitlines()[0])
    assert {k: line[k] for k in ("run_id", "board", "user_id", "task", "event", "what")} == {
        "run_id": "run-a", "board": BOARD, "user_id": PARTICIPANT_ID, "task": "3f2a", "event": "created",
        "what": "membership"}
    assert line["at"].endswith("+00:00")


def test_a_torn_last_line_from_a_crash_is_skipped(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl", "run-a")
    ledger.record("created", board=BOARD, user_id=PARTICIPANT_ID, task="t1")
    with open(ledger.path, "a", encoding="utf-8") as handle:
        handle.write('{"run_id": "run-b", "board": "boa')
    assert len(ledger.entries()) == 1
    assert len(ledger.outstanding()) == 1


def test_outstanding_of_one_run(tmp_path: Path) -> None:
    Ledger(tmp_path / "l.jsonl", "old").record("created", board=BOARD, user_id=7, task="t")
    current = Ledger(tmp_path / "l.jsonl", "new")
    current.record("created", board=BOARD, user_id=8, task="t")
    assert [o.user_id for o in current.outstanding(run_id="new")] == [8]
    assert sorted(o.user_id for o in current.outstanding()) == [7, 8]


def _append_many(path: str, run_id: str, count: int) -> None:
    ledger = Ledger(path, run_id)
    for number in range(count):
        ledger.record("created", board=BOARD, user_id=number, task=run_id)


def test_appends_from_several_processes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), f"w{n}", 50)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(PROCESS_DEADLINE_S)
        assert worker.exitcode == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 200
    assert all(json.loads(line)["what"] == "membership" for line in lines)


# -- the inter-process lock ---------------------------------------------------------------------------


def _hold_lock(path: str, held: multiprocessing.synchronize.Event, release: multiprocessing.synchronize.Event) -> None:
    with Ledger(path, "holder").write_lock():
        held.set()
        release.wait(PROCESS_DEADLINE_S)


@pytest.fixture
def lock_holder(tmp_path: Path) -> Iterator[tuple[Ledger, multiprocessing.synchronize.Event]]:
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    ledger = Ledger(tmp_path / "ledger.jsonl", "waiter")
    holder = context.Process(target=_hold_lock, args=(str(ledger.path), held, release))
    holder.start()
    assert held.wait(PROCESS_DEADLINE_S), "the holder process never took the lock"
    try:
        yield ledger, release
    finally:
        release.set()
        holder.join(PROCESS_DEADLINE_S)


def test_the_write_lock_excludes_another_process(lock_holder: tuple[Ledger, multiprocessing.synchronize.Event]) -> None:
    ledger, _ = lock_holder
    with pytest.raises(LedgerLockTimeout, match=r"held for over 0 s by another process"):
        with ledger.write_lock(timeout_s=0.2):
            pass


def test_the_write_lock_is_taken_once_the_holder_lets_go(
    lock_holder: tuple[Ledger, multiprocessing.synchronize.Event],
) -> None:
    ledger, release = lock_holder
    release.set()
    with ledger.write_lock(timeout_s=PROCESS_DEADLINE_S):
        ledger.record("created", board=BOARD, user_id=PARTICIPANT_ID, task="t")
    assert ledger.lock_path.name == "ledger.jsonl.lock"
    assert ledger.lock_path.parent == ledger.path.parent


# -- the sweep and the per-test undo ------------------------------------------------------------------


@dataclass
class FakeBoard:
    """Just enough of the board API for membership clean-up."""

    members: dict[int, str] = field(default_factory=lambda: {OWNER_ID: "owner"})
    usernames: dict[int, str] = field(default_factory=lambda: {OWNER_ID: "smoke-owner", PARTICIPANT_ID: "smoke-participant"})
    delete_status: int | None = None  # force an answer to DELETE (e.g. 500)
    requests: list[str] = field(default_factory=list)
    # "POST" / "DELETE": the write takes effect (or not: lost_before_effect) and its answer never comes back.
    lose_answer_to: set[str] = field(default_factory=set)
    lost_before_effect: bool = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method in self.lose_answer_to:
            self.lose_answer_to.discard(request.method)
            if not self.lost_before_effect:
                self._answer(request)
            self.requests.append(f"{request.method} {request.url.path} (answer lost)")
            raise NoAnswer(request.method, str(request.url), 1, "ReadError: [Errno 104] Connection reset by peer",
                           request=request)
        self.requests.append(f"{request.method} {request.url.path}")
        return self._answer(request)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer owner-session-token"
        if request.method == "GET" and request.url.path == f"/api/boards/{BOARD}/members":
            body = [{"id": n, "user_id": uid, "username": self.usernames[uid], "role": role}
                    for n, (uid, role) in enumerate(self.members.items())]
            return httpx.Response(200, json=body)
        if request.method == "DELETE":
            user_id = int(request.url.path.rsplit("/", 1)[1])
            if self.delete_status is not None:
                return httpx.Response(self.delete_status, text="Internal Server Error")
            if self.members.pop(user_id, None) is None:
                return httpx.Response(404, json={"detail": "Member not found"})
            return httpx.Response(200, json={"message": "Member removed successfully"})
        if request.method == "POST" and request.url.path == f"/api/boards/{BOARD}/join":
            self.members[PARTICIPANT_ID] = "participant"
            return httpx.Response(200, json={"message": "Successfully joined board", "role": "participant"})
        return httpx.Response(404, json={"detail": "Not Found"})


def owner_on(board: FakeBoard) -> BoardApi:
    client = httpx.Client(base_url="http://task.test:8000", transport=httpx.MockTransport(board.handle))
    return BoardApi(client, Session("smoke-owner", OWNER_ID, "owner-session-token"), BOARD)


def test_sweep_removes_a_leftover_membership_and_closes_the_record(tmp_path: Path) -> None:
    board = FakeBoard(members={OWNER_ID: "owner", PARTICIPANT_ID: "participant"})
    crashed = Ledger(tmp_path / "ledger.jsonl", "crashed-run")
    crashed.record("created", board=BOARD, user_id=PARTICIPANT_ID, task="t1")
    ledger = Ledger(crashed.path, "next-run")
    result = sweep_memberships(ledger, owner_on(board), ["smoke-participant"], task="t2")
    assert result.removed == (PARTICIPANT_ID,) and result.settled_records == 1 and result.problem is None
    assert PARTICIPANT_ID not in board.members and OWNER_ID in board.members
    assert ledger.outstanding() == []
    assert "removed leftover membership(s) of user 2" in result.describe()


def test_sweep_without_leftovers_deletes_nothing(tmp_path: Path) -> None:
    board = FakeBoard()
    result = sweep_memberships(Ledger(tmp_path / "l.jsonl", "r"), owner_on(board), ["smoke-participant"], task="t")
    assert result.removed == () and result.problem is None
    assert board.requests == [f"GET /api/boards/{BOARD}/members"]
    assert result.describe() == "smoke clean-up: no smoke membership left behind"


def test_sweep_reports_a_removal_it_could_not_make(tmp_path: Path) -> None:
    board = FakeBoard(members={OWNER_ID: "owner", PARTICIPANT_ID: "participant"}, delete_status=500)
    ledger = Ledger(tmp_path / "l.jsonl", "r")
    ledger.record("created", board=BOARD, user_id=PARTICIPANT_ID, task="t")
    result = sweep_memberships(ledger, owner_on(board), ["smoke-participant"], task="abcd")
    assert result.problem == f"removing user {PARTICIPANT_ID} from {BOARD} answered 500 on task abcd"
    assert len(ledger.outstanding()) == 1  # still open: the next run retries


def test_membership_writes_record_before_joining_and_undo_what_was_left(tmp_path: Path) -> None:
    board = FakeBoard()
    owner = owner_on(board)
    participant = BoardApi(owner.client, Session("smoke-participant", PARTICIPANT_ID, "owner-session-token"), BOARD)
    ledger = Ledger(tmp_path / "l.jsonl", "run")
    writes = MembershipWrites(ledger, owner, task="t1")
    assert writes.join(participant, "invite-token").status_code == 200
    assert [e.event for e in ledger.entries()] == ["joining", "created"]
    assert PARTICIPANT_ID in board.members
    assert writes.undo() == []  # the test "failed" before removing: teardown removes it
    assert PARTICIPANT_ID not in board.members
    assert [e.event for e in ledger.entries()] == ["joining", "created", "removed"]
    assert writes.undo() == [] and board.requests.count(f"DELETE /api/boards/{BOARD}/members/2") == 1


def test_membership_writes_undo_reports_a_failed_removal(tmp_path: Path) -> None:
    board = FakeBoard()
    owner = owner_on(board)
    participant = BoardApi(owner.client, Session("smoke-participant", PARTICIPANT_ID, "owner-session-token"), BOARD)
    writes = MembershipWrites(Ledger(tmp_path / "l.jsonl", "run"), owner, task="t1")
    writes.join(participant, "invite-token")
    board.delete_status = 500
    assert writes.undo() == [f"removing user {PARTICIPANT_ID} answered 500"]


def test_a_join_whose_answer_was_lost_but_took_effect_is_recorded_and_undone(tmp_path: Path) -> None:
    board = FakeBoard(lose_answer_to={"POST"})
    owner = owner_on(board)
    participant = BoardApi(owner.client, Session("smoke-participant", PARTICIPANT_ID, "owner-session-token"), BOARD)
    ledger, notes = Ledger(tmp_path / "l.jsonl", "run"), []
    writes = MembershipWrites(ledger, owner, task="t1", notes=notes)
    with pytest.raises(NoAnswer):  # the join's own answer is lost: the test cannot check it
        writes.join(participant, "invite-token")
    assert board.requests == [f"POST /api/boards/{BOARD}/join (answer lost)", f"GET /api/boards/{BOARD}/members"]
    assert [e.event for e in ledger.entries()] == ["joining", "created"]
    assert notes == [f"POST join got no HTTP answer but took effect: user {PARTICIPANT_ID} is a member of the "
                     "board (recorded; clean-up removes it)"]
    assert writes.undo() == [] and PARTICIPANT_ID not in board.members
    assert ledger.outstanding() == []


def test_a_join_whose_answer_was_lost_before_it_took_effect_leaves_nothing(tmp_path: Path) -> None:
    board = FakeBoard(lose_answer_to={"POST"}, lost_before_effect=True)
    owner = owner_on(board)
    participant = BoardApi(owner.client, Session("smoke-participant", PARTICIPANT_ID, "owner-session-token"), BOARD)
    ledger, notes = Ledger(tmp_path / "l.jsonl", "run"), []
    writes = MembershipWrites(ledger, owner, task="t1", notes=notes)
    with pytest.raises(NoAnswer):
        writes.join(participant, "invite-token")
    assert board.requests.count(f"POST /api/boards/{BOARD}/join (answer lost)") == 1  # never repeated
    assert notes == [f"POST join got no HTTP answer and did not take effect (user {PARTICIPANT_ID} is not a member)"]
    assert writes.undo() == [] and ledger.outstanding() == []  # the DELETE's 404 closes the record


def test_a_removal_whose_answer_was_lost_but_took_effect_is_recorded(tmp_path: Path) -> None:
    board = FakeBoard()
    owner = owner_on(board)
    participant = BoardApi(owner.client, Session("smoke-participant", PARTICIPANT_ID, "owner-session-token"), BOARD)
    ledger, notes = Ledger(tmp_path / "l.jsonl", "run"), []
    writes = MembershipWrites(ledger, owner, task="t1", notes=notes)
    writes.join(participant, "invite-token")
    board.lose_answer_to = {"DELETE"}
    with pytest.raises(NoAnswer):
        writes.remove(PARTICIPANT_ID)
    assert [e.event for e in ledger.entries()] == ["joining", "created", "removed"]
    assert notes == [f"DELETE removal got no HTTP answer but took effect: user {PARTICIPANT_ID} is no longer a member "
                     "(recorded)"]
    assert writes.undo() == [] and board.requests.count(f"DELETE /api/boards/{BOARD}/members/2") == 0


def test_secrets_in_answers_are_registered_before_other_hooks_see_them() -> None:
    seen_unregistered: list[str] = []
    secrets = SecretRegistry()
    invite_url = "http://task.test/board/board_001/join?token=" + "A" * 43

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"invite_url": invite_url, "token": "session-token-value"})

    def recorder(response: httpx.Response) -> None:
        response.read()
        if "A" * 43 not in secrets.values():
            seen_unregistered.append(response.text)

    client = httpx.Client(transport=httpx.MockTransport(handler), event_hooks={"response": [recorder]})
    guard_secrets(guard_secrets(client, secrets), secrets)
    assert len(client.event_hooks["response"]) == 2  # installed once
    client.get("http://task.test/x")
    assert seen_unregistered == []
    assert {invite_url, "A" * 43, "session-token-value"} <= set(secrets.values())
    assert "A" * 43 not in secrets.redact(f"joined with {invite_url}")


# -- runs that overlap: the pool of participants and the sweep's grace ----------------------------------

NOW = datetime(2026, 12, 1, 21, 0, tzinfo=timezone.utc)


@dataclass
class PoolBoard:
    """A board where several users join with their own bearer tokens (token ``user-<id>``)."""

    members: dict[int, tuple[str, datetime]] = field(default_factory=lambda: {OWNER_ID: ("owner", NOW)})
    join_answer: dict[int, httpx.Response] = field(default_factory=dict)  # forced answers per user
    requests: list[str] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        caller = int(request.headers["Authorization"].rsplit("-", 1)[1])
        self.requests.append(f"{request.method} {request.url.path} by {caller}")
        if request.method == "GET":
            return httpx.Response(200, json=[
                {"id": uid + 100, "user_id": uid, "username": f"user{uid}", "role": role,
                 "joined_at": joined.replace(tzinfo=None).isoformat()}
                for uid, (role, joined) in self.members.items()])
        if request.method == "DELETE":
            user_id = int(request.url.path.rsplit("/", 1)[1])
            if self.members.pop(user_id, None) is None:
                return httpx.Response(404, json={"detail": "Member not found"})
            return httpx.Response(200, json={"message": "Member removed successfully"})
        if caller in self.join_answer:
            return self.join_answer[caller]
        if caller in self.members:
            return httpx.Response(400, json={"detail": "Already a board member"})
        self.members[caller] = ("participant", NOW)
        return httpx.Response(200, json={"message": "Successfully joined board", "role": "participant"})


def api_as(board: PoolBoard, user_id: int) -> BoardApi:
    client = httpx.Client(base_url="http://task.test:8000", transport=httpx.MockTransport(board.handle))
    return BoardApi(client, Session(f"user{user_id}", user_id, f"user-{user_id}"), BOARD)


def test_sweep_leaves_a_young_membership_of_another_run_and_removes_an_old_one(tmp_path: Path) -> None:
    board = PoolBoard(members={OWNER_ID: ("owner", NOW), 2: ("participant", NOW - timedelta(seconds=5)),
                               3: ("participant", NOW - timedelta(hours=2))})
    ledger = Ledger(tmp_path / "l.jsonl", "this-run")
    result = sweep_memberships(ledger, api_as(board, OWNER_ID), ["user2", "user3"], task="t", now=NOW)
    assert (result.removed, result.left_alone) == ((3,), (2,))
    assert set(board.members) == {OWNER_ID, 2}
    assert result.describe() == ("smoke clean-up removed leftover membership(s) of user 3; left user 2 alone "
                                 "(joined moments ago: another run's, which removes it)")


def test_a_run_joins_the_first_participant_no_other_run_holds(tmp_path: Path) -> None:
    board = PoolBoard(members={OWNER_ID: ("owner", NOW), 2: ("participant", NOW)})  # another run holds user 2
    ledger = Ledger(tmp_path / "l.jsonl", "run")
    notes: list[str] = []
    writes = MembershipWrites(ledger, api_as(board, OWNER_ID), task="t1", notes=notes)
    pool = [api_as(board, 2), api_as(board, 3)]
    claim = writes.join_free(pool, "invite-token", sleep=pytest.fail)
    assert claim.member is pool[1] and claim.response is not None and claim.response.status_code == 200
    assert notes == ["participant 'user2' is held by another run; tried the next account of the pool"]
    assert [o.user_id for o in ledger.outstanding()] == [3]  # user 2's refused join is closed as abandoned
    assert writes.undo() == []
    assert set(board.members) == {OWNER_ID, 2}  # the other run's membership is untouched


def test_a_simultaneous_join_that_500s_while_the_user_became_a_member_is_a_collision(tmp_path: Path) -> None:
    board = PoolBoard(members={OWNER_ID: ("owner", NOW), 2: ("participant", NOW)})
    board.join_answer[2] = httpx.Response(500, text="Internal Server Error")
    writes = MembershipWrites(Ledger(tmp_path / "l.jsonl", "run"), api_as(board, OWNER_ID), task="t1")
    claim = writes.join_free([api_as(board, 2), api_as(board, 3)], "invite-token", sleep=pytest.fail)
    assert claim.response is not None and claim.response.status_code == 200 and "user2" in claim.notes[0]


def test_a_500_on_join_of_a_non_member_is_the_services_own_answer(tmp_path: Path) -> None:
    board = PoolBoard()
    board.join_answer[2] = httpx.Response(500, text="Internal Server Error")
    writes = MembershipWrites(Ledger(tmp_path / "l.jsonl", "run"), api_as(board, OWNER_ID), task="t1")
    pool = [api_as(board, 2)]
    claim = writes.join_free(pool, "invite-token", sleep=pytest.fail)
    assert claim.member is pool[0] and claim.response is not None and claim.response.status_code == 500
    assert claim.notes == []
    assert board.requests.count(f"POST /api/boards/{BOARD}/join by 2") == 3  # MAX_UNEXPLAINED_REFUSALS


def test_a_hold_that_ends_between_the_join_and_the_look_is_tried_again(tmp_path: Path) -> None:
    board = PoolBoard()
    refusals = iter([httpx.Response(400, json={"detail": "Already a board member"})])

    def join_once_refused(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            answer = next(refusals, None)
            if answer is not None:
                board.requests.append("refused")
                return answer
        return board.handle(request)

    client = httpx.Client(base_url="http://task.test:8000", transport=httpx.MockTransport(join_once_refused))
    member = BoardApi(client, Session("user2", 2, "user-2"), BOARD)
    writes = MembershipWrites(Ledger(tmp_path / "l.jsonl", "run"), api_as(board, OWNER_ID), task="t1")
    claim = writes.join_free([member], "invite-token", sleep=pytest.fail)
    assert claim.member is member and claim.response is not None and claim.response.status_code == 200
    assert claim.notes == [] and board.requests[0] == "refused"


def test_when_every_participant_stays_held_the_claim_gives_up_within_its_budget(tmp_path: Path) -> None:
    board = PoolBoard(members={OWNER_ID: ("owner", NOW), 2: ("participant", NOW), 3: ("participant", NOW)})
    writes = MembershipWrites(Ledger(tmp_path / "l.jsonl", "run"), api_as(board, OWNER_ID), task="t1")
    clock = [0.0]
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        clock[0] += seconds

    claim = writes.join_free([api_as(board, 2), api_as(board, 3)], "invite-token", budget_s=2.0, sleep=sleep,
                             clock=lambda: clock[0])
    assert claim.member is None and claim.response is None
    assert naps == [0.5] * 4  # rounds at 0, 0.5, 1, 1.5 and 2 s: never past the budget
    assert claim.notes[-1] == ("every participant account (2) stayed held by other runs for 2 s; "
                               "skipped rather than blame the service")
    assert set(board.members) == {OWNER_ID, 2, 3}
