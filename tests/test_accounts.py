"""The smoke accounts: environment over the secret, the participant pool, and one clear line when wrong.

Real boto3 against moto's Secrets Manager (in-process: no stage needed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from plugins.accounts import load_accounts
from ecs_verdict.errors import CouldNotVerify
from ecs_verdict.redact import SecretRegistry

SECRET = "civicforge/board-mvp/smoke-accounts"
OWNER = {"username": "smoke-owner", "password": "owner-pass-1"}
PARTICIPANT = {"username": "smoke-participant", "password": "part-pass-1"}
SECOND = {"username": "smoke-participant-2", "password": "part-pass-2"}


@pytest.fixture
def secretsmanager(aws_env: Any) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def store(client: Any, value: object) -> None:
    client.create_secret(Name=SECRET, SecretString=value if isinstance(value, str) else json.dumps(value))


def load(client: Any, environ: dict[str, str] | None = None) -> tuple[Any, SecretRegistry]:
    secrets = SecretRegistry()
    return load_accounts(environ or {}, secret_name=SECRET, secretsmanager=client, secrets=secrets), secrets


def test_the_secret_may_hold_a_pool_of_participants(secretsmanager: Any) -> None:
    store(secretsmanager, {"owner": OWNER, "participant": PARTICIPANT, "participants": [SECOND, PARTICIPANT]})
    accounts, secrets = load(secretsmanager)
    assert [a.username for a in accounts.participants] == ["smoke-participant", "smoke-participant-2"]
    assert accounts.participant.username == "smoke-participant" and accounts.owner.username == "smoke-owner"
    assert {"owner-pass-1", "part-pass-1", "part-pass-2"} <= set(secrets.values())
    assert "part-pass-2" not in repr(accounts)


def test_a_pool_alone_is_enough(secretsmanager: Any) -> None:
    store(secretsmanager, {"owner": OWNER, "participants": [SECOND]})
    accounts, _ = load(secretsmanager)
    assert [a.username for a in accounts.participants] == ["smoke-participant-2"]


def test_environment_accounts_win_over_the_secret(secretsmanager: Any) -> None:
    store(secretsmanager, {"owner": OWNER, "participant": PARTICIPANT, "participants": [SECOND]})
    environ = {"SMOKE_PARTICIPANT_USERNAME": "by-hand", "SMOKE_PARTICIPANT_PASSWORD": "by-hand-pass"}
    accounts, _ = load(secretsmanager, environ)
    assert [a.username for a in accounts.participants] == ["by-hand"]
    assert accounts.owner.username == "smoke-owner"
    assert accounts.source == "environment and secret " + SECRET


@pytest.mark.parametrize("value", [
    "not json",
    {"owner": OWNER},
    {"owner": OWNER, "participants": []},
    {"owner": OWNER, "participant": {"username": "x"}},
    {"owner": OWNER, "participant": {"username": "", "password": "p"}},
    {"owner": OWNER, "participants": [SECOND, SECOND]},
], ids=["not-json", "no-participant", "empty-pool", "no-password", "empty-name", "listed-twice"])
def test_a_malformed_secret_is_one_line_naming_the_shape(secretsmanager: Any, value: object) -> None:
    store(secretsmanager, value)
    with pytest.raises(CouldNotVerify) as caught:
        load(secretsmanager)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"the smoke secret {SECRET!r} is not JSON shaped")
    assert '"participants": [{"username", "password"}, ...]' in message
    assert caught.value.kind == "accounts"
    assert "owner-pass-1" not in message
