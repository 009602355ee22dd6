"""Contract violations: what was expected, what came back, and where (the classes are the harness's).

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
from typing import Any

import httpx

from ecs_verdict.findings import (SECURITY_NO_CREDENTIALS, SECURITY_PERMISSION_GRANTED, ContractViolation,
                                  ContractViolations, raise_violations, request_of)
from ecs_verdict.redact import scrub_patterns

# The violation classes are the harness's (``ecs_verdict.findings``), so its reports recognise them;
# CivicForge's checks raise them from here, naming CivicForge's causes by ``category``.
__all__ = ["MISSING_BOARD_OWNER", "SECURITY_NO_CREDENTIALS", "SECURITY_PERMISSION_GRANTED", "ContractViolation", "ContractViolations",
           "describe_status", "quote_body", "raise_violations", "request_of", "scrub_json", "scrub_text", "scrub_url"]

# CivicForge's own cause a check can name (``category=``): the board has no owner, so the owner account is
# refused everywhere (runbook lesson 3). Its title and next step are in plugins/causes.py.
MISSING_BOARD_OWNER = "missing_board_owner"

# Keys whose values never appear in a message (compared case-insensitively).
SECRET_KEYS = frozenset(
    {"token", "password", "invite_url", "access_token", "refresh_token", "authorization", "secret", "database_url"}
)
REDACTED = "***"
DEFAULT_BODY_LIMIT = 300
DEFAULT_HEADLINE_TEXT_LIMIT = 160

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
