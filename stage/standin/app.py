"""The CivicForge board service stand-in: a FastAPI app modelled on the real service.

Every behaviour traces to the API doc (`shared/civicforge-api.md`) and, where they
speak, to the recordings of the real service (`tests/recordings/`; `stage.replay`
replays them against this app), sloppy parts included: 403 without an
Authorization header but 401 for a bad bearer token, naive UTC timestamps, a
JWT-shaped token whose ``exp`` is an ISO string, a plain-text 500 for an unknown
invite role. Like the real service, the JSON API is a sub-application mounted at
``/api``, so its OpenAPI paths and its access-log lines carry no ``/api``.

Fault switches (`stage.faults`) reproduce the runbook's failures the way the real
bugs show themselves: real exceptions that propagate, so uvicorn logs "Exception
in ASGI application" and a genuine traceback. Root ``/health`` is served unless
``no_root_health`` is set: the runbook's builds serve it, the recorded build does not.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import socket
import sqlite3
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from stage.faults import Faults
from stage.standin.db import (
    DEFAULT_BOARD_ID,
    ROLE_PERMISSIONS,
    add_membership,
    connect,
    create_board_invite,
    insert_user,
    report_tables,
    run_migrations,
    sqlite_url,
    transaction,
    utc_now_naive,
    verify_password,
)

DEFAULT_SECRET_KEY = "standin-secret-key-not-for-production"
# BASE_URL is unset in the real deployment, so its invite URLs say localhost:8000
# whatever address the task has (recorded).
DEFAULT_BASE_URL = "http://localhost:8000"
API_MOUNT = "/api"
# The real service's 422 items carry pydantic's documentation link, of its pydantic
# (2.11, recorded); current FastAPI leaves the link out, so the stand-in adds it.
PYDANTIC_ERRORS_URL = "https://errors.pydantic.dev/2.11/v/{type}"
DEFAULT_TOKEN_EXPIRY_HOURS = 24
DEFAULT_INVITE_ROLE = "friend"
DEFAULT_INVITE_MAX_USES = 1
DEFAULT_INVITE_EXPIRES_HOURS = 48
# The no_migrations fault points a task at its own empty file, as a task whose
# entrypoint skipped migrations would see a database without tables.
NO_MIGRATIONS_SUFFIX = ".nomigrations"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything one stand-in process needs; ``version`` adds a field the real service lacks."""

    db_path: str
    faults: Faults = field(default_factory=Faults)
    secret_key: str = DEFAULT_SECRET_KEY
    base_url: str = DEFAULT_BASE_URL
    version: str | None = None
    token_expiry_hours: int = DEFAULT_TOKEN_EXPIRY_HOURS

    @property
    def effective_db_path(self) -> str:
        """The file this process really uses (its own empty one under ``no_migrations``)."""
        if "no_migrations" in self.faults:
            return self.db_path + NO_MIGRATIONS_SUFFIX
        return self.db_path


# --- tokens -----------------------------------------------------------------


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(signing_input: str, secret_key: str) -> str:
    return _b64encode(hmac.new(secret_key.encode(), signing_input.encode("ascii"), hashlib.sha256).digest())


def issue_token(
    user_id: int, username: str, secret_key: str, *, expiry_hours: int = DEFAULT_TOKEN_EXPIRY_HOURS,
    now: datetime | None = None,
) -> str:
    """An HS256 JWT-shaped token; like the real service, ``exp`` is a naive ISO string."""
    expires = (now or utc_now_naive()) + timedelta(hours=expiry_hours)
    header = _b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"sub": str(user_id), "user_id": user_id, "username": username, "exp": expires.isoformat()}
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}"
    return f"{signing_input}.{_sign(signing_input, secret_key)}"


def read_token(token: str, secret_key: str, *, now: datetime | None = None) -> int | None:
    """The user id in a valid, unexpired token; None for anything else."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header, payload, signature = parts
    if not hmac.compare_digest(signature, _sign(f"{header}.{payload}", secret_key)):
        return None
    try:
        claims = json.loads(_b64decode(payload))
        expires = datetime.fromisoformat(claims["exp"])
        user_id = int(claims["sub"])
        expired = expires <= (now or utc_now_naive())
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None  # TypeError also covers a tz-aware exp compared with naive now
    return None if expired else user_id


# --- request bodies ------------------------------------------------------------


class RegisterRequest(BaseModel):
    username: str
    email: str
    password: str
    real_name: str
    role: str = "Participant"


class LoginRequest(BaseModel):
    username: str
    password: str


class InviteRequest(BaseModel):
    role: str = DEFAULT_INVITE_ROLE
    email: str | None = None
    max_uses: int = DEFAULT_INVITE_MAX_USES
    expires_hours: int = DEFAULT_INVITE_EXPIRES_HOURS


class JoinRequest(BaseModel):
    token: str


# --- fault plumbing ---------------------------------------------------------------


class PgCursor:
    """A cursor shaped like the PostgreSQL adapter's in lesson 7: rows, but no ``rowcount``."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def fetchone(self) -> Any:
        """The next row, as the adapter offers it."""
        return self._cursor.fetchone()


class SlowResponses:
    """ASGI middleware that holds every HTTP request back by a fixed delay (``slow_ms``)."""

    def __init__(self, app: ASGIApp, delay_s: float) -> None:
        self.app = app
        self.delay_s = delay_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(self.delay_s)
        await self.app(scope, receive, send)


class ResetOnce:
    """ASGI middleware: the first request to ``path`` gets no answer, its TCP connection is reset (``reset_once``).

    What a client sees when a connection dies under a request: a network hiccup, or the
    real service, which drops the connection after an unhandled 500 (civicforge-api.md).
    The connection is found among uvicorn's (``app.state.connections``, set by
    ``stage.standin.__main__``) by the client's address.
    """

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path
        self.done = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.done and scope["path"] == self.path:
            connections = getattr(scope["app"].state, "connections", ())
            protocol = next((c for c in connections if tuple(c.client or ()) == tuple(scope.get("client") or ())),
                            None)
            if protocol is not None:
                self.done = True
                sock = protocol.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
                protocol.transport.abort()
                await asyncio.sleep(0)  # let uvicorn see the connection lost: it then answers nothing, logs nothing
                return
        await self.app(scope, receive, send)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A 422 as the real service answers it: pydantic 2 items ``{type, loc, msg, input, url}``."""
    assert isinstance(exc, RequestValidationError)
    errors = [{**error, "url": PYDANTIC_ERRORS_URL.format(type=error["type"])} for error in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})


# --- logging -----------------------------------------------------------------------


class MountPrefixAccessFilter(logging.Filter):
    """Drop the API mount prefix from uvicorn's access lines, as the real service's do.

    The real service's Starlette rewrote ``scope["path"]`` for a mounted app, so its
    uvicorn logs ``GET /api/health`` as ``"GET /health HTTP/1.1" 200 OK`` (recorded).
    Current Starlette keeps the full path (redirects and URLs rely on it), so the
    stand-in rewrites the logged path instead of the scope.
    """

    def __init__(self, prefix: str = API_MOUNT) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's access call: (client_addr, method, path_with_query, http_version, status)
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            if args[2].startswith(self.prefix + "/"):
                record.args = (args[0], args[1], args[2][len(self.prefix):], args[3], args[4])
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging set-up plus :class:`MountPrefixAccessFilter` on the access logger."""
    from uvicorn.config import LOGGING_CONFIG

    config = json.loads(json.dumps(LOGGING_CONFIG))  # a deep copy: uvicorn's dict is module state
    config["filters"] = {"mount_prefix": {"()": f"{__name__}.MountPrefixAccessFilter", "prefix": API_MOUNT}}
    config["loggers"]["uvicorn.access"]["filters"] = ["mount_prefix"]
    return config


# --- start-up -----------------------------------------------------------------------


def run_entrypoint(settings: Settings, echo: Callable[[str], None] = print) -> None:
    """What the real container's start-up prints and does before uvicorn starts.

    The recorded lines (civicforge-real-logs.txt, section 2): "Running migrations on
    sqlite:///<db>", the migration steps, "Migrations complete!", a blank line and the
    "Database initialized with tables:" block. Under ``no_migrations`` nothing runs and
    nothing is printed (lesson 2: the entrypoint script never ran); under ``no_owner``
    migrations skip the owner bootstrap (lesson 3).
    """
    if "no_migrations" in settings.faults:
        return
    echo(f"Running migrations on {sqlite_url(settings.db_path)}")
    conn = connect(settings.db_path)
    try:
        with transaction(conn):
            run_migrations(conn, bootstrap="no_owner" not in settings.faults, echo=echo)
        report_tables(conn, echo)
    finally:
        conn.close()


# --- dependencies -------------------------------------------------------------------------
# Module-level so FastAPI can resolve the postponed annotations; the per-process
# settings travel on ``app.state``.


def _settings(request: Request) -> Settings:
    return request.app.state.settings


Config = Annotated[Settings, Depends(_settings)]


def _database(config: Config) -> Iterator[sqlite3.Connection]:
    conn = connect(config.effective_db_path)
    try:
        yield conn
    finally:
        conn.close()


Db = Annotated[sqlite3.Connection, Depends(_database)]


def _credentials_from(authorization: str | None) -> str:
    """The bearer token, failing exactly like FastAPI's HTTPBearer did for the real service."""
    scheme, _, credentials = (authorization or "").partition(" ")
    if not (authorization and scheme and credentials):
        raise HTTPException(status_code=403, detail="Not authenticated")
    if scheme.lower() != "bearer":
        raise HTTPException(status_code=403, detail="Invalid authentication credentials")
    return credentials


def _current_user_id(request: Request, config: Config) -> int:
    """The user id of a valid token. Like the real service, the token alone is checked here:
    whether its user still exists is each route's business (``/me`` answers 404)."""
    token = _credentials_from(request.headers.get("Authorization"))
    user_id = read_token(token, config.secret_key)
    if user_id is None:
        raise HTTPException(status_code=401, detail="Invalid authentication credentials")
    return user_id


UserId = Annotated[int, Depends(_current_user_id)]


def _visible(config: Config) -> str:
    """SQL that hides board_001's owner rows from this task under ``no_owner`` (lesson 3)."""
    if "no_owner" in config.faults:
        return " AND NOT (m.board_id = 'board_001' AND m.role = 'owner')"
    return ""


def _membership_of(conn: sqlite3.Connection, config: Settings, board_id: str, user_id: int) -> sqlite3.Row | None:
    return conn.execute(
        f"SELECT m.* FROM board_memberships m WHERE m.board_id = ? AND m.user_id = ?{_visible(config)}",
        (board_id, user_id),
    ).fetchone()


def _role_and_permissions(
    conn: sqlite3.Connection, config: Settings, board_id: str, user_id: int
) -> tuple[str, dict[str, bool]]:
    """A member's stored snapshot; otherwise participant, or owner for the earliest quest's creator."""
    member = _membership_of(conn, config, board_id, user_id)
    if member is not None:
        return member["role"], json.loads(member["permissions"])
    earliest = conn.execute("SELECT creator_id FROM quests ORDER BY created_at ASC, id ASC LIMIT 1").fetchone()
    if earliest is not None and earliest["creator_id"] == user_id:
        return "owner", dict(ROLE_PERMISSIONS["owner"])
    return "participant", dict(ROLE_PERMISSIONS["participant"])


def _token_response(config: Settings, user_id: int, username: str) -> dict[str, Any]:
    token = issue_token(user_id, username, config.secret_key, expiry_hours=config.token_expiry_hours)
    return {"token": token, "user_id": user_id, "username": username}


# --- routes ---------------------------------------------------------------------------------
# Registered in the order of the real service's OpenAPI paths (recorded), so the
# stand-in's /api/openapi.json lists the same routes in the same order.

api = APIRouter()


def health(config: Config) -> dict[str, str]:
    """``SELECT 1`` and nothing more, like the real service: healthy even without tables."""
    try:
        conn = connect(config.effective_db_path)
        try:
            conn.execute("SELECT 1")
        finally:
            conn.close()
    except Exception as exc:  # any database failure is the 503 the real service reports
        raise HTTPException(status_code=503, detail=f"Health check failed: {exc}") from exc
    body = {"status": "healthy", "database": "connected"}
    if config.version is not None:
        body["version"] = config.version
    return body


def _not_modelled(method: str, path: str) -> None:
    """Register a route the real service has (its OpenAPI lists it) but no recording exercises.

    It answers 501 rather than inventing behaviour nobody observed.
    """

    def not_modelled() -> NoReturn:
        raise HTTPException(status_code=501, detail=f"{method} {path} is not modelled by the stand-in")

    api.add_api_route(path, not_modelled, methods=[method], name=f"not_modelled_{method}_{path}", response_model=None)


@api.post("/auth/register")
def register(body: RegisterRequest, config: Config, conn: Db) -> dict[str, Any]:
    with transaction(conn):
        if conn.execute("SELECT 1 FROM users WHERE username = ?", (body.username,)).fetchone():
            raise HTTPException(status_code=400, detail="Username already exists")
        if conn.execute("SELECT 1 FROM users WHERE email = ?", (body.email,)).fetchone():
            raise HTTPException(status_code=400, detail="Email already exists")
        user_id = insert_user(
            conn, username=body.username, email=body.email, password=body.password,
            real_name=body.real_name, role=body.role,
        )
    return _token_response(config, user_id, body.username)


@api.post("/auth/login")
def login(body: LoginRequest, config: Config, conn: Db) -> dict[str, Any]:
    user = conn.execute("SELECT * FROM users WHERE username = ?", (body.username,)).fetchone()
    if user is None or not verify_password(body.password, user["password_hash"]):
        raise HTTPException(status_code=401, detail="Invalid username or password")
    return _token_response(config, user["id"], user["username"])


def _new_invite_token(config: Settings) -> Callable[[], str]:
    if "urlsafe" in config.faults:
        return lambda: secrets.urlsafe(32)  # type: ignore[attr-defined]  # lesson 8's bug, kept on purpose
    return lambda: secrets.token_urlsafe(32)


@api.post("/boards/{board_id}/invites")
def create_invite(board_id: str, body: InviteRequest, user_id: UserId, config: Config, conn: Db) -> dict[str, Any]:
    # The body is required (no body is a 422 with loc ["body"]) but every field has a default.
    role, permissions = _role_and_permissions(conn, config, board_id, user_id)
    # participant_can_invite: the regression lets the participant role through.
    allowed = permissions.get("create_invites", False) or (
        "participant_can_invite" in config.faults and role == "participant"
    )
    if not allowed:
        raise HTTPException(status_code=403, detail="No permission to create invites")
    token, expires_at = create_board_invite(
        conn, board_id=board_id, created_by=user_id, role=body.role, email=body.email, max_uses=body.max_uses,
        expires_hours=body.expires_hours, new_token=_new_invite_token(config),
    )
    invite_url = f"{config.base_url}/board/{board_id}/join?token={token}"
    return {"invite_url": invite_url, "expires_at": expires_at, "role": body.role}


@api.post("/boards/{board_id}/join")
def join(board_id: str, body: JoinRequest, user_id: UserId, config: Config, conn: Db) -> dict[str, Any]:
    # The checks run before the write lock is taken, as in the real service: two joins of
    # one user at once can both pass them, and the loser's INSERT then breaks the unique
    # constraint, an IntegrityError that escapes as a plain-text 500 (as recorded).
    invite = conn.execute(
        "SELECT * FROM board_invites WHERE token = ? AND board_id = ?", (body.token, board_id)
    ).fetchone()
    if invite is None:
        raise HTTPException(status_code=404, detail="Invalid invite")
    expired = datetime.fromisoformat(invite["expires_at"]) <= utc_now_naive()
    if expired or invite["uses"] >= invite["max_uses"]:
        raise HTTPException(status_code=400, detail="Invite expired or already used")
    if _membership_of(conn, config, board_id, user_id) is not None:
        raise HTTPException(status_code=400, detail="Already a board member")
    with transaction(conn):
        add_membership(conn, board_id=board_id, user_id=user_id, role=invite["role"])
        conn.execute("UPDATE board_invites SET uses = uses + 1 WHERE id = ?", (invite["id"],))
    return {"message": "Successfully joined board", "role": invite["role"]}


@api.get("/boards/{board_id}/members")
def list_members(board_id: str, user_id: UserId, config: Config, conn: Db) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT m.*, u.username, u.real_name FROM board_memberships m JOIN users u ON u.id = m.user_id"
        f" WHERE m.board_id = ?{_visible(config)} ORDER BY m.joined_at DESC, m.id DESC",
        (board_id,),
    ).fetchall()
    return [
        {
            "id": row["id"], "user_id": row["user_id"], "username": row["username"],
            "real_name": row["real_name"], "role": row["role"],
            "permissions": json.loads(row["permissions"]), "joined_at": row["joined_at"],
        }
        for row in rows
    ]


@api.delete("/boards/{board_id}/members/{user_id}")
def remove_member(board_id: str, user_id: int, caller_id: UserId, config: Config, conn: Db) -> dict[str, str]:
    with transaction(conn):
        _, permissions = _role_and_permissions(conn, config, board_id, caller_id)
        if not permissions.get("manage_members", False):
            raise HTTPException(status_code=403, detail="No permission to manage members")
        target = _membership_of(conn, config, board_id, user_id)
        if target is None:
            if "rowcount" in config.faults:
                # Lesson 7: the PostgreSQL adapter's cursor has no rowcount, so the
                # "nothing deleted" branch is an AttributeError instead of a 404.
                result = PgCursor(conn.execute(
                    "DELETE FROM board_memberships WHERE board_id = ? AND user_id = ?", (board_id, user_id)
                ))
                if result.rowcount == 0:  # type: ignore[attr-defined]
                    raise HTTPException(status_code=404, detail="Member not found")
            raise HTTPException(status_code=404, detail="Member not found")
        if target["role"] == "owner":
            (owners,) = conn.execute(
                "SELECT COUNT(*) FROM board_memberships m WHERE m.board_id = ? AND m.role = 'owner'"
                + _visible(config),
                (board_id,),
            ).fetchone()
            if owners <= 1:
                raise HTTPException(status_code=400, detail="Cannot remove the only board owner")
        conn.execute("DELETE FROM board_memberships WHERE id = ?", (target["id"],))
    return {"message": "Member removed successfully"}


_not_modelled("GET", "/users")
_not_modelled("POST", "/users")
_not_modelled("GET", "/users/{user_id}")


@api.get("/me")
def me(user_id: UserId, config: Config, conn: Db) -> dict[str, Any]:
    user = conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    if user is None:  # a validly signed token of a user that no longer exists (recorded)
        raise HTTPException(status_code=404, detail="user not found")
    member = _membership_of(conn, config, DEFAULT_BOARD_ID, user_id)
    board_membership = None
    if member is not None:
        board_membership = {
            "id": member["id"], "role": member["role"], "permissions": json.loads(member["permissions"]),
        }
    return {
        "id": user["id"],
        "username": user["username"],
        "real_name": user["real_name"],
        "verified": bool(user["verified"]),
        "role": user["role"],
        "reputation": user["reputation"],
        "created_at": user["created_at"],
        "board_membership": board_membership,
        "experience_balance": user["experience_balance"],
    }


for _method, _path in (
    ("GET", "/quests"), ("POST", "/quests"), ("POST", "/quests/{quest_id}/claim"),
    ("POST", "/quests/{quest_id}/submit"), ("POST", "/quests/{quest_id}/verify"), ("GET", "/quests/{quest_id}"),
    ("GET", "/users/{user_id}/experience"), ("POST", "/quests/{quest_id}/boost"), ("GET", "/categories"),
    ("GET", "/stats/board"), ("GET", "/stats/user/{user_id}"),
):
    _not_modelled(_method, _path)

api.get("/health")(health)


def create_app(settings: Settings) -> FastAPI:
    """The stand-in app for one process ("task"), with that process's fault switches.

    The JSON API is a FastAPI sub-application mounted at ``/api``, as in the real
    service; root ``/health`` (the runbook's builds) sits on the outer app.
    """
    api_app = FastAPI(title="CivicForge Board MVP (stand-in)")
    api_app.state.settings = settings
    api_app.add_exception_handler(RequestValidationError, validation_error)
    api_app.include_router(api)
    app = FastAPI(title="CivicForge Board MVP (stand-in)")
    app.state.settings = settings
    if settings.faults.slow_ms:
        app.add_middleware(SlowResponses, delay_s=settings.faults.slow_ms / 1000)
    if settings.faults.reset_once:
        app.add_middleware(ResetOnce, path=settings.faults.reset_once)
    if "no_root_health" not in settings.faults:
        app.get("/health")(health)
    app.mount(API_MOUNT, api_app)
    return app
