"""A logged-in smoke account talking to one task of the board API (pytest-free).

Each method sends one request and returns the ``httpx.Response`` untouched, so
the test states the contract it expects (``check_joined(...)``, ``check_denied(...)``).
Only API paths are built here; the client already carries the task's base URL.
``check_logins`` is the accounts' login check before the tests, on every task.

Secrets the service hands out (session tokens, invite URLs and their tokens) are
registered with the run's :class:`SecretRegistry` by a response hook that runs
before any other hook, so even the exchange recorder never sees them unregistered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from plugins.accounts import Account
from ecs_verdict.http import DEFAULT_TIMEOUT, REPEAT_SAFE, keepalive_limits, shared_ssl_context
from ecs_verdict.redact import SecretRegistry

LOGIN_PATH = "/api/auth/login"
REGISTER_PATH = "/api/auth/register"
ME_PATH = "/api/me"
SINGLE_USE = 1
SMOKE_INVITE_HOURS = 1
BOOTSTRAP_EMAIL_DOMAIN = "smoke.civicforge.invalid"  # .invalid: never a deliverable address
# Requests that change nothing more when sent twice, so a lost answer may be asked again (ecs_verdict.http).
REPEATABLE = {REPEAT_SAFE: True}


def learn_secrets(secrets: SecretRegistry) -> Callable[[httpx.Response], None]:
    """A response hook registering every ``token`` and ``invite_url`` (and its token) in a JSON body."""

    def hook(response: httpx.Response) -> None:
        response.read()
        try:
            body = response.json()
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        for key in ("token", "invite_url"):
            value = body.get(key)
            if isinstance(value, str) and value:
                secrets.add(value)
        invite_url = body.get("invite_url")
        if isinstance(invite_url, str):
            try:
                for token in httpx.URL(invite_url).params.get_list("token"):
                    secrets.add(token)
            except httpx.InvalidURL:
                pass

    return hook


def guard_secrets(client: httpx.Client, secrets: SecretRegistry) -> httpx.Client:
    """Put :func:`learn_secrets` first among the client's response hooks (once per client)."""
    hooks = list(client.event_hooks.get("response", []))
    if not any(getattr(hook, "__qualname__", "").startswith("learn_secrets") for hook in hooks):
        client.event_hooks = {**client.event_hooks, "response": [learn_secrets(secrets), *hooks]}
    return client


def login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    """``POST /api/auth/login``; the caller checks the answer with ``check_auth``.

    Repeat-safe: a login changes nothing on the server (a second one is another token).
    """
    return client.post(LOGIN_PATH, json={"username": username, "password": password}, extensions=REPEATABLE)


def register(client: httpx.Client, username: str, password: str, *, real_name: str) -> httpx.Response:
    """``POST /api/auth/register`` a Participant (only ``--bootstrap-accounts`` on non-production does this)."""
    body = {"username": username, "email": f"{username}@{BOOTSTRAP_EMAIL_DOMAIN}", "password": password,
            "real_name": real_name, "role": "Participant"}
    return client.post(REGISTER_PATH, json=body)


@dataclass(frozen=True, slots=True)
class LoginCheck:
    """Each account's login answer (None: no HTTP answer), and what the check noticed on the way."""

    answers: tuple[tuple[Account, httpx.Response | None], ...]
    notes: tuple[str, ...] = field(default=())


def check_logins(base_urls: Sequence[str], accounts: Sequence[Account], secrets: SecretRegistry) -> LoginCheck:
    """Log every account in before the tests, at most one login at a time per task.

    The accounts are spread over the tasks, each task's share logged in one after another, so
    a pool of 24 logs in in the time of a few while no task sees two logins at once: the real
    service on PostgreSQL shares one connection and cursor across its threads and then answers
    simultaneous logins with 500s and even a 401 for a valid password (civicforge-api.md). A
    refusal (401) is asked once more, alone, before it counts: a password that is really wrong
    is refused again; one refused only beside another login is noted, not believed.
    """
    shares: list[list[Account]] = [[] for _ in base_urls]
    for index, account in enumerate(accounts):
        shares[index % len(base_urls)].append(account)
    answers: dict[int, httpx.Response | None] = {}

    def log_in_share(base_url: str, share: list[Account]) -> None:
        with _client(base_url, secrets) as client:
            for account in share:
                answers[id(account)] = _try_login(client, account)

    busy = [(url, share) for url, share in zip(base_urls, shares) if share]
    with ThreadPoolExecutor(max_workers=len(busy), thread_name_prefix="smoke-login") as pool:
        list(pool.map(lambda pair: log_in_share(*pair), busy))  # the threads end here, before any fork
    notes: list[str] = []
    refused = [account for account in accounts if (answer := answers[id(account)]) is not None
               and answer.status_code == 401]
    if refused:
        with _client(base_urls[0], secrets) as client:
            for account in refused:
                again = _try_login(client, account)
                if again is not None and again.status_code == 200:
                    notes.append(f"the login of {account.username!r} was refused (401) once and accepted when "
                                 "asked again alone")
                    answers[id(account)] = again
    return LoginCheck(tuple((account, answers[id(account)]) for account in accounts), tuple(notes))


def _client(base_url: str, secrets: SecretRegistry) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=DEFAULT_TIMEOUT, verify=shared_ssl_context(),
                          limits=keepalive_limits())
    return guard_secrets(client, secrets)


def _try_login(client: httpx.Client, account: Account) -> httpx.Response | None:
    try:
        return login(client, account.username, account.password)
    except httpx.HTTPError:
        return None


@dataclass(frozen=True, slots=True)
class Session:
    """A login's result: who it is and the bearer token (never printed)."""

    username: str
    user_id: int
    token: str

    def __repr__(self) -> str:
        return f"Session(username={self.username!r}, user_id={self.user_id}, token='***')"


class BoardApi:
    """One smoke account on one task: ``BoardApi(client, session, board_id)``.

    ``session`` may be a callable that logs in on first use: then a login the
    service refuses fails the test that needed it (a broken product), instead of
    erroring its set-up (which reads as "could not verify").
    """

    def __init__(self, client: httpx.Client, session: Session | Callable[[], Session], board_id: str, *,
                 username: str | None = None) -> None:
        self.client = client
        self._session = session
        self.board_id = board_id
        self._username = username  # known before the login (choosing an account of the pool needs no login)

    @property
    def session(self) -> Session:
        if not isinstance(self._session, Session):
            self._session = self._session()
        return self._session

    @property
    def user_id(self) -> int:
        return self.session.user_id

    @property
    def username(self) -> str:
        return self._username or self.session.username

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session.token}"}

    def me(self) -> httpx.Response:
        """``GET /api/me`` (membership is reported for board_001 only)."""
        return self.client.get(ME_PATH, headers=self._headers())

    def create_invite(self, role: str, *, max_uses: int = SINGLE_USE,
                      expires_hours: int = SMOKE_INVITE_HOURS) -> httpx.Response:
        """``POST /api/boards/{board}/invites``: by default single-use and valid for one hour.

        Repeat-safe although it creates something: there is no API to read invites back, and
        a second single-use invite nobody holds, expiring within the hour, is harmless.
        """
        body: dict[str, Any] = {"role": role, "max_uses": max_uses, "expires_hours": expires_hours}
        return self.client.post(f"/api/boards/{self.board_id}/invites", json=body, headers=self._headers(),
                                extensions=REPEATABLE)

    def join(self, token: str) -> httpx.Response:
        """``POST /api/boards/{board}/join`` with an invite token."""
        return self.client.post(f"/api/boards/{self.board_id}/join", json={"token": token}, headers=self._headers())

    def members(self) -> httpx.Response:
        """``GET /api/boards/{board}/members`` (newest first)."""
        return self.client.get(f"/api/boards/{self.board_id}/members", headers=self._headers())

    def remove_member(self, user_id: int) -> httpx.Response:
        """``DELETE /api/boards/{board}/members/{user_id}``."""
        return self.client.delete(f"/api/boards/{self.board_id}/members/{user_id}", headers=self._headers())


class Anonymous:
    """The same routes with no credentials at all (what an outsider gets)."""

    def __init__(self, client: httpx.Client, board_id: str) -> None:
        self.client = client
        self.board_id = board_id

    def me(self) -> httpx.Response:
        return self.client.get(ME_PATH)

    def members(self) -> httpx.Response:
        return self.client.get(f"/api/boards/{self.board_id}/members")

    def create_invite(self, role: str) -> httpx.Response:
        # Repeat-safe for the reason BoardApi.create_invite is (and it must be refused anyway).
        body = {"role": role, "max_uses": SINGLE_USE, "expires_hours": SMOKE_INVITE_HOURS}
        return self.client.post(f"/api/boards/{self.board_id}/invites", json=body, extensions=REPEATABLE)
