"""The real service's recorded answers, and the contract checks that apply to each (pytest-free).

``tests/recordings/civicforge-real-exchanges.jsonl`` holds requests sent to the real
CivicForge board service, in order on one fresh database, with its answers. Two
promises are kept with it:

- every recorded answer passes every check that applies to its request (the
  contract accepts the real service): :func:`violations_of`;
- a copy of an answer with one fault planted fails (the contract can fail):
  :data:`MUTATIONS`, each a function from a recorded exchange to its faulty copy.

Which checks apply is stated per recorded exchange, by name, in :data:`CHECKS`;
exchanges no smoke check speaks to are listed, with the reason, in
:data:`NOT_CHECKED`. A new recording with a name in neither is an error, so nothing
is skipped silently.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from contracts.checks import (
    check_auth,
    check_denied,
    check_health,
    check_invite_created,
    check_joined,
    check_member_removed,
    check_members,
    check_membership,
    check_permissions_equal,
    check_rejected_input,
    check_status,
    check_unauthenticated,
)
from contracts.errors import MISSING_BOARD_OWNER, ContractViolation, ContractViolations
from contracts.models import as_utc
from contracts.roles import PERMISSION_NAMES, ROLE_PERMISSIONS

RECORDED_BASE_URL = "http://127.0.0.77:18777"  # where the real service was served when it was recorded
PLACEHOLDER_PREFIX = "<"  # recorded secrets and volatile values read "<owner-token>", "<timestamp ...>"
TIMESTAMP_FIELDS = ("created_at", "joined_at")
FILLED_INVITE_TOKEN = "A" * 21 + "_" + "z" * 21  # secrets.token_urlsafe(32): 43 URL-safe characters
FILLED_SESSION_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"  # three base64url parts
_PLACEHOLDER = re.compile(r"<([a-z0-9][^<>]*)>")
RECORDED_INVITE_HOURS = 1


@dataclass(frozen=True, slots=True)
class RecordedExchange:
    """One recorded request and the real service's answer."""

    name: str
    method: str
    path: str
    request_json: Any
    authorization: dict[str, Any]
    status: int
    content_type: str | None
    body: Any  # parsed JSON, or the text of a non-JSON answer
    headers: dict[str, str] = field(default_factory=dict)  # allow, location

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RecordedExchange:
        request, answer = record["request"], record["response"]
        extra = {key: answer[key] for key in ("allow", "location") if key in answer}
        return cls(record["name"], request["method"], request["path"], request.get("json"),
                   request["headers"].get("Authorization") or {"present": False}, answer["status"],
                   answer.get("content_type"), answer.get("body"), extra)

    def response(self, base_url: str = RECORDED_BASE_URL) -> httpx.Response:
        """The answer as an ``httpx.Response`` to the recorded request, as a check sees one."""
        request = httpx.Request(self.method, base_url + self.path)
        headers = {key: value for key, value in self.headers.items()}
        if self.content_type:
            headers["content-type"] = self.content_type
        if isinstance(self.body, (dict, list)):
            content = json.dumps(self.body).encode()
        else:
            content = (self.body or "").encode()
        return httpx.Response(self.status, headers=headers, content=content, request=request)


def load_exchanges(path: str | Path) -> list[RecordedExchange]:
    """The recorded exchanges of ``path`` (JSON lines), in recorded order, placeholders filled in.

    The recording replaced secrets and volatile values with placeholders; each is
    filled with a value of the shape it stands for (:func:`fill_placeholders`), so a
    check sees what the service sent, not the recorder's marker.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    raw = [RecordedExchange.from_record(json.loads(line)) for line in lines if line.strip()]
    earliest = min(as_utc(datetime.fromisoformat(value)) for exchange in raw for value in _timestamps(exchange.body))
    stamp = earliest.replace(tzinfo=None).isoformat()
    return [replace(exchange, body=fill_placeholders(exchange.body, stamp)) for exchange in raw]


def fill_placeholders(value: Any, timestamp: str) -> Any:
    """``value`` with each ``<...>`` placeholder replaced by a value of its shape.

    ``<timestamp ...>``: ``timestamp`` (the recording's earliest moment: those rows were
    written when the database was prepared); ``<invite-token>`` and other invite
    tokens: 43 URL-safe characters; ``<...-token>``: a JWT-shaped token.
    """
    if isinstance(value, dict):
        return {key: fill_placeholders(item, timestamp) for key, item in value.items()}
    if isinstance(value, list):
        return [fill_placeholders(item, timestamp) for item in value]
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda found: _fill(found.group(1), timestamp), value)
    return value


def _fill(placeholder: str, timestamp: str) -> str:
    if placeholder.startswith("timestamp"):
        return timestamp
    if "invite-token" in placeholder or "43-char-token" in placeholder:
        return FILLED_INVITE_TOKEN
    if placeholder.endswith("token"):
        return FILLED_SESSION_TOKEN
    return "filled-" + placeholder.replace(" ", "-")


def recording_clock(exchanges: Iterable[RecordedExchange]) -> datetime:
    """When the recording ran: its latest recorded timestamp, aware UTC.

    The recording keeps no request times; the members list written right after the
    invite carries one (``joined_at``, about 0.1 s later), well within the expiry
    check's tolerance.
    """
    stamps = [as_utc(datetime.fromisoformat(value)) for exchange in exchanges
              for value in _timestamps(exchange.body)]
    if not stamps:
        raise ValueError("the recording holds no timestamp to date it by")
    return max(stamps)


# --- which checks apply -------------------------------------------------------------------------------

Check = Callable[[httpx.Response], object]


def _members_with_owner_and_role_permissions(response: httpx.Response) -> None:
    """The members list, an owner among them, each member holding exactly its role's permissions."""
    __tracebackhide__ = True
    members = check_members(response)
    if not any(member.role == "owner" for member in members):
        raise ContractViolation.from_response(response, check="board_has_owner", expected="a member with role 'owner'",
                                              actual=f"none of {len(members)} member(s) is an owner",
                                              category=MISSING_BOARD_OWNER)
    for member in members:
        check_permissions_equal(member.permissions, member.role, response=response)


def _checks(clock: datetime) -> dict[str, list[Check]]:
    def status(code: int, detail: str) -> Check:
        return lambda response: check_status(response, code, detail)

    def unauthenticated(detail: str) -> list[Check]:
        return [check_unauthenticated, status(403, detail)]

    invite_created: Check = lambda response: check_invite_created(  # noqa: E731
        response, now_utc=clock, expected_role="participant", expires_hours=RECORDED_INVITE_HOURS)
    return {
        "health_api_get": [check_health],
        "login_owner_ok": [lambda response: check_auth(response, username="smoke_owner")],
        "login_wrong_password": [status(401, "Invalid username or password")],
        "login_unknown_user": [status(401, "Invalid username or password")],
        "login_missing_password_field": [lambda response: check_rejected_input(response, ("body", "password"))],
        "register_missing_fields": [lambda response: check_rejected_input(
            response, ("body", "email"), ("body", "password"), ("body", "real_name"))],
        "register_probe_user_ok": [lambda response: check_auth(response, username="exchange_probe_user")],
        "register_probe_user_again_username_exists": [status(400, "Username already exists")],
        "register_other_name_same_email": [status(400, "Email already exists")],
        "login_participant_ok": [lambda response: check_auth(response, username="smoke_participant")],
        "me_owner": [lambda response: check_membership(response, "owner")],
        "me_participant_before_join": [lambda response: check_membership(response, None)],
        "me_probe_user": [lambda response: check_membership(response, None)],
        "me_no_authorization": unauthenticated("Not authenticated"),
        "me_basic_scheme": unauthenticated("Invalid authentication credentials"),
        "me_malformed_bearer": [check_unauthenticated, status(401, "Invalid authentication credentials")],
        "me_wrongly_signed_bearer": [check_unauthenticated, status(401, "Invalid authentication credentials")],
        "invite_owner_participant_1use_1h": [invite_created],
        "invite_owner_no_body": [lambda response: check_rejected_input(response, ("body",))],
        "invite_participant_non_member": [lambda response: check_denied(response, "No permission to create invites")],
        "invite_no_auth": unauthenticated("Not authenticated"),
        "join_participant_ok": [lambda response: check_joined(response, "participant")],
        "join_participant_again_same_token": [status(400, "Invite expired or already used")],
        "join_unknown_token": [status(404, "Invalid invite")],
        "join_missing_token_field": [lambda response: check_rejected_input(response, ("body", "token"))],
        "join_no_auth": unauthenticated("Not authenticated"),
        "me_participant_after_join": [lambda response: check_membership(response, "participant")],
        "members_as_owner": [_members_with_owner_and_role_permissions],
        "members_as_participant": [_members_with_owner_and_role_permissions],
        "members_no_auth": unauthenticated("Not authenticated"),
        "remove_by_participant": [lambda response: check_denied(response, "No permission to manage members")],
        "remove_nonexistent_999999": [status(404, "Member not found")],
        "remove_non_integer_abc": [lambda response: check_rejected_input(response, ("path", "user_id"))],
        "remove_participant_ok": [check_member_removed],
        "remove_participant_again": [status(404, "Member not found")],
        "me_participant_after_removal": [lambda response: check_membership(response, None)],
    }


NOT_CHECKED: dict[str, str] = {
    "health_root_get": "the recorded build serves only /api/health; a 404 on the configured health path is the "
                       "harness's health_path_mismatch finding, not a body contract",
    "health_api_head": "no smoke check sends HEAD (405, Allow: GET)",
    "health_api_trailing_slash": "no smoke check follows the trailing-slash redirect",
    "openapi_json": "the smoke suite does not read the OpenAPI document",
    "invite_owner_role_Reviewer_capitalised": "documented sloppiness: an unknown role is a plain-text 500; "
                                              "the smoke suite only invites with valid lowercase roles",
}


def checks_for(exchange: RecordedExchange, clock: datetime) -> list[Check]:
    """The checks that apply to ``exchange`` ([] for those in :data:`NOT_CHECKED`)."""
    table = _checks(clock)
    if exchange.name in table:
        return table[exchange.name]
    if exchange.name in NOT_CHECKED:
        return []
    raise KeyError(f"recorded exchange {exchange.name!r} is in neither CHECKS nor NOT_CHECKED of contracts.replay")


CHECKED_NAMES: frozenset[str] = frozenset(_checks(datetime.now(timezone.utc)))


def violations_of(exchange: RecordedExchange, clock: datetime) -> list[ContractViolation]:
    """Every violation the applicable checks find in the exchange's answer ([] when it passes)."""
    found: list[ContractViolation] = []
    response = exchange.response()
    for check in checks_for(exchange, clock):
        try:
            check(response)
        except ContractViolations as group:
            found.extend(group.violations)
        except ContractViolation as violation:
            found.append(violation)
    return found


# --- mutations: one fault planted at a time -------------------------------------------------------------

Mutation = Callable[[RecordedExchange], "RecordedExchange | None"]


def extra_granted_permission(exchange: RecordedExchange) -> RecordedExchange | None:
    """Every permission dict grants one permission its role must not have."""
    body = copy.deepcopy(exchange.body)
    changed = False
    for holder in _permission_holders(body):
        row = ROLE_PERMISSIONS.get(holder.get("role", ""), {})
        extra = next((name for name in PERMISSION_NAMES if not row.get(name)), None)
        if extra is not None:
            holder["permissions"][extra] = True
            changed = True
    return replace(exchange, body=body) if changed else None


def plain_text_500(exchange: RecordedExchange) -> RecordedExchange | None:
    """The service fails instead of answering: 500 ``Internal Server Error`` as plain text."""
    return replace(exchange, status=500, content_type="text/plain; charset=utf-8", body="Internal Server Error")


def changed_detail(exchange: RecordedExchange) -> RecordedExchange | None:
    """The same status with another ``detail`` string."""
    if not (isinstance(exchange.body, dict) and isinstance(exchange.body.get("detail"), str)):
        return None
    return replace(exchange, body={**exchange.body, "detail": exchange.body["detail"] + " (changed)"})


def expires_an_hour_off(exchange: RecordedExchange) -> RecordedExchange | None:
    """An invite whose ``expires_at`` is one hour later than asked for."""
    if not (isinstance(exchange.body, dict) and isinstance(exchange.body.get("expires_at"), str)):
        return None
    later = datetime.fromisoformat(exchange.body["expires_at"]) + timedelta(hours=1)
    return replace(exchange, body={**exchange.body, "expires_at": later.isoformat()})


def missing_fields(exchange: RecordedExchange) -> list[tuple[str, RecordedExchange]]:
    """(field, copy without it) for each field of the answer (the first item's, for a list)."""
    body = exchange.body
    target = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else body
    if not isinstance(target, dict):
        return []
    copies = []
    for key in target:
        mutated = copy.deepcopy(body)
        del (mutated[0] if isinstance(mutated, list) else mutated)[key]
        copies.append((key, replace(exchange, body=mutated)))
    return copies


MUTATIONS: dict[str, Mutation] = {
    "extra granted permission": extra_granted_permission,
    "500 with a plain-text body": plain_text_500,
    "changed detail": changed_detail,
    "expires_at an hour off": expires_an_hour_off,
}


def mutants(exchange: RecordedExchange) -> list[tuple[str, RecordedExchange]]:
    """(mutation name, faulty copy) for every mutation that applies to ``exchange``."""
    found = [(name, mutated) for name, mutate in MUTATIONS.items() if (mutated := mutate(exchange)) is not None]
    return found + [(f"missing field {key}", mutated) for key, mutated in missing_fields(exchange)]


# --- internals ----------------------------------------------------------------------------------------


def _permission_holders(body: Any) -> list[dict[str, Any]]:
    """The dicts in ``body`` that carry a ``permissions`` dict next to their ``role``."""
    found: list[dict[str, Any]] = []
    if isinstance(body, dict):
        if isinstance(body.get("permissions"), dict) and "role" in body:
            found.append(body)
        for value in body.values():
            found += _permission_holders(value)
    elif isinstance(body, list):
        for item in body:
            found += _permission_holders(item)
    return found


def _timestamps(body: Any) -> list[str]:
    if isinstance(body, dict):
        own = [value for key, value in body.items() if key in TIMESTAMP_FIELDS and isinstance(value, str)
               and not value.startswith(PLACEHOLDER_PREFIX)]
        return own + [stamp for value in body.values() for stamp in _timestamps(value)]
    if isinstance(body, list):
        return [stamp for item in body for stamp in _timestamps(item)]
    return []
