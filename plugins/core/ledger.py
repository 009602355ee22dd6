"""What the smoke suite wrote into a live deployment, and how it is taken back (pytest-free).

The board service has no API to delete users or invites, so the suite keeps its
footprint to what can be undone: single-use invites that expire within the hour
(harmless once used or expired) and the participant's membership, which the owner
removes again. Every membership the suite creates is written to a ledger first, a
JSON-lines file shared by all xdist workers (appends under ``flock``). A run that
dies before its clean-up (SIGKILL, a lost runner) leaves that record behind; the
next run's sweep removes the participant's membership through the API and marks
the record removed.

Every test that adds or removes a membership holds :meth:`Ledger.write_lock`: the
tasks share one database, so a join on task A makes the participant "Already a
board member" on task B until the removal.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Literal, Protocol

import httpx
import tenacity

DEFAULT_LEDGER_PATH = Path(".smoke") / "ledger.jsonl"
DEFAULT_LOCK_TIMEOUT_S = 120.0
LOCK_POLL_S = 0.05
MEMBERSHIP = "membership"

Event = Literal["joining", "created", "removed"]


class LedgerLockTimeout(TimeoutError):
    """Another process held the write lock for longer than the caller would wait."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One line of the ledger: a membership the suite is creating, created, or removed."""

    run_id: str
    board: str
    user_id: int
    task: str
    event: Event
    at: str  # ISO-8601 UTC
    what: str = MEMBERSHIP
    note: str = ""

    @classmethod
    def from_json(cls, line: str) -> LedgerEntry:
        data = json.loads(line)
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


@dataclass(frozen=True, slots=True)
class Outstanding:
    """A membership a run began to create and no run has recorded as removed."""

    board: str
    user_id: int
    run_id: str
    task: str
    since: str


class Ledger:
    """The shared JSON-lines ledger and its inter-process write lock.

    ``run_id`` identifies the run (the same on the controller and every worker);
    the lock file sits next to the ledger (``ledger.jsonl.lock``).
    """

    def __init__(self, path: str | os.PathLike[str], run_id: str) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.run_id = run_id

    # -- writing ---------------------------------------------------------------------------------

    def record(self, event: Event, *, board: str, user_id: int, task: str, note: str = "") -> LedgerEntry:
        """Append one entry (flushed and fsynced: a crash right after must still leave it)."""
        entry = LedgerEntry(self.run_id, board, user_id, task, event, _utc_now(), note=note)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(entry), sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # appends from several workers must not interleave
            try:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return entry

    # -- reading ---------------------------------------------------------------------------------

    def entries(self) -> list[LedgerEntry]:
        """Every readable entry, oldest first (a torn last line from a crash is skipped)."""
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                found.append(LedgerEntry.from_json(line))
            except (ValueError, TypeError, KeyError):
                continue
        return found

    def outstanding(self, *, run_id: str | None = None) -> list[Outstanding]:
        """Memberships begun (``joining``/``created``) and not removed since, optionally of one run."""
        open_: dict[tuple[str, int], Outstanding] = {}
        for entry in self.entries():
            key = (entry.board, entry.user_id)
            if entry.event == "removed":
                open_.pop(key, None)
            elif run_id is None or entry.run_id == run_id:
                open_.setdefault(key, Outstanding(entry.board, entry.user_id, entry.run_id, entry.task, entry.at))
        return list(open_.values())

    # -- the write lock ----------------------------------------------------------------------------

    @contextmanager
    def write_lock(self, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold the inter-process membership lock (bounded wait; released even if the holder dies)."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+", encoding="utf-8") as handle:
            _acquire(handle, timeout_s, self.lock_path)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _acquire(handle: IO[str], timeout_s: float, path: Path) -> None:
    # flock offers no wait with a deadline: try without blocking, within one time budget.
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout_s),
        wait=tenacity.wait_random(LOCK_POLL_S / 2, LOCK_POLL_S * 2),
        retry=tenacity.retry_if_exception_type(BlockingIOError),
        reraise=True,
    )
    try:
        retrying(fcntl.flock, handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LedgerLockTimeout(
            f"the smoke write lock {path} was held for over {timeout_s:.0f} s by another process"
        ) from None


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# -- the sweep -------------------------------------------------------------------------------------


class MembershipApi(Protocol):
    """What the sweep needs from an owner session (``plugins.core.board_api.BoardApi``)."""

    board_id: str

    def members(self) -> httpx.Response: ...

    def remove_member(self, user_id: int) -> httpx.Response: ...


class JoiningApi(Protocol):
    """What a joining account offers (``BoardApi``)."""

    @property
    def user_id(self) -> int: ...

    def join(self, token: str) -> httpx.Response: ...


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What a sweep found and did; ``problem`` is set when it could not finish."""

    removed: tuple[int, ...] = ()
    settled_records: int = 0
    problem: str | None = None

    def describe(self) -> str:
        """One line for the terminal summary."""
        if self.problem:
            return f"smoke clean-up incomplete: {self.problem}"
        if self.removed:
            users = ", ".join(str(user) for user in self.removed)
            return f"smoke clean-up removed leftover membership(s) of user {users}"
        return "smoke clean-up: no smoke membership left behind"


def sweep_memberships(ledger: Ledger, owner: MembershipApi, usernames: list[str], *, task: str) -> SweepResult:
    """Remove each smoke account's membership on ``owner.board_id`` if present, through the API.

    The smoke participant must never stay a member: whatever the ledger says (it may
    be lost with a CI workspace), a membership found in the members list is removed
    and every outstanding ledger record for that board is closed.
    """
    board = owner.board_id
    listing = owner.members()
    if listing.status_code != 200:
        return SweepResult(problem=f"GET members of {board} answered {listing.status_code} on task {task}")
    members = _json_list(listing)
    leftovers = [item["user_id"] for item in members
                 if item.get("username") in usernames and isinstance(item.get("user_id"), int)]
    removed: list[int] = []
    for user_id in leftovers:
        answer = owner.remove_member(user_id)
        if answer.status_code not in (200, 404):  # 404: another process removed it first
            return SweepResult(tuple(removed), problem=f"removing user {user_id} from {board} answered "
                                                       f"{answer.status_code} on task {task}")
        removed.append(user_id)
    settled = 0
    for item in ledger.outstanding():
        if item.board == board:
            ledger.record("removed", board=board, user_id=item.user_id, task=task,
                          note=f"swept (left by run {item.run_id})")
            settled += 1
    return SweepResult(tuple(removed), settled)


class MembershipWrites:
    """The membership writes of one test, recorded in the ledger before they happen.

    ``join`` writes ``joining`` before the request and ``created`` after a success;
    ``remove`` writes ``removed``; ``undo`` removes whatever this test began and did
    not remove (called at teardown, also when the test failed).
    """

    def __init__(self, ledger: Ledger, owner: MembershipApi, *, task: str) -> None:
        self.ledger = ledger
        self.owner = owner
        self.task = task
        self._begun: list[int] = []

    def join(self, member: JoiningApi, token: str) -> httpx.Response:
        """``member`` joins ``owner.board_id`` with ``token``; recorded before and after."""
        board = self.owner.board_id
        self.ledger.record("joining", board=board, user_id=member.user_id, task=self.task)
        if member.user_id not in self._begun:
            self._begun.append(member.user_id)
        response = member.join(token)
        if response.is_success:
            self.ledger.record("created", board=board, user_id=member.user_id, task=self.task)
        return response

    def remove(self, user_id: int) -> httpx.Response:
        """The owner removes ``user_id``; a 200 (or 404: nothing there) closes the record."""
        response = self.owner.remove_member(user_id)
        begun_here = user_id in self._begun
        # A 404 closes a record only for a membership this test began (removing a non-member records nothing).
        if response.status_code == 200 or (response.status_code == 404 and begun_here):
            self.ledger.record("removed", board=self.owner.board_id, user_id=user_id, task=self.task)
            if begun_here:
                self._begun.remove(user_id)
        return response

    def undo(self) -> list[str]:
        """Remove every membership begun here and not yet removed; problems as lines (no secrets)."""
        problems = []
        for user_id in list(self._begun):
            try:
                response = self.remove(user_id)
            except httpx.HTTPError as error:
                problems.append(f"removing user {user_id} failed: {type(error).__name__}")
                continue
            if response.status_code not in (200, 404):
                problems.append(f"removing user {user_id} answered {response.status_code}")
        return problems


def _json_list(response: httpx.Response) -> list[dict[str, object]]:
    try:
        body = response.json()
    except ValueError:
        return []
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []
