"""Secrets planted anywhere never survive redaction; ordinary short words are left alone."""

from __future__ import annotations

import json
import logging
import threading
from urllib.parse import quote, quote_plus

import pytest

from ecs_verdict.redact import (
    MASK,
    SENSITIVE_KEYS,
    RedactingFilter,
    SecretRegistry,
    redact_headers,
    redact_mapping,
    scrub_patterns,
)

PASSWORD = 'S3cr3t pass/word+&=é"quoted"'
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJlLXBhcnQ"
INVITE_TOKEN = "Zq3-_kR9vLmN0pQrStUvWxYz0123456789abcdEFGH"
INVITE_URL = f"http://127.0.0.1:8000/board/board_001/join?token={INVITE_TOKEN}"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def registry() -> SecretRegistry:
    return SecretRegistry([PASSWORD, TOKEN, INVITE_TOKEN, INVITE_URL, AWS_SECRET])


def test_every_form_of_a_planted_secret_is_masked_in_nested_structures(registry: SecretRegistry) -> None:
    report = {
        "request": {"body": json.dumps({"password": PASSWORD}), "url": f"/login?p={quote_plus(PASSWORD)}"},
        "responses": [f"Bearer {TOKEN}", (b"invite " + INVITE_URL.encode(), quote(INVITE_URL, safe=""))],
        TOKEN: "a token used as a key",
        "aws": {"env": [f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}", quote(AWS_SECRET, safe="")]},
        "count": 3,
    }
    clean = registry.redact_obj(report)
    flat = json.dumps(clean, default=lambda b: b.decode())
    for secret in (PASSWORD, TOKEN, INVITE_TOKEN, AWS_SECRET, json.dumps(PASSWORD)[1:-1], quote_plus(PASSWORD)):
        assert secret not in flat
    assert quote(AWS_SECRET, safe="") not in flat
    assert clean["count"] == 3
    assert clean["responses"][1][0] == f"invite {MASK}".encode()
    assert MASK in clean  # the key itself was redacted


def test_longest_value_wins_so_no_tail_of_a_url_survives(registry: SecretRegistry) -> None:
    assert registry.redact(f"go to {INVITE_URL} now") == f"go to {MASK} now"


def test_short_values_are_not_registered() -> None:
    registry = SecretRegistry()
    for value in ("", "abc", "admin", None):
        registry.add(value)  # type: ignore[arg-type]
    assert len(registry) == 0
    assert registry.redact("admin logged in as abc") == "admin logged in as abc"
    registry.add("secret")
    assert len(registry) == 1
    assert registry.redact("my secret!") == f"my {MASK}!"


def test_adding_from_many_threads_loses_nothing() -> None:
    registry = SecretRegistry()
    values = [f"token-{n:04d}-xyz" for n in range(200)]
    threads = [threading.Thread(target=lambda chunk=values[i::4]: [registry.add(v) for v in chunk]) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(registry) == 200
    assert "token-" not in registry.redact(" ".join(values))


def test_headers_are_masked_by_name_whatever_their_value() -> None:
    headers = {"Authorization": "Bearer x", "cookie": "s=1", "X-API-Key": "k", "Accept": "application/json"}
    assert redact_headers(headers) == {
        "Authorization": MASK,
        "cookie": MASK,
        "X-API-Key": MASK,
        "Accept": "application/json",
    }
    assert redact_headers([("authorization", "Basic eA==")]) == {"authorization": MASK}


def test_mapping_values_under_sensitive_keys_are_masked_at_any_depth() -> None:
    data = {
        "username": "ada",
        "Password": "hunter2",
        "users": [{"token": "t", "invite_token": "u", "db_password": "p", "base_url": "http://10.0.0.5"}],
        "aws": {"aws_secret_access_key": "k", "aws_session_token": "s", "region": "us-east-1"},
    }
    masked = redact_mapping(data)
    assert masked == {
        "username": "ada",
        "Password": MASK,
        "users": [{"token": MASK, "invite_token": MASK, "db_password": MASK, "base_url": "http://10.0.0.5"}],
        "aws": {"aws_secret_access_key": MASK, "aws_session_token": MASK, "region": "us-east-1"},
    }
    assert {"password", "token", "access_token", "authorization", "secret"} <= SENSITIVE_KEYS


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        (f"Authorization: Bearer {TOKEN}", TOKEN),
        (f"session {TOKEN} expired", TOKEN),
        (f"GET /board/board_001/join?token={INVITE_TOKEN}&x=1", INVITE_TOKEN),
        ("DATABASE_URL=postgresql://board:pa55word@db.internal:5432/board", "pa55word"),
        ("key AKIAIOSFODNN7EXAMPLE in env", "AKIAIOSFODNN7EXAMPLE"),
    ],
)
def test_credential_shapes_are_masked_even_when_never_registered(text: str, leak: str) -> None:
    cleaned = scrub_patterns(text)
    assert leak not in cleaned
    assert MASK in cleaned


def test_ordinary_evidence_survives_pattern_scrubbing() -> None:
    line = "GET http://10.0.0.5:8000/api/health -> 404; image sha256:" + "ab" * 32
    assert scrub_patterns(line) == line


def test_logging_filter_cleans_messages_args_and_tracebacks(
    registry: SecretRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("tests.redact")
    handler_filter = RedactingFilter(registry)
    logger.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.INFO, logger="tests.redact"):
            logger.info("login with %s gave %r", PASSWORD, {"token": TOKEN})
            try:
                raise RuntimeError(f"invite failed: {INVITE_URL}")
            except RuntimeError:
                logger.exception("boom")
    finally:
        logger.removeFilter(handler_filter)
    assert len(caplog.records) == 2
    assert PASSWORD not in caplog.text and TOKEN not in caplog.text and INVITE_TOKEN not in caplog.text
    assert "login with *** gave" in caplog.text
    assert "RuntimeError: invite failed: ***" in caplog.text
