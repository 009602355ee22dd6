"""The two smoke accounts: an owner-capable one and a participant (pytest-free).

Reused across runs (the service has no API to delete a user): environment
variables win over the Secrets Manager secret, so a person can override one
account without touching the secret. Every password is registered with the
run's SecretRegistry the moment it is known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from plugins.core.errors import CouldNotVerify
from plugins.core.redact import SecretRegistry

ROLES = ("owner", "participant")
ENV_NAMES = {
    ("owner", "username"): "SMOKE_OWNER_USERNAME",
    ("owner", "password"): "SMOKE_OWNER_PASSWORD",
    ("participant", "username"): "SMOKE_PARTICIPANT_USERNAME",
    ("participant", "password"): "SMOKE_PARTICIPANT_PASSWORD",
}


@dataclass(frozen=True, slots=True)
class Account:
    role: str  # "owner" or "participant": what the suite needs it to be, not what the service says
    username: str
    password: str

    def __repr__(self) -> str:  # never print a password, even by accident
        return f"Account(role={self.role!r}, username={self.username!r}, password='***')"


@dataclass(frozen=True, slots=True)
class SmokeAccounts:
    owner: Account
    participant: Account
    source: str


def load_accounts(
    environ: Mapping[str, str], *, secret_name: str | None, secretsmanager: Any | None, secrets: SecretRegistry
) -> SmokeAccounts:
    """Accounts from SMOKE_OWNER_*/SMOKE_PARTICIPANT_* (win when set) or the smoke secret."""
    from_secret: dict[str, dict[str, str]] = {}
    if secret_name and secretsmanager is not None and not all(environ.get(v) for v in ENV_NAMES.values()):
        from_secret = _read_secret(secretsmanager, secret_name)
    accounts, sources = {}, set()
    for role in ROLES:
        fields = {}
        for key in ("username", "password"):
            env_name = ENV_NAMES[(role, key)]
            if environ.get(env_name):
                fields[key], source = environ[env_name], "environment"
            elif from_secret.get(role, {}).get(key):
                fields[key], source = from_secret[role][key], f"secret {secret_name}"
            else:
                raise CouldNotVerify(
                    f"no {role} smoke account: set {ENV_NAMES[(role, 'username')]} and "
                    f"{ENV_NAMES[(role, 'password')]}, or --smoke-secret NAME holding "
                    '{"owner": {"username", "password"}, "participant": {...}}',
                    kind="accounts",
                )
            sources.add(source)
        secrets.add(fields["password"])
        accounts[role] = Account(role, fields["username"], fields["password"])
    return SmokeAccounts(accounts["owner"], accounts["participant"], " and ".join(sorted(sources)))


def _read_secret(secretsmanager: Any, name: str) -> dict[str, dict[str, str]]:
    try:
        value = secretsmanager.get_secret_value(SecretId=name)["SecretString"]
    except Exception as error:  # noqa: BLE001 - any AWS failure here means the same thing to a person
        code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
        raise CouldNotVerify(f"cannot read the smoke secret {name!r} ({code}); check --smoke-secret and IAM",
                             kind="accounts") from None
    try:
        data = json.loads(value)
        return {role: {"username": data[role]["username"], "password": data[role]["password"]} for role in ROLES}
    except (ValueError, KeyError, TypeError):
        raise CouldNotVerify(
            f"the smoke secret {name!r} is not JSON shaped "
            '{"owner": {"username", "password"}, "participant": {"username", "password"}}',
            kind="accounts",
        ) from None
