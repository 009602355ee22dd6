"""Keep secrets out of every report, log line and terminal message.

Two layers, used together:

* ``SecretRegistry`` knows the exact values this run created or read (passwords,
  tokens, URLs carrying tokens, AWS keys) and replaces each of them, in every form it may
  take on the way out (raw, URL-quoted, JSON-escaped), with ``***``.
* ``scrub_patterns`` masks secrets the run never saw but that have a recognisable
  shape (``Bearer ...``, JWTs, ``?token=...``, AWS access key ids, passwords in
  database URLs): a log line quoted from CloudWatch may carry someone else's token.

Header and mapping helpers mask by *name* whatever the value is.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
# Shorter values would mask ordinary words ("admin", "true") all over a report.
MIN_SECRET_LENGTH = 6

SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "x-api-key", "proxy-authorization"})
SENSITIVE_KEYS = frozenset(
    {
        "password",
        "token",
        "access_token",
        "authorization",
        "secret",
        "aws_secret_access_key",
        "aws_session_token",
    }
)

SENSITIVE_KEY_SUFFIXES = ("_token", "_password", "_secret")

_SECRET_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # "Authorization: Bearer <token>" and friends.
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + MASK),
    # JWT-shaped tokens (many APIs' session tokens).
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), MASK),
    # Tokens (any *token) or passwords passed as key=value (links, query strings, form bodies, logs).
    (re.compile(r"(?i)(\b(?:\w*token|api_key|signature|password)=)[^&\s\"'#]+"),
     r"\1" + MASK),
    # Passwords embedded in connection strings: scheme://user:password@host.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/\s@]+:)[^@\s/]+@"), r"\1" + MASK + "@"),
    # AWS access key ids (long-term and temporary).
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),
)


def scrub_patterns(text: str) -> str:
    """Mask substrings shaped like credentials, whether or not they were registered."""
    for pattern, replacement in _SECRET_SHAPES:
        text = pattern.sub(replacement, text)
    return text


def _forms_of(value: str) -> set[str]:
    """The spellings a secret takes once it is put in a URL or a JSON document."""
    json_escaped = json.dumps(value)[1:-1]
    forms = {value, quote(value, safe=""), quote_plus(value, safe=""), json_escaped, quote(value, safe="/:")}
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class SecretRegistry:
    """The secret values of one run; ``redact`` replaces each of them with ``***``.

    Thread-safe: pytest-xdist workers are processes, but the harness also redacts
    from HTTP hooks running on other threads.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        """Register one secret (ignored when shorter than ``MIN_SECRET_LENGTH``)."""
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            self._forms |= _forms_of(value)
            self._pattern = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def values(self) -> list[str]:
        """The registered secrets (to hand to another process's registry: never to print)."""
        with self._lock:
            return sorted(self._values)

    def __contains__(self, value: object) -> bool:
        with self._lock:
            return value in self._values

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._forms:
                # Longest first: a token inside a registered URL must not leave the URL's tail.
                ordered = sorted(self._forms, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(form) for form in ordered))
            return self._pattern

    def redact(self, text: str) -> str:
        """Return ``text`` with every registered secret (in any of its forms) replaced by ``***``."""
        pattern = self._compiled()
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def redact_obj(self, obj: Any) -> Any:
        """Redact recursively through dicts, lists, tuples, sets, strings and bytes.

        Dict keys are redacted too (a token can end up as a key); other values pass unchanged.
        """
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, bytes):
            return self.redact(obj.decode("utf-8", errors="replace")).encode("utf-8")
        if isinstance(obj, Mapping):
            return {self.redact_obj(key): self.redact_obj(value) for key, value in obj.items()}
        if isinstance(obj, list):
            return [self.redact_obj(item) for item in obj]
        if isinstance(obj, tuple):
            return tuple(self.redact_obj(item) for item in obj)
        if isinstance(obj, (set, frozenset)):
            return type(obj)(self.redact_obj(item) for item in obj)
        return obj

    def clean(self, text: str) -> str:
        """Both layers: registered values, then credential-shaped substrings."""
        return scrub_patterns(self.redact(text))


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Copy of ``headers`` with Authorization, Cookie, X-Api-Key (...) masked whatever their value."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {name: (MASK if name.lower() in SENSITIVE_HEADERS else value) for name, value in items}


def is_sensitive_key(key: str) -> bool:
    """A key whose value is a credential: a known name, or any ``*_token``, ``*_password`` or ``*_secret``."""
    lowered = key.lower()
    return lowered in SENSITIVE_KEYS or lowered.endswith(SENSITIVE_KEY_SUFFIXES)


def redact_mapping(data: Any) -> Any:
    """Copy of ``data`` with the value under every ``SENSITIVE_KEYS`` key masked, at any depth."""
    if isinstance(data, Mapping):
        return {
            key: (MASK if isinstance(key, str) and is_sensitive_key(key) else redact_mapping(value))
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [redact_mapping(item) for item in data]
    if isinstance(data, tuple):
        return tuple(redact_mapping(item) for item in data)
    return data


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message and args before any handler sees them.

    Attach it to handlers (or the harness's loggers) so pytest's captured logs stay clean.
    """

    def __init__(self, registry: SecretRegistry, name: str = "") -> None:
        super().__init__(name)
        self.registry = registry

    def filter(self, record: logging.LogRecord) -> bool:
        # Format once, then freeze the clean text: args may hold secrets in any type.
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not drop the record
            message = str(record.msg)
        record.msg = self.registry.clean(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.registry.clean(record.exc_text)
        return True
