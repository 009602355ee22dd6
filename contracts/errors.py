"""Contract violations: what was expected, what came back, and where.

A violation's first line is the whole story for someone paged at 2 a.m.:
``POST http://10.0.0.5:8000/api/boards/board_001/invites [task 3f2a]: expected 403
"No permission to create invites", got 201``. Further lines add the (scrubbed) body.

No message built here may carry a secret: request bodies and headers are never
quoted, and quoted response bodies and URLs go through :func:`scrub_text` /
:func:`scrub_json` first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from ecs_verdict.redact import scrub_patterns

# Keys whose values never appear in a message (compared case-insensitively).
SECRET_KEYS = frozenset(
    {"token", "password", "invite_url", "access_token", "refresh_token", "authorization", "secret", "database_url"}
)
REDACTED = "***"
DEFAULT_BODY_LIMIT = 300
DEFAULT_HEADLINE_TEXT_LIMIT = 160
SECURITY_PERMISSION_GRANTED = "permission granted that must be denied"
SECURITY_NO_CREDENTIALS = "request without credentials was accepted"

# A `"token": "..."` fragment of a body that is not valid JSON; every other credential shape
# (bearer tokens, JWTs, token=/password= values, passwords in connection strings, AWS key ids)
# is the harness-wide rule in ecs_verdict.redact.
_SECRET_JSON_FRAGMENT = re.compile(rf'(?i)("(?:{"|".join(sorted(SECRET_KEYS))})"\s*:\s*)"[^"]*"?')


def scrub_text(text: str, limit: int | None = DEFAULT_BODY_LIMIT) -> str:
    """Remove secrets from free text, then cut it to ``limit`` characters."""
    text = _SECRET_JSON_FRAGMENT.sub(rf'\1"{REDACTED}"', scrub_patterns(text))
    if limit is not None and len(text) > limit:
        text = text[:limit] + f"... ({len(text)} chars)"
    return text


def scrub_json(value: Any) -> Any:
    """A copy of a JSON value with every secret key's value replaced by ``***``."""
    if isinstance(value, dict):
        return {key: REDACTED if _is_secret_key(key) else scrub_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub_json(item) for item in value]
    if isinstance(value, str):
        return scrub_text(value, limit=None)
    return value


def _is_secret_key(key: object) -> bool:
    return str(key).lower() in SECRET_KEYS


def scrub_url(url: str | httpx.URL) -> str:
    """The URL with secret query values (``token=``) replaced by ``***``."""
    return scrub_text(str(url), limit=None)


def quote_body(response: httpx.Response, limit: int = DEFAULT_BODY_LIMIT) -> str:
    """The response body as one scrubbed line of at most about ``limit`` characters."""
    try:
        text = response.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        return "<body not readable>"
    if not text:
        return "<empty>"
    try:
        parsed = json.loads(text)
    except ValueError:
        return scrub_text(" ".join(text.split()), limit)
    return scrub_text(json.dumps(scrub_json(parsed), ensure_ascii=False), limit)


def describe_status(response: httpx.Response) -> str:
    """``403 "No permission to create invites"``: the status plus the error text if there is one.

    A JSON ``detail`` string or a plain-text body (``500 "Internal Server Error"``) is
    quoted because it is what lets someone correlate the failure with the logs; any
    other body stays out of the first line (it may carry tokens) and goes to a detail line.
    """
    status = str(response.status_code)
    try:
        text = response.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        return status
    if not text.strip():
        return status
    try:
        parsed = json.loads(text)
    except ValueError:
        return f'{status} "{scrub_text(" ".join(text.split()), DEFAULT_HEADLINE_TEXT_LIMIT)}"'
    if isinstance(parsed, dict) and isinstance(parsed.get("detail"), str):
        return f'{status} "{scrub_text(parsed["detail"], DEFAULT_HEADLINE_TEXT_LIMIT)}"'
    return status


class ContractViolation(AssertionError):
    """One broken promise of the service's contract, named precisely.

    ``check`` is a short name (``status``, ``schema``, ``permissions``...);
    ``expected`` and ``actual`` are already-rendered, secret-free phrases;
    ``security`` marks a permission granted that must be denied or a request
    without credentials that was accepted. ``failure_kind`` names the diagnosis kind the
    violation proves when it proves more than a broken promise (``missing_owner``: no
    board owner), so the report need not know which check raised it.
    """

    def __init__(
        self,
        *,
        check: str,
        expected: str,
        actual: str,
        method: str | None = None,
        url: str | None = None,
        status: int | None = None,
        task: str | None = None,
        security: bool = False,
        security_reason: str = SECURITY_PERMISSION_GRANTED,
        details: Sequence[str] = (),
        failure_kind: str | None = None,
    ) -> None:
        self.check = check
        self.failure_kind = failure_kind
        self.expected = expected
        self.actual = actual
        self.method = method
        self.url = scrub_url(url) if url is not None else None
        self.status = status
        self.task = task
        self.security = security
        self.security_reason = security_reason
        self.details = tuple(details)
        super().__init__(self.render())

    @classmethod
    def from_response(
        cls,
        response: httpx.Response,
        *,
        check: str,
        expected: str,
        actual: str,
        task: str | None = None,
        security: bool = False,
        security_reason: str = SECURITY_PERMISSION_GRANTED,
        details: Sequence[str] = (),
        failure_kind: str | None = None,
    ) -> ContractViolation:
        """A violation located at the response's request (method, URL) and status."""
        method, url = request_of(response)
        return cls(
            check=check,
            expected=expected,
            actual=actual,
            method=method,
            url=url,
            status=response.status_code,
            task=task,
            security=security,
            security_reason=security_reason,
            details=details,
            failure_kind=failure_kind,
        )

    @property
    def where(self) -> str:
        """``POST http://host/path [task 3f2a]``, or ``<no request>`` when unknown."""
        place = " ".join(part for part in (self.method, self.url) if part) or "<no request>"
        return f"{place} [task {self.task}]" if self.task else place

    @property
    def summary(self) -> str:
        """``expected X, got Y`` with the security prefix if it applies (no location)."""
        prefix = f"SECURITY: {self.security_reason}: " if self.security else ""
        return f"{prefix}expected {self.expected}, got {self.actual}"

    @property
    def headline(self) -> str:
        """The one line that says what broke and where."""
        prefix = f"SECURITY: {self.security_reason}: " if self.security else ""
        return f"{prefix}{self.where}: expected {self.expected}, got {self.actual}"

    def render(self) -> str:
        """The headline, then one indented line per detail."""
        return "\n".join([self.headline, *(f"  {line}" for line in self.details)])

    def __str__(self) -> str:
        return self.render()

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only __init__: rebuild from the attributes (pickling, e.g. across processes).
        return (_rebuild, (type(self), self._state()))

    def _state(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "expected": self.expected,
            "actual": self.actual,
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "task": self.task,
            "security": self.security,
            "security_reason": self.security_reason,
            "details": self.details,
        }


class ContractViolations(ContractViolation):
    """Several violations reported together (every check ran; all failures are listed)."""

    def __init__(self, violations: Sequence[ContractViolation]) -> None:
        flat = tuple(_flatten(violations))
        if len(flat) < 2:
            raise ValueError("ContractViolations needs at least two violations; raise a single one directly")
        self.violations = flat
        first = flat[0]
        shared = all(_place(v) == _place(first) for v in flat)
        security_count = sum(v.security for v in flat)
        actual = f"{len(flat)} contract violations"
        if security_count:
            actual += f" ({security_count} of them security)"
        details: list[str] = []
        for number, violation in enumerate(flat, start=1):
            line = f"[{violation.check}] {violation.summary}" if shared else violation.headline
            details.append(f"{number}. {line}")
            details.extend(f"   {extra}" for extra in violation.details)
        super().__init__(
            check="+".join(dict.fromkeys(v.check for v in flat)),
            expected="every check to pass",
            actual=actual,
            method=first.method if shared else None,
            url=first.url if shared else None,
            status=first.status if shared else None,
            task=first.task if shared else None,
            security=security_count > 0,
            security_reason="; ".join(dict.fromkeys(v.security_reason for v in flat if v.security)),
            details=details,
        )

    @property
    def headline(self) -> str:
        prefix = f"SECURITY: {self.security_reason}: " if self.security else ""
        where = self.where if self.method or self.url else "several requests"
        return f"{prefix}{where}: {self.actual}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (ContractViolations, (self.violations,))


def raise_violations(violations: Iterable[ContractViolation]) -> None:
    """Raise nothing, the single violation, or all of them grouped."""
    __tracebackhide__ = True
    found = list(_flatten(violations))
    if len(found) == 1:
        raise found[0]
    if found:
        raise ContractViolations(found)


def request_of(response: httpx.Response) -> tuple[str | None, str | None]:
    """The (method, scrubbed URL) of the request behind a response, if it is known."""
    try:
        request = response.request
    except RuntimeError:  # httpx raises when a response was built without a request
        return None, None
    return request.method, scrub_url(request.url)


def _flatten(violations: Iterable[ContractViolation]) -> Iterable[ContractViolation]:
    for violation in violations:
        if isinstance(violation, ContractViolations):
            yield from violation.violations
        else:
            yield violation


def _place(violation: ContractViolation) -> tuple[str | None, str | None, str | None]:
    return violation.method, violation.url, violation.task


def _rebuild(cls: type[ContractViolation], state: dict[str, Any]) -> ContractViolation:
    return cls(**state)
