"""Unit tests of contracts/: pure checks over hand-built httpx responses (no network)."""

from __future__ import annotations

import pickle
import secrets
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from contracts import (
    BOARD_ROLES,
    NO_MEMBERSHIP_PERMISSIONS,
    PERMISSION_NAMES,
    ROLE_PERMISSIONS,
    ContractViolation,
    ContractViolations,
    check_auth,
    check_denied,
    check_health,
    check_invite_created,
    check_joined,
    check_me,
    check_member_removed,
    check_members,
    check_permissions_equal,
    check_permissions_include,
    check_status,
    check_unauthenticated,
    granted_permissions,
    invite_token,
    permissions_for,
    quote_body,
    raise_violations,
    roles_with,
    run_all,
)

BASE = "http://10.0.0.5:8000"
INVITES_URL = f"{BASE}/api/boards/board_001/invites"
NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
# A fixed token-shaped value, so leaks are easy to spot in messages.
TOKEN = "Zq3" + "x" * 37 + "_-A"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI3In0.c2lnbmF0dXJl"


def respond(status: int, method: str = "GET", url: str = f"{BASE}/api/me", **body: Any) -> httpx.Response:
    """A response as httpx would hand it to a check, with its request attached."""
    return httpx.Response(status, request=httpx.Request(method, url), **body)


def first_line(violation: pytest.ExceptionInfo[ContractViolation]) -> str:
    return str(violation.value).splitlines()[0]


def invite_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "invite_url": f"{BASE}/board/board_001/join?token={TOKEN}",
        "expires_at": (NOW + timedelta(hours=1)).replace(tzinfo=None).isoformat(),
        "role": "friend",
    }
    return {**body, **overrides}


def me_body(**overrides: Any) -> dict[str, Any]:
    body = {"id": 7, "username": "smoke_ab12", "real_name": "Smoke Test", "verified": False, "role": "Participant"}
    body |= {"reputation": 0, "created_at": "2025-03-01T11:59:58.123456", "board_membership": None}
    return {**body, "experience_balance": 0, **overrides}


def member_body(user_id: int, joined_at: str, role: str = "friend") -> dict[str, Any]:
    names = {"username": f"user{user_id}", "real_name": f"User {user_id}"}
    permissions = granted_permissions(role)
    return {"id": user_id + 100, "user_id": user_id, **names, "role": role, "permissions": permissions, "joined_at": joined_at}


# --- accepted tolerances -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"status": "healthy", "database": "connected"},
        {"status": "healthy", "database": "connected", "version": "1.4.2"},
        {"status": "healthy", "database": "connected", "uptime_s": 12, "build": {"sha": "abc"}},
    ],
)
def test_health_accepts_optional_version_and_extra_fields(body: dict[str, Any]) -> None:
    health = check_health(respond(200, url=f"{BASE}/api/health", json=body))
    assert (health.status, health.database, health.version) == ("healthy", "connected", body.get("version"))


@pytest.mark.parametrize(
    ("status", "detail"),
    [(403, "Not authenticated"), (403, "Invalid authentication credentials"), (401, "Invalid authentication credentials")],
)
def test_unauthenticated_accepts_401_and_403(status: int, detail: str) -> None:
    check_unauthenticated(respond(status, json={"detail": detail}))


@pytest.mark.parametrize("created_at", ["2025-03-01T11:59:58", "2025-03-01 11:59:58.5", "2025-03-01T20:59:58+09:00"])
def test_me_accepts_naive_and_aware_timestamps_and_extra_fields(created_at: str) -> None:
    me = check_me(respond(200, json=me_body(created_at=created_at, avatar="x.png")))
    assert me.created_at.replace(tzinfo=None).minute == 59
    assert me.model_extra == {"avatar": "x.png"}


def test_me_accepts_a_membership_with_permissions() -> None:
    membership = {"id": 3, "role": "owner", "permissions": granted_permissions("owner")}
    me = check_me(respond(200, json=me_body(board_membership=membership)))
    assert me.board_membership is not None and me.board_membership.role == "owner"


@pytest.mark.parametrize(
    "expires_at",
    ["2025-03-01T13:00:30", "2025-03-01T13:00:30.123456", "2025-03-01T13:00:30+00:00", "2025-03-01T22:00:30+09:00"],
)
def test_invite_accepts_naive_utc_and_aware_expiry(expires_at: str) -> None:
    invite = check_invite_created(
        respond(200, "POST", INVITES_URL, json=invite_body(expires_at=expires_at)),
        now_utc=NOW,
        expected_role="friend",
    )
    assert invite_token(invite.invite_url) == TOKEN


@pytest.fixture
def runner_in_tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The runner's local time zone is UTC+9 for the duration of the test."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("runner_in_tokyo")
def test_invite_expiry_check_ignores_the_runner_time_zone() -> None:
    assert time.localtime().tm_gmtoff == 9 * 3600  # the fixture really moved the runner
    now = datetime.now(timezone.utc)
    naive_utc = (now + timedelta(hours=1)).replace(tzinfo=None).isoformat()  # what the service writes
    invite = check_invite_created(
        respond(200, "POST", INVITES_URL, json=invite_body(expires_at=naive_utc)), now_utc=now, expected_role="friend"
    )
    assert invite.role == "friend"


def test_members_accepts_newest_first_with_mixed_timestamps() -> None:
    body = [
        member_body(3, "2025-03-01T12:00:00"),
        member_body(2, "2025-03-01T20:00:00+09:00", role="organizer"),  # 11:00 UTC
        member_body(1, "2025-03-01T10:00:00", role="owner"),
    ]
    members = check_members(respond(200, url=f"{BASE}/api/boards/board_001/members", json=body))
    assert [member.user_id for member in members] == [3, 2, 1]


def test_auth_and_join_and_removal_return_their_bodies() -> None:
    auth = check_auth(
        respond(200, "POST", f"{BASE}/api/auth/login", json={"token": JWT, "user_id": 7, "username": "a", "x": 1}),
        username="a",
    )
    joined = check_joined(
        respond(200, "POST", f"{BASE}/api/boards/board_001/join", json={"message": "Successfully joined board", "role": "reviewer"}),
        "reviewer",
    )
    removed = check_member_removed(
        respond(200, "DELETE", f"{BASE}/api/boards/board_001/members/7", json={"message": "Member removed successfully"})
    )
    assert (auth.user_id, joined.role, removed.message) == (7, "reviewer", "Member removed successfully")


def test_status_and_detail_pass_when_they_match() -> None:
    response = respond(403, "POST", INVITES_URL, json={"detail": "No permission to create invites"})
    check_status(response, 403, "No permission to create invites")
    check_status(response, {400, 403})
    check_denied(response, "No permission to create invites")


# --- violations: exact first lines ---------------------------------------------------------


def test_denied_but_granted_is_a_security_violation() -> None:
    response = respond(201, "POST", INVITES_URL, json=invite_body())
    with pytest.raises(ContractViolation) as caught:
        check_denied(response, "No permission to create invites", task="3f2a")
    assert first_line(caught) == (
        "SECURITY: permission granted that must be denied: POST http://10.0.0.5:8000/api/boards/board_001/invites "
        '[task 3f2a]: expected 403 "No permission to create invites", got 201'
    )
    assert (caught.value.security, caught.value.status, caught.value.task) == (True, 201, "3f2a")
    assert (caught.value.method, caught.value.check) == ("POST", "status")


def test_denied_with_another_detail_is_not_a_security_violation() -> None:
    response = respond(403, "POST", INVITES_URL, json={"detail": "Not authenticated"})
    with pytest.raises(ContractViolation) as caught:
        check_denied(response, "No permission to create invites", task="3f2a")
    assert first_line(caught) == (
        'POST http://10.0.0.5:8000/api/boards/board_001/invites [task 3f2a]: expected 403 "No permission to create invites", '
        'got 403 "Not authenticated"'
    )
    assert caught.value.security is False


def test_a_500_where_a_4xx_was_expected_quotes_the_plain_text_body() -> None:
    response = respond(500, "DELETE", f"{BASE}/api/boards/board_001/members/999", text="Internal Server Error")
    with pytest.raises(ContractViolation) as caught:
        check_status(response, 404, "Member not found", task="9c1d")
    lines = str(caught.value).splitlines()
    assert lines[0] == (
        "DELETE http://10.0.0.5:8000/api/boards/board_001/members/999 [task 9c1d]: "
        'expected 404 "Member not found", got 500 "Internal Server Error"'
    )
    assert lines[1] == "  response body (text/plain; charset=utf-8): Internal Server Error"
    assert caught.value.security is False


def test_unauthenticated_request_accepted_is_a_security_violation() -> None:
    with pytest.raises(ContractViolation) as caught:
        check_unauthenticated(respond(200, json=me_body()), task="3f2a")
    assert first_line(caught) == (
        "SECURITY: request without credentials was accepted: GET http://10.0.0.5:8000/api/me [task 3f2a]: "
        "expected 401 or 403, got 200"
    )
    assert caught.value.security is True
    with pytest.raises(ContractViolation) as caught:
        check_unauthenticated(respond(500, text="Internal Server Error"))
    assert first_line(caught) == 'GET http://10.0.0.5:8000/api/me: expected 401 or 403, got 500 "Internal Server Error"'
    assert caught.value.security is False


def test_status_detail_mismatch_names_both_details() -> None:
    response = respond(400, "POST", f"{BASE}/api/boards/board_001/join", json={"detail": "Already a board member"})
    with pytest.raises(ContractViolation) as caught:
        check_status(response, 400, "Invite expired or already used")
    assert first_line(caught) == (
        'POST http://10.0.0.5:8000/api/boards/board_001/join: expected 400 "Invite expired or already used", '
        'got 400 "Already a board member"'
    )
    assert caught.value.check == "detail"
    response = respond(422, "POST", f"{BASE}/api/auth/register", json={"detail": [{"loc": ["body", "email"]}]})
    with pytest.raises(ContractViolation) as caught:
        check_status(response, 422, "Username already exists")
    assert first_line(caught) == f'POST {BASE}/api/auth/register: expected 422 "Username already exists", got 422 without a detail string'


@pytest.mark.parametrize(
    ("status", "path", "detail"),
    [(503, "/api/health", "Health check failed: could not connect"), (404, "/health", "Not Found")],
)
def test_health_failure_quotes_the_status_and_detail(status: int, path: str, detail: str) -> None:
    with pytest.raises(ContractViolation) as caught:
        check_health(respond(status, url=f"{BASE}{path}", json={"detail": detail}), task="3f2a")
    assert first_line(caught) == (
        f'GET {BASE}{path} [task 3f2a]: expected 200 healthy, database connected, got {status} "{detail}"'
    )
    # A 404 most likely means the configured health path is not the one this build serves.
    assert ("only /api/health" in str(caught.value)) is (status == 404)


def test_health_reports_every_wrong_field_together() -> None:
    response = respond(200, url=f"{BASE}/api/health", json={"status": "degraded", "database": "disconnected"})
    with pytest.raises(ContractViolations) as caught:
        check_health(response, task="3f2a")
    assert str(caught.value).splitlines() == [
        "GET http://10.0.0.5:8000/api/health [task 3f2a]: 2 contract violations",
        '  1. [schema] expected body.status per HealthBody (Input should be \'healthy\'), got "degraded"',
        "  2. [schema] expected body.database per HealthBody (Input should be 'connected'), got \"disconnected\"",
    ]
    assert [violation.check for violation in caught.value.violations] == ["schema", "schema"]


def test_health_that_is_not_json() -> None:
    response = respond(200, url=f"{BASE}/api/health", text="<html>ok</html>", headers={"content-type": "text/html"})
    with pytest.raises(ContractViolation) as caught:
        check_health(response)
    assert first_line(caught) == "GET http://10.0.0.5:8000/api/health: expected a JSON HealthBody body, got text/html: <html>ok</html>"


def test_auth_body_with_wrong_types_and_a_missing_field() -> None:
    response = respond(200, "POST", f"{BASE}/api/auth/register", json={"token": 12345, "user_id": "7"})
    with pytest.raises(ContractViolations) as caught:
        check_auth(response)
    assert str(caught.value).splitlines()[1:] == [
        "  1. [schema] expected body.token per AuthBody (Input should be a valid string), got ***",
        '  2. [schema] expected body.user_id per AuthBody (Input should be a valid integer), got "7"',
        "  3. [schema] expected body.username (required by AuthBody), got no such field (fields: token, user_id)",
    ]


def test_auth_token_that_is_not_jwt_shaped_is_described_without_quoting_it() -> None:
    response = respond(200, "POST", f"{BASE}/api/auth/login", json={"token": "opaque-secret-value", "user_id": 7, "username": "a"})
    with pytest.raises(ContractViolation) as caught:
        check_auth(response)
    assert first_line(caught) == (
        "POST http://10.0.0.5:8000/api/auth/login: expected body.token JWT-shaped (3 non-empty base64url parts "
        "joined by '.'), got a token of 19 chars in 1 part(s)"
    )
    assert "opaque-secret-value" not in str(caught.value)


def test_me_rejects_numbers_where_the_contract_says_bool_or_iso_text() -> None:
    response = respond(200, json=me_body(verified=0, created_at=1740830400))
    with pytest.raises(ContractViolations) as caught:
        check_me(response)
    assert str(caught.value).splitlines()[1:] == [
        "  1. [schema] expected body.verified per Me (Input should be a valid boolean), got 0",
        "  2. [schema] expected body.created_at per Me (expected an ISO-8601 datetime string), got 1740830400",
    ]


TOKEN_RULE = "expected invite_url token= of 43 URL-safe chars [A-Za-z0-9_-] (secrets.token_urlsafe(32)), got"


@pytest.mark.parametrize(
    ("invite_url", "expected_line"),
    [
        (f"{BASE}/board/board_002/join?token={TOKEN}", "expected invite_url path /board/board_001/join, got /board/board_002/join"),
        (f"{BASE}/board/board_001/join?token={TOKEN[:20]}", f"{TOKEN_RULE} a token of 20 chars"),
        (f"{BASE}/board/board_001/join?token={TOKEN[:42]}%2B", f"{TOKEN_RULE} a token of 43 chars with characters outside [A-Za-z0-9_-]"),
        (f"{BASE}/board/board_001/join", f"{TOKEN_RULE} 0 token= values in the query"),
    ],
)
def test_invite_url_violations(invite_url: str, expected_line: str) -> None:
    response = respond(200, "POST", INVITES_URL, json=invite_body(invite_url=invite_url))
    with pytest.raises(ContractViolation) as caught:
        check_invite_created(response, now_utc=NOW, expected_role="friend", task="3f2a")
    assert first_line(caught) == f"POST {INVITES_URL} [task 3f2a]: {expected_line}"
    assert TOKEN[:20] not in str(caught.value)


def test_invite_expiry_off_by_a_time_zone_is_named() -> None:
    local_tokyo = (NOW + timedelta(hours=10)).replace(tzinfo=None).isoformat()  # local time written as if UTC
    response = respond(200, "POST", INVITES_URL, json=invite_body(expires_at=local_tokyo))
    with pytest.raises(ContractViolation) as caught:
        check_invite_created(response, now_utc=NOW, expected_role="friend")
    assert str(caught.value).splitlines() == [
        f"POST {INVITES_URL}: expected expires_at within 120s of 2025-03-01T13:00:00+00:00 (now + 1h), "
        "got 2025-03-01T22:00:00 (naive, read as UTC), 9.00h late",
        "  hint: off by a whole 9h, the mark of local time written or read as UTC",
    ]


def test_invite_expiry_at_the_service_default_says_expires_hours_was_ignored() -> None:
    default_expiry = (NOW + timedelta(hours=48)).replace(tzinfo=None).isoformat()
    response = respond(200, "POST", INVITES_URL, json=invite_body(expires_at=default_expiry))
    with pytest.raises(ContractViolation) as caught:
        check_invite_created(response, now_utc=NOW, expected_role="friend")
    assert "expires_hours was ignored" in str(caught.value)
    assert "local time" not in str(caught.value)


def test_invite_reports_role_and_expiry_together() -> None:
    early = (NOW + timedelta(minutes=30)).isoformat()
    response = respond(200, "POST", INVITES_URL, json=invite_body(expires_at=early, role="organizer"))
    with pytest.raises(ContractViolations) as caught:
        check_invite_created(response, now_utc=NOW, expected_role="friend", task="3f2a")
    assert str(caught.value).splitlines() == [
        f"POST {INVITES_URL} [task 3f2a]: 2 contract violations",
        "  1. [expires_at] expected expires_at within 120s of 2025-03-01T13:00:00+00:00 (now + 1h), "
        "got 2025-03-01T12:30:00+00:00 (aware), 1800s early",
        "  2. [role] expected body.role 'friend', got 'organizer'",
    ]


def test_invite_check_refuses_a_naive_now_and_an_unknown_role() -> None:
    response = respond(200, "POST", INVITES_URL, json=invite_body())
    with pytest.raises(ValueError, match="timezone-aware"):
        check_invite_created(response, now_utc=NOW.replace(tzinfo=None), expected_role="friend")
    with pytest.raises(ValueError, match="known roles: owner, organizer"):
        check_invite_created(response, now_utc=NOW, expected_role="Friend")


def test_joined_with_the_wrong_role_and_message() -> None:
    response = respond(200, "POST", f"{BASE}/api/boards/board_001/join", json={"message": "ok", "role": "owner"})
    with pytest.raises(ContractViolations) as caught:
        check_joined(response, "friend", task="3f2a")
    assert str(caught.value).splitlines()[1:] == [
        "  1. [message] expected body.message 'Successfully joined board', got 'ok'",
        "  2. [role] expected body.role 'friend', got 'owner'",
    ]


def test_members_out_of_order_and_with_a_bad_entry() -> None:
    url = f"{BASE}/api/boards/board_001/members"
    oldest_first = [member_body(1, "2025-03-01T10:00:00"), member_body(2, "2025-03-01T11:00:00")]
    with pytest.raises(ContractViolation) as caught:
        check_members(respond(200, url=url, json=oldest_first))
    assert first_line(caught) == (
        f"GET {url}: expected members newest first (joined_at not increasing), "
        "got body[0].joined_at 2025-03-01T10:00:00 before body[1].joined_at 2025-03-01T11:00:00"
    )
    bad_role = [member_body(1, "2025-03-01T10:00:00") | {"role": "admin"}]
    with pytest.raises(ContractViolation) as caught:
        check_members(respond(200, url=url, json=bad_role))
    assert first_line(caught) == (
        f"GET {url}: expected body[0].role per list[Member] (Input should be 'owner', 'organizer', 'reviewer', "
        "'friend' or 'participant'), got \"admin\""
    )


def test_member_removed_with_another_message() -> None:
    response = respond(200, "DELETE", f"{BASE}/api/boards/board_001/members/7", json={"message": "Deleted"})
    with pytest.raises(ContractViolation) as caught:
        check_member_removed(response)
    assert first_line(caught) == (
        f"DELETE {BASE}/api/boards/board_001/members/7: expected body.message 'Member removed successfully', got 'Deleted'"
    )


# --- permissions -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", BOARD_ROLES)
def test_each_role_as_the_service_sends_it_passes_granted_only(role: str) -> None:
    check_permissions_equal(granted_permissions(role), role)
    assert all(value is True for value in granted_permissions(role).values())


@pytest.mark.parametrize("role", BOARD_ROLES)
def test_a_permission_listed_as_false_or_absent_is_not_granted(role: str) -> None:
    check_permissions_equal({**ROLE_PERMISSIONS[role], "beta_feature": False}, role)


def test_the_recorded_participant_and_owner_dicts_pass() -> None:
    check_permissions_equal({"view_board": True, "claim_quest": True, "submit_work": True}, "participant")
    owner = dict.fromkeys(["view_board", "create_quest", "edit_any_quest", "delete_any_quest", "verify_quest",
                           "manage_members", "create_invites", "view_analytics"], True)
    check_permissions_equal(owner, "owner")


def test_permission_granted_beyond_the_role_is_a_security_violation() -> None:
    actual = {**granted_permissions("participant"), "create_invites": True, "submit_work": False, "admin": True}
    del actual["view_board"]
    with pytest.raises(ContractViolation) as caught:
        check_permissions_equal(actual, "participant", task="3f2a", method="GET", url=f"{BASE}/api/me")
    assert first_line(caught) == (
        "SECURITY: permission granted that must be denied: GET http://10.0.0.5:8000/api/me [task 3f2a]: "
        "expected permissions of role 'participant', got create_invites granted (must not be), "
        "admin granted (must not be), view_board absent (must be granted), submit_work=false (must be granted)"
    )
    assert caught.value.security is True


def test_permission_withheld_is_not_a_security_violation() -> None:
    response = respond(200, json=me_body())
    owner = granted_permissions("owner")
    del owner["manage_members"]
    with pytest.raises(ContractViolation) as caught:
        check_permissions_equal(owner, "owner", response=response)
    assert first_line(caught) == (
        "GET http://10.0.0.5:8000/api/me: expected permissions of role 'owner', got manage_members absent (must be granted)"
    )
    assert (caught.value.security, caught.value.status) == (False, 200)


def test_permissions_include() -> None:
    check_permissions_include(granted_permissions("organizer"), ["create_invites", "view_board"])
    with pytest.raises(ContractViolation) as caught:
        check_permissions_include({"create_invites": False}, ["create_invites", "manage_members"])
    assert first_line(caught) == (
        "<no request>: expected permissions to include create_invites, manage_members, "
        "got create_invites=false, manage_members absent"
    )
    with pytest.raises(ValueError, match="unknown permissions"):
        check_permissions_include({}, ["manage_everything"])


def test_role_table_matches_the_documented_columns() -> None:
    assert all(tuple(row) == PERMISSION_NAMES for row in ROLE_PERMISSIONS.values())
    assert len(PERMISSION_NAMES) == 12
    assert roles_with("create_invites") == ("owner", "organizer")
    assert roles_with("manage_members") == ("owner",)
    assert roles_with("claim_quest") == ("friend", "participant")
    assert roles_with("verify_quest") == ("owner", "organizer", "reviewer", "friend")
    assert roles_with("comment_on_quest") == ("reviewer",)
    assert [name for name, granted in NO_MEMBERSHIP_PERMISSIONS.items() if granted] == ["view_board", "claim_quest", "submit_work"]
    copy = permissions_for("owner")
    copy["manage_members"] = False
    assert ROLE_PERMISSIONS["owner"]["manage_members"] is True
    with pytest.raises(ValueError, match="known roles"):
        permissions_for("admin")


# --- secrets never appear ----------------------------------------------------------------------


def test_secret_values_in_a_body_never_reach_the_message() -> None:
    password, access = "hunter2-secret", secrets.token_urlsafe(16)
    body = {
        "token": JWT,
        "password": password,
        "access_token": access,
        "invite_url": f"{BASE}/board/board_001/join?token={TOKEN}",
        "nested": [{"Token": TOKEN}],
    }
    response = respond(201, "POST", INVITES_URL, json=body)
    with pytest.raises(ContractViolation) as caught:
        check_denied(response, "No permission to create invites")
    message = str(caught.value)
    for secret in (JWT, password, access, TOKEN, TOKEN[:20]):
        assert secret not in message
    assert '"token": "***"' in message and '"invite_url": "***"' in message


def test_secrets_in_plain_text_and_urls_are_scrubbed() -> None:
    text = f"boom: Authorization: Bearer {JWT} for {BASE}/board/board_001/join?token={TOKEN}&x=1"
    response = respond(500, "GET", f"{BASE}/board/board_001/join?token={TOKEN}", text=text)
    with pytest.raises(ContractViolation) as caught:
        check_status(response, 200)
    message = str(caught.value)
    assert JWT not in message and TOKEN not in message
    assert first_line(caught).startswith(f"GET {BASE}/board/board_001/join?token=***: expected 200, got 500")
    assert "Bearer ***" in message and "token=***&x=1" in message


def test_a_database_password_in_a_health_detail_is_masked() -> None:
    detail = "Health check failed: could not connect to postgresql://civic:pg-Pa55word@db.internal:5432/board"
    with pytest.raises(ContractViolation) as caught:
        check_health(respond(503, url=f"{BASE}/api/health", json={"detail": detail}))
    assert "pg-Pa55word" not in str(caught.value)
    assert first_line(caught).endswith('got 503 "Health check failed: could not connect to postgresql://civic:***@db.internal:5432/board"')


def test_quoted_bodies_are_cut_to_about_300_chars() -> None:
    response = respond(500, text="x" * 5000)
    quoted = quote_body(response)
    assert quoted.startswith("x" * 300) and quoted.endswith("... (5000 chars)")
    assert len(quoted) < 330


def test_a_body_that_is_not_valid_json_still_hides_secret_fields() -> None:
    # Truncated JSON (a proxy cut it) cannot be parsed, so the text scrubber must catch the field.
    response = respond(500, text='{"detail": "x", "token": "' + TOKEN + '"' + " " * 10)
    assert TOKEN[:10] not in quote_body(response, limit=40)


# --- grouping and plumbing ---------------------------------------------------------------------


def test_run_all_reports_every_failure_of_one_response_together() -> None:
    response = respond(403, "POST", INVITES_URL, json={"detail": "Not authenticated"})
    with pytest.raises(ContractViolations) as caught:
        run_all(
            lambda: check_status(response, 403),
            lambda: check_status(response, 403, "No permission to create invites"),
            lambda: check_status(response, 401),
        )
    assert str(caught.value).splitlines() == [
        f"POST {INVITES_URL}: 2 contract violations",
        '  1. [detail] expected 403 "No permission to create invites", got 403 "Not authenticated"',
        '     response body (application/json): {"detail": "Not authenticated"}',
        '  2. [status] expected 401, got 403 "Not authenticated"',
        '     response body (application/json): {"detail": "Not authenticated"}',
    ]
    assert caught.value.status == 403 and caught.value.security is False


def test_group_across_requests_keeps_each_location_and_counts_security() -> None:
    granted = respond(200, "POST", INVITES_URL, json=invite_body())
    broken = respond(500, "GET", f"{BASE}/api/me", text="Internal Server Error")
    with pytest.raises(ContractViolations) as caught:
        run_all(lambda: check_denied(granted, "No permission to create invites"), lambda: check_me(broken))
    lines = str(caught.value).splitlines()
    assert lines[0] == (
        "SECURITY: permission granted that must be denied: several requests: 2 contract violations (1 of them security)"
    )
    assert lines[1].startswith(f"  1. SECURITY: permission granted that must be denied: POST {INVITES_URL}: expected 403")
    assert any(line.startswith(f"  2. GET {BASE}/api/me: expected 200 Me, got 500") for line in lines)
    assert run_all(lambda: 1, lambda: "two") == [1, "two"]


def test_raise_violations_flattens_groups_and_needs_something_to_group() -> None:
    one = ContractViolation(check="a", expected="x", actual="y")
    two = ContractViolation(check="b", expected="x", actual="z")
    raise_violations([])
    with pytest.raises(ContractViolation) as single:
        raise_violations([one])
    assert single.value is one
    with pytest.raises(ContractViolations) as grouped:
        raise_violations([ContractViolations([one, two]), one])
    assert len(grouped.value.violations) == 3
    with pytest.raises(ValueError, match="at least two"):
        ContractViolations([one])


def test_violations_are_assertion_errors_and_survive_pickling() -> None:
    response = respond(201, "POST", INVITES_URL, json=invite_body())
    with pytest.raises(AssertionError) as caught:
        check_denied(response, "No permission to create invites", task="3f2a")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert str(copy) == str(caught.value) and copy.security is True
    group = ContractViolations([caught.value, ContractViolation(check="b", expected="x", actual="y")])
    assert str(pickle.loads(pickle.dumps(group))) == str(group)


def test_invite_token_helper() -> None:
    assert invite_token(f"{BASE}/board/board_001/join?token={TOKEN}") == TOKEN
    with pytest.raises(ValueError, match="0 token= values") as caught:
        invite_token(f"{BASE}/board/board_001/join?password=hunter2")
    assert "hunter2" not in str(caught.value)
