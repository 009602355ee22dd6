"""The stand-in's database: schema, roles, password hashing and seeding.

Several stand-in processes (one per ECS "task") share one SQLite file the way
the real tasks share one RDS database, so every connection uses WAL and a busy
timeout, and writes run under ``BEGIN IMMEDIATE``. Where the real service checks
before it writes without a lock (joining a board), the stand-in does too: the
race it loses ends in the unique constraint, as the real one's does.

This module must not import FastAPI or uvicorn: the stage imports it to prepare
the database before any task starts, and that has to be quick.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

DEFAULT_BOARD_ID = "board_001"
DEFAULT_BUSY_TIMEOUT_S = 10.0
ACCOUNT_EMAIL_DOMAIN = "smoke.civicforge.test"
# Registering as "Organizer" grants experience points, not ownership (see the API doc).
ORGANIZER_STARTING_XP = 20
# pbkdf2 cost: high enough to be a real hash, low enough that a login stays quick on a laptop.
PASSWORD_HASH_ITERATIONS = 50_000

PERMISSION_NAMES: tuple[str, ...] = (
    "view_board",
    "create_quest",
    "claim_quest",
    "submit_work",
    "verify_quest",
    "create_invites",
    "manage_members",
    "view_analytics",
    "edit_any_quest",
    "delete_any_quest",
    "edit_own_quest",
    "comment_on_quest",
)


def _grant(*allowed: str) -> dict[str, bool]:
    """A role's permission dict as the real service stores it: granted names only, each True.

    The recordings show no ``false`` entries: a permission a role lacks is absent.
    The order is the real dicts' order where a recording shows it (owner, participant).
    """
    unknown = set(allowed) - set(PERMISSION_NAMES)
    assert not unknown, f"not a permission: {sorted(unknown)}"
    return dict.fromkeys(allowed, True)


ROLE_PERMISSIONS: dict[str, dict[str, bool]] = {
    "owner": _grant(
        "view_board", "create_quest", "edit_any_quest", "delete_any_quest", "verify_quest", "manage_members",
        "create_invites", "view_analytics",
    ),
    "organizer": _grant(
        "view_board", "create_quest", "edit_own_quest", "verify_quest", "create_invites", "view_analytics",
    ),
    "reviewer": _grant("view_board", "verify_quest", "comment_on_quest", "view_analytics"),
    "friend": _grant("view_board", "create_quest", "claim_quest", "verify_quest"),
    "participant": _grant("view_board", "claim_quest", "submit_work"),
}

# The real migrations' tables, in the order their "Database initialized with tables:"
# block lists them (civicforge-real-logs.txt). Columns: only what the stand-in uses.
_SCHEMA: dict[str, str] = {
    "users": """CREATE TABLE IF NOT EXISTS users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE,
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        real_name TEXT NOT NULL,
        role TEXT NOT NULL DEFAULT 'Participant',
        verified INTEGER NOT NULL DEFAULT 0,
        reputation INTEGER NOT NULL DEFAULT 0,
        experience_balance INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    )""",
    # Only what the "creator of the earliest quest gets owner permissions" rule needs.
    "quests": """CREATE TABLE IF NOT EXISTS quests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        creator_id INTEGER NOT NULL REFERENCES users(id),
        created_at TEXT NOT NULL
    )""",
    "verifications": """CREATE TABLE IF NOT EXISTS verifications (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        quest_id INTEGER NOT NULL REFERENCES quests(id),
        verifier_id INTEGER NOT NULL REFERENCES users(id),
        created_at TEXT NOT NULL
    )""",
    "experience_ledger": """CREATE TABLE IF NOT EXISTS experience_ledger (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL REFERENCES users(id),
        amount INTEGER NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "board_config": """CREATE TABLE IF NOT EXISTS board_config (
        board_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL
    )""",
    "board_invites": """CREATE TABLE IF NOT EXISTS board_invites (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        token TEXT NOT NULL UNIQUE,
        board_id TEXT NOT NULL,
        role TEXT NOT NULL,
        email TEXT,
        max_uses INTEGER NOT NULL,
        uses INTEGER NOT NULL DEFAULT 0,
        expires_at TEXT NOT NULL,
        created_by INTEGER NOT NULL REFERENCES users(id),
        created_at TEXT NOT NULL
    )""",
    # UNIQUE (board_id, user_id): two joins of one user at once can make the loser's
    # INSERT an IntegrityError, the real service's 500 (see app.join).
    "board_memberships": """CREATE TABLE IF NOT EXISTS board_memberships (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        board_id TEXT NOT NULL,
        user_id INTEGER NOT NULL REFERENCES users(id),
        role TEXT NOT NULL,
        permissions TEXT NOT NULL,
        joined_at TEXT NOT NULL,
        UNIQUE (board_id, user_id)
    )""",
}
MIGRATED_TABLES: tuple[str, ...] = tuple(_SCHEMA)


def _quiet(line: str) -> None:
    """An ``echo`` that prints nothing (the stage prepares its database in-process)."""


def utc_now_naive() -> datetime:
    """Now in UTC without tzinfo: the real service writes naive UTC timestamps."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def connect(path: str | os.PathLike[str], timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode with WAL, a busy timeout and name-addressable rows.

    Autocommit (``isolation_level=None``) because writers open their own
    ``BEGIN IMMEDIATE`` through :func:`transaction`.
    """
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run a block under ``BEGIN IMMEDIATE``: the write lock is taken up front, so
    a check-then-insert cannot race a sibling process."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection) -> None:
    """Create every table that does not exist yet (idempotent)."""
    for statement in _SCHEMA.values():
        conn.execute(statement)


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The database URL the real migrations print: ``sqlite:///`` and the path as given."""
    return f"sqlite:///{os.fspath(path)}"


def run_migrations(
    conn: sqlite3.Connection, *, bootstrap: bool = True, echo: Callable[[str], None] = _quiet
) -> int | None:
    """The real migration script's steps and lines, run inside the caller's transaction.

    Prints what ``civicforge-real-logs.txt`` shows: "Applying SQLite schema...",
    "Creating default board configuration..." when the config is missing (a fresh
    database), "Added user N as board owner" only on the run that bootstraps the
    owner, then "Migrations complete!". Returns the new owner's id, if any.
    ``bootstrap=False`` is the ``no_owner`` fault (lesson 3).
    """
    echo("Applying SQLite schema...")
    migrate(conn)
    if conn.execute("SELECT 1 FROM board_config WHERE board_id = ?", (DEFAULT_BOARD_ID,)).fetchone() is None:
        echo("Creating default board configuration...")
        conn.execute("INSERT INTO board_config (board_id, created_at) VALUES (?, ?)",
                     (DEFAULT_BOARD_ID, utc_now_naive().isoformat()))
    owner_id = bootstrap_owner(conn) if bootstrap else None
    if owner_id is not None:
        echo(f"Added user {owner_id} as board owner")
    echo("Migrations complete!")
    return owner_id


def report_tables(conn: sqlite3.Connection, echo: Callable[[str], None]) -> None:
    """The "Database initialized with tables:" block the real start-up prints after migrating."""
    present = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    echo("")
    echo("Database initialized with tables:")
    for table in MIGRATED_TABLES:
        if table in present:
            echo(f"  ✓ {table}")


def hash_password(password: str) -> str:
    """A salted pbkdf2-sha256 hash as ``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PASSWORD_HASH_ITERATIONS)
    return f"pbkdf2_sha256${PASSWORD_HASH_ITERATIONS}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a hash made by :func:`hash_password`."""
    try:
        scheme, iterations, salt_hex, digest_hex = stored.split("$")
        salt, expected, rounds = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex), int(iterations)
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256":
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    return hmac.compare_digest(digest, expected)


def insert_user(
    conn: sqlite3.Connection, *, username: str, email: str, password: str, real_name: str, role: str
) -> int:
    """Insert a user row (no uniqueness checks: callers do those) and return its id."""
    xp = ORGANIZER_STARTING_XP if role == "Organizer" else 0
    cursor = conn.execute(
        "INSERT INTO users (username, email, password_hash, real_name, role, experience_balance, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (username, email, hash_password(password), real_name, role, xp, utc_now_naive().isoformat()),
    )
    assert cursor.lastrowid is not None  # an INSERT into a rowid table always sets it
    return cursor.lastrowid


def add_membership(conn: sqlite3.Connection, *, board_id: str, user_id: int, role: str) -> int:
    """Add a membership with the role's permissions as a snapshot; return its id.

    A second membership of one user on one board is a ``sqlite3.IntegrityError``
    (the table's unique constraint), which the real service lets escape as a 500.
    """
    permissions = json.dumps(ROLE_PERMISSIONS[role])
    cursor = conn.execute(
        "INSERT INTO board_memberships (board_id, user_id, role, permissions, joined_at) VALUES (?, ?, ?, ?, ?)",
        (board_id, user_id, role, permissions, utc_now_naive().isoformat()),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def create_board_invite(
    conn: sqlite3.Connection, *, board_id: str, created_by: int, role: str, email: str | None, max_uses: int,
    expires_hours: int, new_token: Callable[[], str],
) -> tuple[str, str]:
    """Store an invite and return ``(token, expires_at)``.

    Like the real ``auth.create_board_invite``: an unknown role (roles are lowercase)
    is ``ValueError("Invalid role: <role>")``, which reaches the client as a plain-text
    500 ("ValueError: Invalid role: Reviewer" in the recorded log); ``max_uses`` and
    ``expires_hours`` are taken as they come. ``new_token`` makes the invite token
    (the ``urlsafe`` fault swaps in lesson 8's broken call).
    """
    if role not in ROLE_PERMISSIONS:
        raise ValueError(f"Invalid role: {role}")
    token = new_token()
    now = utc_now_naive()
    expires_at = (now + timedelta(hours=expires_hours)).isoformat()
    conn.execute(
        "INSERT INTO board_invites (token, board_id, role, email, max_uses, expires_at, created_by, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (token, board_id, role, email, max_uses, expires_at, created_by, now.isoformat()),
    )
    return token, expires_at


def bootstrap_owner(conn: sqlite3.Connection) -> int | None:
    """Make the earliest "Organizer" owner of board_001 when nobody is a member yet.

    Mirrors the runbook's migration (lesson 3); returns the new owner's user id,
    or None when memberships exist already or no Organizer has registered.
    """
    (count,) = conn.execute("SELECT COUNT(*) FROM board_memberships").fetchone()
    if count:
        return None
    row = conn.execute(
        "SELECT id FROM users WHERE role = 'Organizer' ORDER BY created_at ASC, id ASC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    add_membership(conn, board_id=DEFAULT_BOARD_ID, user_id=row["id"], role="owner")
    return int(row["id"])


def prepare_database(path: str | os.PathLike[str], accounts: Mapping[str, Mapping[str, str]]) -> None:
    """Migrate ``path``, register the smoke accounts that are missing, bootstrap the owner.

    ``accounts`` maps an account key to at least ``username`` and ``password``
    (optional ``email``, ``real_name``, ``role``). The ``owner`` account is
    registered first with role "Organizer", so the bootstrap makes it owner of
    board_001; every other account defaults to "Participant". Idempotent, and
    safe when two processes run it at once (one ``BEGIN IMMEDIATE``).
    """
    ordered = sorted(accounts.items(), key=lambda item: item[0] != "owner")
    conn = connect(path)
    try:
        with transaction(conn):
            migrate(conn)
            for key, account in ordered:
                username = account["username"]
                if conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                    continue
                insert_user(
                    conn,
                    username=username,
                    email=account.get("email", f"{username}@{ACCOUNT_EMAIL_DOMAIN}"),
                    password=account["password"],
                    real_name=account.get("real_name", f"Smoke {key.replace('_', ' ').title()}"),
                    role=account.get("role", "Organizer" if key == "owner" else "Participant"),
                )
            run_migrations(conn)  # the second run, which bootstraps the owner (as recorded)
    finally:
        conn.close()
