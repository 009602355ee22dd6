"""Pure contract checks over ``httpx.Response`` objects.

Every check runs all of its sub-checks on the response and raises one
:class:`~contracts.errors.ContractViolation` (or a group of them) naming expected vs
actual, the request's method and URL, the status and the task; otherwise it returns
the parsed body. No check performs I/O, reads the clock or the environment: the
caller passes ``now_utc`` and the task id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from contracts.errors import (
    REDACTED,
    SECRET_KEYS,
    SECURITY_NO_CREDENTIALS,
    SECURITY_PERMISSION_GRANTED,
    ContractViolation,
    describe_status,
    quote_body,
    raise_violations,
    request_of,
    scrub_json,
    scrub_text,
    scrub_url,
)
from contracts.models import (
    AuthBody,
    HealthBody,
    InviteCreated,
    JoinResult,
    Me,
    Member,
    MessageBody,
    as_utc,
)
from contracts.roles import BOARD_ROLES, PERMISSION_NAMES, ROLE_PERMISSIONS

T = TypeVar("T")

INVITE_TOKEN_LENGTH = 43  # secrets.token_urlsafe(32)
TOKEN_ALPHABET = "[A-Za-z0-9_-]"
INVITE_TOKEN_PATTERN = re.compile(rf"{TOKEN_ALPHABET}{{{INVITE_TOKEN_LENGTH}}}")
HEALTHY = "200 healthy, database connected"
JOIN_MESSAGE = "Successfully joined board"
REMOVED_MESSAGE = "Member removed successfully"
SERVICE_DEFAULT_INVITE_HOURS = 48
DEFAULT_INVITE_TOLERANCE_S = 120
MAX_UTC_OFFSET_HOURS = 14  # the widest time zone offset (UTC+14)
_BOARD_IN_INVITES_PATH = re.compile(r"/boards/([^/]+)/invites/?$")
_BASE64URL_PART = re.compile(r"[A-Za-z0-9_-]+")
_MEMBERS = TypeAdapter(list[Member])


# --- status checks -----------------------------------------------------------------------


def check_status(
    response: httpx.Response,
    expected: int | Collection[int],
    detail: str | None = None,
    *,
    task: str | None = None,
) -> None:
    """The status is ``expected`` (one or any of several) and, if given, ``detail`` matches exactly."""
    __tracebackhide__ = True
    raise_violations(_status_violations(response, _statuses(expected), detail, task))


def check_denied(response: httpx.Response, detail: str, *, task: str | None = None) -> None:
    """A refused action: 403 with exactly ``detail``; any 2xx is a security violation."""
    __tracebackhide__ = True
    if response.is_success:
        raise _status_violation(response, {403}, detail, task, security_reason=SECURITY_PERMISSION_GRANTED)
    raise_violations(_status_violations(response, {403}, detail, task))


def check_unauthenticated(response: httpx.Response, *, task: str | None = None) -> None:
    """A request without (valid) credentials: 401 or 403; any 2xx is a security violation.

    The service answers 403 "Not authenticated" without a header and 401 for a bad
    token; both are a refusal, so both pass.
    """
    __tracebackhide__ = True
    if response.is_success:
        raise _status_violation(response, {401, 403}, None, task, security_reason=SECURITY_NO_CREDENTIALS)
    raise_violations(_status_violations(response, {401, 403}, None, task))


# --- body checks ---------------------------------------------------------------------------


def check_rejected_input(response: httpx.Response, *locations: tuple[str | int, ...],
                         task: str | None = None) -> None:
    """A request the service's validation refused: 422 with a pydantic 2 ``detail`` list.

    Each item carries ``type``, ``loc`` and ``msg`` (the real service adds ``input`` and
    ``url``); every location in ``locations`` (e.g. ``("body", "password")``) is among them.
    """
    __tracebackhide__ = True
    if response.status_code != 422:
        raise _status_violation(response, {422}, None, task, expected="422 with a validation error list")
    payload = _json_or_none(response)
    items = payload.get("detail") if isinstance(payload, dict) else None
    shaped = isinstance(items, list) and bool(items) and all(
        isinstance(item, dict) and {"type", "loc", "msg"} <= item.keys() and isinstance(item["loc"], list)
        for item in items
    )
    if not shaped:
        raise _violation(response, "validation", "body.detail a list of {type, loc, msg} items",
                         f"body {quote_body(response, limit=120)}", task)
    found = {tuple(item["loc"]) for item in items}
    missing = [location for location in locations if tuple(location) not in found]
    if missing:
        expected = "validation errors at " + ", ".join(".".join(map(str, loc)) for loc in locations)
        actual = "errors at " + ", ".join(".".join(map(str, loc)) for loc in sorted(found, key=str))
        raise _violation(response, "validation", expected, actual, task)


def check_health(response: httpx.Response, *, task: str | None = None) -> HealthBody:
    """``GET <health path>`` → 200 ``{"status": "healthy", "database": "connected"}``."""
    __tracebackhide__ = True
    if response.status_code == 404:
        hint = "hint: this build may not serve this health path (some serve only /api/health)"
        raise _status_violation(response, {200}, None, task, expected=HEALTHY, hints=[hint])
    body, violations = _parse(response, HealthBody, task=task, expected_text=HEALTHY)
    raise_violations(violations)
    assert body is not None
    return body


def check_auth(response: httpx.Response, *, username: str | None = None, task: str | None = None) -> AuthBody:
    """Register/login → 200 ``{token, user_id, username}``; the token is JWT-shaped (never quoted)."""
    __tracebackhide__ = True
    body, violations = _parse(response, AuthBody, task=task)
    if body is not None:
        parts = body.token.split(".")
        if len(parts) != 3 or not all(_BASE64URL_PART.fullmatch(part) for part in parts):
            violations.append(
                _violation(
                    response,
                    "token",
                    "body.token JWT-shaped (3 non-empty base64url parts joined by '.')",
                    f"a token of {len(body.token)} chars in {len(parts)} part(s)",
                    task,
                )
            )
        if username is not None and body.username != username:
            violations.append(_field_violation(response, "username", username, body.username, task))
    raise_violations(violations)
    assert body is not None
    return body


def check_me(response: httpx.Response, *, task: str | None = None) -> Me:
    """``GET /api/me`` → 200 profile with ``board_membership`` null or ``{id, role, permissions}``."""
    __tracebackhide__ = True
    body, violations = _parse(response, Me, task=task)
    raise_violations(violations)
    assert body is not None
    return body


def check_membership(response: httpx.Response, role: str | None, *, task: str | None = None) -> Me:
    """``GET /api/me`` → 200 whose ``board_membership`` is ``role`` with exactly its permissions.

    ``role=None``: not a member, so ``board_membership`` is null (the real service shows
    null, never the participant fallback permissions). /api/me reports board_001 only.
    """
    __tracebackhide__ = True
    me = check_me(response, task=task)
    membership = me.board_membership
    if role is None:
        if membership is not None:
            raise _violation(response, "membership", "board_membership null (not a member)",
                             f"a membership with role {membership.role!r}", task)
        return me
    if membership is None or membership.role != role:
        actual = "board_membership null" if membership is None else f"role {membership.role!r}"
        raise _violation(response, "membership", f"board_membership with role {role!r}", actual, task)
    check_permissions_equal(membership.permissions, role, response=response, task=task)
    return me


def check_invite_created(
    response: httpx.Response,
    *,
    now_utc: datetime,
    expected_role: str,
    expires_hours: float = 1,
    tolerance_s: float = DEFAULT_INVITE_TOLERANCE_S,
    board_id: str | None = None,
    task: str | None = None,
) -> InviteCreated:
    """Invite creation → 200 with a join URL, a 43-char URL-safe token, the role and the expiry.

    ``now_utc`` is the caller's aware "now"; a naive ``expires_at`` is read as UTC (the
    real service writes naive UTC), never as local time, so the runner's time zone
    does not matter. ``board_id`` defaults to the one in the request path.
    """
    __tracebackhide__ = True
    if now_utc.tzinfo is None or now_utc.utcoffset() is None:
        raise ValueError("now_utc must be timezone-aware, e.g. datetime.now(timezone.utc)")
    if expected_role not in BOARD_ROLES:
        raise ValueError(f"unknown board role {expected_role!r}; known roles: {', '.join(BOARD_ROLES)}")
    body, violations = _parse(response, InviteCreated, task=task)
    if body is not None:
        board = board_id if board_id is not None else _board_of_invites_request(response)
        violations += _invite_url_violations(response, body.invite_url, board, task)
        violations += _expiry_violations(response, body.expires_at, now_utc, expires_hours, tolerance_s, task)
        if body.role != expected_role:
            violations.append(_field_violation(response, "role", expected_role, body.role, task))
    raise_violations(violations)
    assert body is not None
    return body


def check_joined(response: httpx.Response, role: str, *, task: str | None = None) -> JoinResult:
    """Join → 200 ``{"message": "Successfully joined board", "role": role}``."""
    __tracebackhide__ = True
    body, violations = _parse(response, JoinResult, task=task)
    if body is not None:
        if body.message != JOIN_MESSAGE:
            violations.append(_field_violation(response, "message", JOIN_MESSAGE, body.message, task))
        if body.role != role:
            violations.append(_field_violation(response, "role", role, body.role, task))
    raise_violations(violations)
    assert body is not None
    return body


def check_members(response: httpx.Response, *, task: str | None = None) -> list[Member]:
    """Members → 200: ``{id, user_id, username, real_name, role, permissions, joined_at}`` items, newest first."""
    __tracebackhide__ = True
    members, violations = _parse(response, _MEMBERS, task=task, model_name="list[Member]")
    if members is not None:
        for index, (newer, older) in enumerate(zip(members, members[1:])):
            if as_utc(newer.joined_at) < as_utc(older.joined_at):
                violations.append(
                    _violation(
                        response,
                        "order",
                        "members newest first (joined_at not increasing)",
                        f"body[{index}].joined_at {newer.joined_at.isoformat()} before "
                        f"body[{index + 1}].joined_at {older.joined_at.isoformat()}",
                        task,
                    )
                )
                break
    raise_violations(violations)
    assert members is not None
    return members


def check_member_removed(response: httpx.Response, *, task: str | None = None) -> MessageBody:
    """Member removal → 200 ``{"message": "Member removed successfully"}``."""
    __tracebackhide__ = True
    body, violations = _parse(response, MessageBody, task=task)
    if body is not None and body.message != REMOVED_MESSAGE:
        violations.append(_field_violation(response, "message", REMOVED_MESSAGE, body.message, task))
    raise_violations(violations)
    assert body is not None
    return body


# --- permission checks -------------------------------------------------------------------------


def check_permissions_equal(
    actual: Mapping[str, bool],
    role: str,
    *,
    response: httpx.Response | None = None,
    task: str | None = None,
    method: str | None = None,
    url: str | None = None,
) -> None:
    """The permissions granted are exactly the role table's row for ``role``.

    The real service lists granted permissions only, each ``true``: a permission
    absent from the dict (or ``false``) is not granted. A permission granted that the
    role must not have (or unknown to the table) is a security violation; one the
    role must have and lacks is an ordinary violation. The location comes from
    ``response`` or from ``method``/``url``.
    """
    __tracebackhide__ = True
    if role not in ROLE_PERMISSIONS:
        raise ValueError(f"unknown board role {role!r}; known roles: {', '.join(BOARD_ROLES)}")
    table = ROLE_PERMISSIONS[role]
    granted = [name for name, value in actual.items() if value is True and not table.get(name, False)]
    lacking = [name for name in PERMISSION_NAMES if table[name] and actual.get(name) is not True]
    differences = [f"{name} granted (must not be)" for name in granted]
    differences += [f"{_not_granted(actual, name)} (must be granted)" for name in lacking]
    if differences:
        raise _located_violation(
            check="permissions",
            expected=f"permissions of role {role!r}",
            actual=", ".join(differences),
            response=response,
            task=task,
            method=method,
            url=url,
            security=bool(granted),
        )


def check_permissions_include(
    actual: Mapping[str, bool],
    names: Iterable[str],
    *,
    response: httpx.Response | None = None,
    task: str | None = None,
    method: str | None = None,
    url: str | None = None,
) -> None:
    """Each permission in ``names`` is present and true (others are not looked at)."""
    __tracebackhide__ = True
    wanted = list(names)
    unknown = [name for name in wanted if name not in PERMISSION_NAMES]
    if unknown:
        raise ValueError(f"unknown permissions {unknown}; known permissions: {', '.join(PERMISSION_NAMES)}")
    lacking = [_not_granted(actual, name) for name in wanted if actual.get(name) is not True]
    if lacking:
        raise _located_violation(
            check="permissions",
            expected=f"permissions to include {', '.join(wanted)}",
            actual=", ".join(lacking),
            response=response,
            task=task,
            method=method,
            url=url,
        )


# --- helpers for callers -----------------------------------------------------------------------


def invite_token(invite_url: str) -> str:
    """The secret ``token`` query value of an invite URL (``ValueError`` if it has none)."""
    tokens = httpx.URL(invite_url).params.get_list("token")
    if len(tokens) != 1 or not tokens[0]:
        raise ValueError(f"invite URL has {len(tokens)} token= values, expected one: {scrub_url(invite_url)}")
    return tokens[0]


def run_all(*checks: Callable[[], T]) -> list[T]:
    """Run every check (zero-argument callables), then raise all violations together.

    For several independent checks on one response: one failing check does not hide
    the others (the schemathesis way). Returns the checks' results in order.
    """
    __tracebackhide__ = True
    results: list[T] = []
    violations: list[ContractViolation] = []
    for check in checks:
        try:
            results.append(check())
        except ContractViolation as violation:
            violations.append(violation)
    raise_violations(violations)
    return results


# --- internals ---------------------------------------------------------------------------------


def _statuses(expected: int | Collection[int]) -> set[int]:
    return {expected} if isinstance(expected, int) else set(expected)


def _render_statuses(statuses: set[int]) -> str:
    ordered = [str(status) for status in sorted(statuses)]
    return ordered[0] if len(ordered) == 1 else f"{', '.join(ordered[:-1])} or {ordered[-1]}"


def _violation(
    response: httpx.Response, check: str, expected: str, actual: str, task: str | None, **extra: Any
) -> ContractViolation:
    return ContractViolation.from_response(
        response, check=check, expected=expected, actual=actual, task=task, **extra
    )


def _field_violation(
    response: httpx.Response, field: str, expected: str, actual: str, task: str | None
) -> ContractViolation:
    return _violation(response, field, f"body.{field} {expected!r}", repr(actual), task)


def _body_line(response: httpx.Response) -> str:
    content_type = response.headers.get("content-type", "no content-type")
    return f"response body ({content_type}): {quote_body(response)}"


def _status_violation(
    response: httpx.Response,
    statuses: set[int],
    detail: str | None,
    task: str | None,
    *,
    expected: str | None = None,
    security_reason: str | None = None,
    hints: Iterable[str] = (),
) -> ContractViolation:
    if expected is None:
        expected = _render_statuses(statuses) + (f' "{detail}"' if detail is not None else "")
    details = [_body_line(response), *hints]
    if response.is_server_error:
        details.append("hint: a 5xx is the service failing, not refusing: find its traceback in the task's log")
    return _violation(
        response,
        "status",
        expected,
        describe_status(response),
        task,
        security=security_reason is not None,
        security_reason=security_reason or SECURITY_PERMISSION_GRANTED,
        details=details,
    )


def _status_violations(
    response: httpx.Response, statuses: set[int], detail: str | None, task: str | None
) -> list[ContractViolation]:
    if response.status_code not in statuses:
        return [_status_violation(response, statuses, detail, task)]
    if detail is None:
        return []
    payload = _json_or_none(response)
    actual_detail = payload.get("detail") if isinstance(payload, dict) else None
    if actual_detail == detail:
        return []
    if isinstance(actual_detail, str):
        actual = describe_status(response)
    else:
        actual = f"{response.status_code} without a detail string"
    expected = f'{response.status_code} "{detail}"'
    return [_violation(response, "detail", expected, actual, task, details=[_body_line(response)])]


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return json.loads(response.text)
    except ValueError:
        return None


def _parse(
    response: httpx.Response,
    model: type[BaseModel] | TypeAdapter[Any],
    *,
    task: str | None,
    expected_text: str | None = None,
    model_name: str | None = None,
) -> tuple[Any, list[ContractViolation]]:
    """(parsed body or None, violations): status 200, a JSON body, and the model's shape."""
    name = model_name or getattr(model, "__name__", "body")
    if response.status_code != 200:
        return None, [_status_violation(response, {200}, None, task, expected=expected_text or f"200 {name}")]
    try:
        data = json.loads(response.text)
    except ValueError:
        content_type = response.headers.get("content-type", "no content-type")
        actual = f"{content_type}: {quote_body(response, limit=120)}"
        return None, [_violation(response, "json", f"a JSON {name} body", actual, task)]
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(data), []
        return model.model_validate(data), []
    except ValidationError as error:
        return None, [_schema_violation(response, name, data, item, task) for item in error.errors()]


def _schema_violation(
    response: httpx.Response, model_name: str, data: Any, error: Mapping[str, Any], task: str | None
) -> ContractViolation:
    loc = tuple(error["loc"])
    where = "body" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    if error["type"] == "missing":
        parent = _walk(data, loc[:-1])
        present = ", ".join(str(key) for key in parent) if isinstance(parent, dict) else "none"
        actual = f"no such field (fields: {present})"
        return _violation(response, "schema", f"{where} (required by {model_name})", actual, task)
    message = str(error["msg"]).removeprefix("Value error, ")
    secret = any(str(part).lower() in SECRET_KEYS for part in loc)
    actual = REDACTED if secret else _render_input(error.get("input"))
    return _violation(response, "schema", f"{where} per {model_name} ({message})", actual, task)


def _walk(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _render_input(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"{type(value).__name__} {scrub_text(json.dumps(scrub_json(value)), 80)}"
    plain = isinstance(value, (str, int, float, bool, type(None)))
    return scrub_text(json.dumps(value) if plain else repr(value), 80)


def _not_granted(actual: Mapping[str, Any], name: str) -> str:
    """``name absent`` or ``name=<value>`` for a permission that is not granted."""
    return f"{name} absent" if name not in actual else f"{name}={_json_value(actual[name])}"


def _json_value(value: Any) -> str:
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def _board_of_invites_request(response: httpx.Response) -> str | None:
    _, url = request_of(response)
    if url is None:
        return None
    found = _BOARD_IN_INVITES_PATH.search(httpx.URL(url).path)
    return found.group(1) if found else None


def _invite_url_violations(
    response: httpx.Response, invite_url: str, board_id: str | None, task: str | None
) -> list[ContractViolation]:
    shown = f"invite_url: {scrub_url(invite_url)}"
    try:
        url = httpx.URL(invite_url)
    except httpx.InvalidURL:
        expected = "body.invite_url a valid URL"
        return [_violation(response, "invite_url", expected, "an unparsable URL", task, details=[shown])]
    violations: list[ContractViolation] = []
    expected_path = f"/board/{board_id}/join" if board_id is not None else "/board/<board_id>/join"
    if board_id is not None:
        path_ok = url.path == expected_path
    else:
        path_ok = re.fullmatch(r"/board/[^/]+/join", url.path) is not None
    if not path_ok:
        expected = f"invite_url path {expected_path}"
        actual = url.path or "<empty>"
        violations.append(_violation(response, "invite_url", expected, actual, task, details=[shown]))
    tokens = url.params.get_list("token")
    problem = None
    if len(tokens) != 1:
        problem = f"{len(tokens)} token= values in the query"
    elif len(tokens[0]) != INVITE_TOKEN_LENGTH:
        problem = f"a token of {len(tokens[0])} chars"
    elif not INVITE_TOKEN_PATTERN.fullmatch(tokens[0]):
        problem = f"a token of {INVITE_TOKEN_LENGTH} chars with characters outside {TOKEN_ALPHABET}"
    if problem is not None:
        expected = f"invite_url token= of {INVITE_TOKEN_LENGTH} URL-safe chars {TOKEN_ALPHABET}"
        expected += " (secrets.token_urlsafe(32))"
        violations.append(_violation(response, "invite_token", expected, problem, task, details=[shown]))
    return violations


def _expiry_violations(
    response: httpx.Response,
    expires_at: datetime,
    now_utc: datetime,
    expires_hours: float,
    tolerance_s: float,
    task: str | None,
) -> list[ContractViolation]:
    wanted = as_utc(now_utc) + timedelta(hours=expires_hours)
    got = as_utc(expires_at)
    error_s = (got - wanted).total_seconds()
    if abs(error_s) <= tolerance_s:
        return []
    reading = "naive, read as UTC" if expires_at.utcoffset() is None else "aware"
    hints = []
    whole_hours = round(error_s / 3600)
    if abs(error_s - (SERVICE_DEFAULT_INVITE_HOURS - expires_hours) * 3600) <= tolerance_s:
        hints.append(f"hint: {SERVICE_DEFAULT_INVITE_HOURS}h is the service default: expires_hours was ignored")
    elif 0 < abs(whole_hours) <= MAX_UTC_OFFSET_HOURS and abs(error_s - whole_hours * 3600) <= tolerance_s:
        hints.append(f"hint: off by a whole {abs(whole_hours)}h, the mark of local time written or read as UTC")
    wanted_text = wanted.isoformat(timespec="seconds")
    expected = f"expires_at within {tolerance_s:g}s of {wanted_text} (now + {expires_hours:g}h)"
    actual = f"{expires_at.isoformat(timespec='seconds')} ({reading}), {_signed_duration(error_s)}"
    return [_violation(response, "expires_at", expected, actual, task, details=hints)]


def _signed_duration(seconds: float) -> str:
    direction = "late" if seconds > 0 else "early"
    size = abs(seconds)
    amount = f"{size / 3600:.2f}h" if size >= 3600 else f"{size:.0f}s"
    return f"{amount} {direction}"


def _located_violation(
    *,
    check: str,
    expected: str,
    actual: str,
    response: httpx.Response | None,
    task: str | None,
    method: str | None,
    url: str | None,
    security: bool = False,
) -> ContractViolation:
    if response is not None:
        return _violation(response, check, expected, actual, task, security=security)
    return ContractViolation(
        check=check, expected=expected, actual=actual, method=method, url=url, task=task, security=security
    )
