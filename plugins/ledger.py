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

Runs on other machines share nothing but the service, so the lock cannot order
them. Instead a run claims a participant by joining it (the service admits a user
once), takes the next account of the pool when another run holds one (a 400
"Already a board member", or the 500 a simultaneous join can give, while that user
is listed as a member), and the sweeps leave alone a membership no run of this
ledger began that is younger than :data:`DEFAULT_SWEEP_GRACE_S`: it belongs to a
run still going. A collision is a note in the report, never the service's failure.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import httpx
import tenacity

from ecs_verdict.http import NoAnswer

DEFAULT_LEDGER_PATH = Path(".smoke") / "ledger.jsonl"
DEFAULT_LOCK_TIMEOUT_S = 120.0
LOCK_POLL_S = 0.05
MEMBERSHIP = "membership"
# A smoke membership lives for about a second; one this old was left by a run that died.
DEFAULT_SWEEP_GRACE_S = 600.0
# How long a run waits for another run to free a participant before it skips the write test.
DEFAULT_CLAIM_BUDGET_S = 30.0
CLAIM_RETRY_GAP_S = 0.5
ALREADY_A_MEMBER = "Already a board member"
# A refused join with no holder in sight, this many times in a row, is the service's answer.
MAX_UNEXPLAINED_REFUSALS = 3

# "abandoned": a join that another run's membership refused; nothing was created.
Event = Literal["joining", "created", "removed", "abandoned"]


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
            if entry.event in ("removed", "abandoned"):
                open_.pop(key, None)
            elif run_id is None or entry.run_id == run_id:
                open_.setdefault(key, Outstanding(entry.board, entry.user_id, entry.run_id, entry.task, entry.at))
        return list(open_.values())

    # -- the write lock ----------------------------------------------------------------------------

    @contextmanager
    def write_lock(self, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S, *, shared: bool = False) -> Iterator[None]:
        """Hold the inter-process membership lock (bounded wait; released even if the holder dies).

        ``shared``: a test's writes, which may overlap other tests' as long as each holds its own
        participant (:meth:`account_lock`); a sweep takes it exclusively, so it sees no write under way.
        """
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+", encoding="utf-8") as handle:
            _acquire(handle, timeout_s, self.lock_path, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def account_lock_path(self, username: str) -> Path:
        return self.lock_path.with_name(f"{self.lock_path.name}.{zlib.crc32(username.encode()):08x}")

    @contextmanager
    def account_lock(self, usernames: Sequence[str], timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[str]:
        """Hold one participant of ``usernames`` that no other process of this ledger holds; yields its name.

        Tried in order, without blocking, round after round within ``timeout_s``: tests that each
        hold a different participant write at once (every task of a run, every worker), and only
        tests beyond the pool's size wait.
        """
        if not usernames:
            raise ValueError("account_lock needs at least one username")
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        handles = {name: open(self.account_lock_path(name), "a+", encoding="utf-8") for name in usernames}
        held: str | None = None
        try:
            deadline = time.monotonic() + timeout_s
            while held is None:
                for name, handle in handles.items():
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue
                    held = name
                    break
                else:
                    if time.monotonic() >= deadline:
                        raise LedgerLockTimeout(f"every participant of the pool ({len(usernames)}) was held by "
                                                f"other tests for over {timeout_s:.0f} s")
                    time.sleep(LOCK_POLL_S)  # a bounded poll: flock offers no wait with a deadline
            yield held
        finally:
            for handle in handles.values():
                handle.close()  # closing releases the lock


def _acquire(handle: IO[str], timeout_s: float, path: Path, mode: int = fcntl.LOCK_EX) -> None:
    # flock offers no wait with a deadline: try without blocking, within one time budget.
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout_s),
        wait=tenacity.wait_random(LOCK_POLL_S / 2, LOCK_POLL_S * 2),
        retry=tenacity.retry_if_exception_type(BlockingIOError),
        reraise=True,
    )
    try:
        retrying(fcntl.flock, handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LedgerLockTimeout(
            f"the smoke write lock {path} was held for over {timeout_s:.0f} s by another process"
        ) from None


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# -- the sweep -------------------------------------------------------------------------------------


class MembershipApi(Protocol):
    """What the sweep needs from an owner session (``plugins.board_api.BoardApi``)."""

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
    left_alone: tuple[int, ...] = ()  # young memberships of runs still going elsewhere

    def describe(self) -> str:
        """One line for the terminal summary."""
        if self.problem:
            return f"smoke clean-up incomplete: {self.problem}"
        others = ""
        if self.left_alone:
            users = ", ".join(str(user) for user in self.left_alone)
            others = f"; left user {users} alone (joined moments ago: another run's, which removes it)"
        if self.removed:
            users = ", ".join(str(user) for user in self.removed)
            return f"smoke clean-up removed leftover membership(s) of user {users}{others}"
        return f"smoke clean-up: no smoke membership left behind{others}"


def sweep_memberships(ledger: Ledger, owner: MembershipApi, usernames: list[str], *, task: str,
                      grace_s: float = DEFAULT_SWEEP_GRACE_S, now: datetime | None = None) -> SweepResult:
    """Remove the smoke accounts' leftover memberships on ``owner.board_id``, through the API.

    A smoke membership is a leftover when this ledger has it outstanding (its run is
    gone: the caller holds the write lock) or when it joined over ``grace_s`` ago (a
    run that died anywhere, its ledger maybe lost with a CI workspace). A younger one
    that no run of this ledger began belongs to a run still going on another machine:
    it is left alone. Every outstanding record for the board is closed.
    """
    board = owner.board_id
    listing = owner.members()
    if listing.status_code != 200:
        return SweepResult(problem=f"GET members of {board} answered {listing.status_code} on task {task}")
    ours = {item.user_id for item in ledger.outstanding() if item.board == board}
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(seconds=grace_s)
    leftovers, left_alone = [], []
    for item in _json_list(listing):
        user_id = item.get("user_id")
        if item.get("username") not in usernames or not isinstance(user_id, int):
            continue
        joined = _utc_or_none(item.get("joined_at"))
        if user_id in ours or joined is None or joined < cutoff:
            leftovers.append(user_id)
        else:
            left_alone.append(user_id)
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
    return SweepResult(tuple(removed), settled, left_alone=tuple(left_alone))


class PoolMember(JoiningApi, Protocol):
    """A participant account of the pool (``BoardApi``)."""

    @property
    def username(self) -> str: ...


@dataclass(slots=True)
class Claim:
    """The outcome of joining with a participant no other run holds.

    ``member`` and ``response`` are the join that counts: a 200, or an answer that is
    the service's own (the test checks it). ``member`` is None when every account of
    the pool stayed held by other runs for the whole budget.
    """

    member: Any | None
    response: httpx.Response | None
    notes: list[str] = field(default_factory=list)


class MembershipWrites:
    """The membership writes of one test, recorded in the ledger before they happen.

    ``join`` writes ``joining`` before the request and ``created`` after a success;
    ``remove`` writes ``removed``; ``undo`` removes whatever this test began and did
    not remove (called at teardown, also when the test failed).

    A join or removal whose answer was lost (:class:`NoAnswer`: it is not repeated, it
    may or may not have taken effect) is followed by a look at the members list: what
    took effect is recorded (a join, so that clean-up removes it; a removal, so that
    nothing tries again), the report says so, and the ``NoAnswer`` goes on to the test.
    """

    def __init__(self, ledger: Ledger, owner: MembershipApi, *, task: str, notes: list[str] | None = None,
                 reserved: str | None = None) -> None:
        self.ledger = ledger
        self.owner = owner
        self.task = task
        self.reserved = reserved  # the participant this test holds among this run's tests (tried first)
        self.notes = notes if notes is not None else []  # reach the report (collisions with other runs)
        self._begun: list[int] = []
        # Removals that got no HTTP answer (the task stopped, say): left to the end-of-run sweep, not a finding.
        self.unanswered: list[str] = []
        self._began_at = _utc_now()  # a record of this run older than this is an earlier test's

    def join(self, member: JoiningApi, token: str) -> httpx.Response:
        """``member`` joins ``owner.board_id`` with ``token``; recorded before and after."""
        board = self.owner.board_id
        self.ledger.record("joining", board=board, user_id=member.user_id, task=self.task)
        if member.user_id not in self._begun:
            self._begun.append(member.user_id)
        try:
            response = member.join(token)
        except NoAnswer as lost:
            self._after_lost_join(member.user_id, lost)
            raise  # the join's own answer is what the test checks: could not verify
        if response.is_success:
            self.ledger.record("created", board=board, user_id=member.user_id, task=self.task)
        return response

    def join_free(self, pool: Sequence[PoolMember], token: str, *, budget_s: float = DEFAULT_CLAIM_BUDGET_S,
                  sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic) -> Claim:
        """Join with the first account of ``pool`` that no other run holds; see the module docstring.

        Each run starts at its own place in the pool (from its run id) so that two runs
        rarely want the same account. A refused join whose user is listed as a member is
        another run's hold: the next account is tried. One whose user is *not* listed may
        be a hold that ended between the join and the look at the list, so it is tried
        again, up to ``MAX_UNEXPLAINED_REFUSALS`` times in a row; past that the refusal is
        the service's own answer. A round that finds every account held waits
        ``CLAIM_RETRY_GAP_S`` and tries again, within ``budget_s`` in all. The invite is
        not used up by a refused join (the service checks membership last).
        """
        claim = Claim(None, None, self.notes)
        start = zlib.crc32(self.ledger.run_id.encode()) % len(pool)
        order = [*pool[start:], *pool[:start]]
        order.sort(key=lambda member: member.username != self.reserved)  # stable: the rest keep their order
        deadline = clock() + budget_s
        while True:
            for member in order:
                response = self._join_unless_held(member, token)
                if response is not None:
                    claim.member, claim.response = member, response
                    return claim
                note = (f"participant {member.username!r} is held by another run; "
                        "tried the next account of the pool")
                if note not in claim.notes:
                    claim.notes.append(note)
            if clock() + CLAIM_RETRY_GAP_S > deadline:
                claim.notes.append(f"every participant account ({len(pool)}) stayed held by other runs for "
                                   f"{budget_s:.0f} s; skipped rather than blame the service")
                return claim
            sleep(CLAIM_RETRY_GAP_S)

    def _join_unless_held(self, member: PoolMember, token: str) -> httpx.Response | None:
        """The join's answer, or None when another run's membership refused it."""
        for _ in range(MAX_UNEXPLAINED_REFUSALS):
            response = self.join(member, token)
            if not _refused_as_member(response):
                return response  # joined, or the service's own answer for the test to check
            if self._remove_own_leftover(member):
                continue
            self._abandon(member)
            if self._listed(member):
                return None
        return response

    def _listed(self, member: PoolMember) -> bool:
        """Whether ``member`` is a member of the board right now (the owner's members list)."""
        listing = self.owner.members()
        return listing.status_code == 200 and any(
            item.get("user_id") == member.user_id for item in _json_list(listing))

    def _is_member(self, user_id: int) -> bool | None:
        """Whether ``user_id`` is listed as a member of the board now; None when the list cannot be read."""
        try:
            listing = self.owner.members()
        except httpx.HTTPError:
            return None
        if listing.status_code != 200:
            return None
        return any(item.get("user_id") == user_id for item in _json_list(listing))

    def _after_lost_join(self, user_id: int, lost: NoAnswer) -> None:
        member = self._is_member(user_id)
        board = self.owner.board_id
        if member:
            self.ledger.record("created", board=board, user_id=user_id, task=self.task,
                               note="the join's answer was lost; the members list shows it")
            self.notes.append(f"{lost.method} join got no HTTP answer but took effect: user {user_id} is a member "
                              "of the board (recorded; clean-up removes it)")
        elif member is None:
            self.notes.append(f"{lost.method} join got no HTTP answer and the members list could not be read: "
                              f"user {user_id} is left to clean-up and the next run's sweep")
        else:
            self.notes.append(f"{lost.method} join got no HTTP answer and did not take effect (user {user_id} is "
                              "not a member)")

    def _after_lost_removal(self, user_id: int, lost: NoAnswer) -> None:
        member = self._is_member(user_id)
        if member is False:
            self.ledger.record("removed", board=self.owner.board_id, user_id=user_id, task=self.task,
                               note="the removal's answer was lost; the members list no longer shows it")
            if user_id in self._begun:
                self._begun.remove(user_id)
            self.notes.append(f"{lost.method} removal got no HTTP answer but took effect: user {user_id} is no "
                              "longer a member (recorded)")
        else:
            self.notes.append(f"{lost.method} removal of user {user_id} got no HTTP answer and "
                              f"{'did not take effect' if member else 'the members list could not be read'}")

    def _remove_own_leftover(self, member: PoolMember) -> bool:
        """Remove ``member``'s membership when an earlier test of this run left it (True: removed; join again).

        That test's clean-up did not remove it (ECS stopped its task, say) and left the record open; the
        account this test holds (``reserved``) is no other test's of this run, so the membership is
        no hold of another run either: the test re-run on the replacement must not be refused by it.
        """
        board = self.owner.board_id
        left = any(item.board == board and item.user_id == member.user_id and item.run_id == self.ledger.run_id
                   and item.since < self._began_at for item in self.ledger.outstanding())
        if member.username != self.reserved or not left:
            return False
        if self.owner.remove_member(member.user_id).status_code not in (200, 404):
            return False
        self.ledger.record("removed", board=board, user_id=member.user_id, task=self.task,
                           note="left by an earlier test of this run whose clean-up did not remove it")
        self.notes.append(f"participant {member.username!r} was still a member from an earlier test of this run "
                          "whose clean-up did not remove it (its task stopped answering, say); removed it and joined "
                          "again")
        return True

    def _abandon(self, member: PoolMember) -> None:
        if member.user_id in self._begun:
            self._begun.remove(member.user_id)
        self.ledger.record("abandoned", board=self.owner.board_id, user_id=member.user_id, task=self.task,
                           note="held by another run")

    def remove(self, user_id: int) -> httpx.Response:
        """The owner removes ``user_id``; a 200 (or 404: nothing there) closes the record."""
        try:
            response = self.owner.remove_member(user_id)
        except NoAnswer as lost:
            self._after_lost_removal(user_id, lost)
            raise
        begun_here = user_id in self._begun
        # A 404 closes a record only for a membership this test began (removing a non-member records nothing).
        if response.status_code == 200 or (response.status_code == 404 and begun_here):
            self.ledger.record("removed", board=self.owner.board_id, user_id=user_id, task=self.task)
            if begun_here:
                self._begun.remove(user_id)
        return response

    def undo(self) -> list[str]:
        """Remove every membership begun here and not yet removed; problems as lines (no secrets).

        A removal that got no HTTP answer is not a problem of the service: it goes to ``unanswered``.
        """
        problems = []
        for user_id in list(self._begun):
            try:
                response = self.remove(user_id)
            except httpx.TransportError as error:
                # NoAnswer names what the last attempt met (a refused connection: the task is gone).
                why = error.last_error.split(":", 1)[0] if isinstance(error, NoAnswer) else type(error).__name__
                self.unanswered.append(f"removing user {user_id} got no answer ({why})")
                continue
            except httpx.HTTPError as error:
                if user_id not in self._begun:
                    continue  # its answer was lost, but the members list shows it is gone
                problems.append(f"removing user {user_id} failed: {type(error).__name__}")
                continue
            if response.status_code not in (200, 404):
                problems.append(f"removing user {user_id} answered {response.status_code}")
        return problems


def _detail(response: httpx.Response) -> object:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("detail") if isinstance(body, dict) else None


def _refused_as_member(response: httpx.Response) -> bool:
    """400 "Already a board member", or the 500 the real service gives for two simultaneous joins."""
    return _detail(response) == ALREADY_A_MEMBER or response.status_code == 500


def _utc_or_none(value: object) -> datetime | None:
    """An ISO timestamp as aware UTC (naive read as UTC, as the service writes it), else None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.utcoffset() is None else moment.astimezone(timezone.utc)


def _json_list(response: httpx.Response) -> list[dict[str, object]]:
    try:
        body = response.json()
    except ValueError:
        return []
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []
