"""The stand-in's database: schema, roles, password hashing and seeding.

Several stand-in processes (one per ECS "task") share one SQLite file the way
the real tasks share one RDS database, so every connection uses WAL and a busy
timeout, and every read-check-write runs under ``BEGIN IMMEDIATE``.

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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone

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
    return {name: name in allowed for name in PERMISSION_NAMES}


ROLE_PERMISSIONS: dict[str, dict[str, bool]] = {
    "owner": _grant(
        "view_board", "create_quest", "verify_quest", "create_invites", "manage_members",
        "view_analytics", "edit_any_quest", "delete_any_quest",
    ),
    "organizer": _grant(
        "view_board", "create_quest", "verify_quest", "create_invites", "view_analytics", "edit_own_quest",
    ),
    "reviewer": _grant("view_board", "verify_quest", "view_analytics", "comment_on_quest"),
    "friend": _grant("view_board", "create_quest", "claim_quest", "verify_quest"),
    "participant": _grant("view_board", "claim_quest", "submit_work"),
}

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS users (
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
    """CREATE TABLE IF NOT EXISTS board_memberships (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        board_id TEXT NOT NULL,
        user_id INTEGER NOT NULL REFERENCES users(id),
        role TEXT NOT NULL,
        permissions TEXT NOT NULL,
        joined_at TEXT NOT NULL,
        UNIQUE (board_id, user_id)
    )""",
    """CREATE TABLE IF NOT EXISTS invites (
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
    # Only what the "creator of the earliest quest gets owner permissions" rule needs.
    """CREATE TABLE IF NOT EXISTS quests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        creator_id INTEGER NOT NULL REFERENCES users(id),
        created_at TEXT NOT NULL
    )""",
)


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
    for statement in _SCHEMA:
        conn.execute(statement)


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

    ``ROLE_PERMISSIONS[role]`` is a plain lookup on purpose: an unknown role is
    a KeyError, which is how the real service turns a bad invite role into a 500.
    """
    permissions = json.dumps(ROLE_PERMISSIONS[role])
    cursor = conn.execute(
        "INSERT INTO board_memberships (board_id, user_id, role, permissions, joined_at) VALUES (?, ?, ?, ?, ?)",
        (board_id, user_id, role, permissions, utc_now_naive().isoformat()),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


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
            bootstrap_owner(conn)
    finally:
        conn.close()
