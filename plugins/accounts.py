"""The smoke accounts: an owner-capable one and one or more participants (pytest-free).

Reused across runs (the service has no API to delete a user): environment
variables win over the Secrets Manager secret, so a person can override one
account without touching the secret. Every password is registered with the
run's SecretRegistry the moment it is known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from ecs_verdict.errors import CouldNotVerify
from ecs_verdict.kinds import Kind
from ecs_verdict.redact import SecretRegistry

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
    """The owner and a pool of one or more participant accounts (the first is ``participant``).

    Runs that overlap (a re-run gate and a canary, two pipelines) each join a
    participant that no other run holds at that moment: more accounts, fewer waits.
    """

    owner: Account
    participants: tuple[Account, ...]
    source: str

    @property
    def participant(self) -> Account:
        return self.participants[0]


SECRET_SHAPE = ('{"owner": {"username", "password"}, "participant": {"username", "password"}} '
                '(optionally "participants": [{"username", "password"}, ...], a pool for overlapping runs)')


def half_given_account(environ: Mapping[str, str]) -> str | None:
    """One line naming what is missing when an account is given by half (a password without its username, or
    the reverse); None when every account is given whole or not at all.

    Half an account would otherwise be ignored for the secret's, and the run would test as someone else.
    """
    for role in ROLES:
        names = (ENV_NAMES[(role, "username")], ENV_NAMES[(role, "password")])
        given = [name for name in names if environ.get(name)]
        if len(given) == 1:
            missing = next(name for name in names if name not in given)
            return (f"{given[0]} is set but {missing} is not: set both to use the {role} account from the "
                    f"environment, or neither to use --smoke-secret")
    return None


def load_accounts(
    environ: Mapping[str, str], *, secret_name: str | None, secretsmanager: Any | None, secrets: SecretRegistry
) -> SmokeAccounts:
    """Accounts from SMOKE_OWNER_*/SMOKE_PARTICIPANT_* (win when set) or the smoke secret."""
    from_secret: dict[str, list[dict[str, str]]] = {}
    if secret_name and secretsmanager is not None and not all(environ.get(v) for v in ENV_NAMES.values()):
        from_secret = _read_secret(secretsmanager, secret_name)
    accounts: dict[str, list[Account]] = {}
    sources = set()
    for role in ROLES:
        names = (ENV_NAMES[(role, "username")], ENV_NAMES[(role, "password")])
        if all(environ.get(name) for name in names):
            accounts[role] = [Account(role, environ[names[0]], environ[names[1]])]
            sources.add("environment")
        elif from_secret.get(role):
            accounts[role] = [Account(role, item["username"], item["password"]) for item in from_secret[role]]
            sources.add(f"secret {secret_name}")
        else:
            raise CouldNotVerify(
                f"no {role} smoke account: set {names[0]} and {names[1]}, or --smoke-secret NAME holding "
                + SECRET_SHAPE,
                kind=Kind.ACCOUNTS,
            )
    for account in (*accounts["owner"], *accounts["participant"]):
        secrets.add(account.password)
    return SmokeAccounts(accounts["owner"][0], tuple(accounts["participant"]), " and ".join(sorted(sources)))


def _read_secret(secretsmanager: Any, name: str) -> dict[str, list[dict[str, str]]]:
    try:
        value = secretsmanager.get_secret_value(SecretId=name)["SecretString"]
    except Exception as error:  # noqa: BLE001 - any AWS failure here means the same thing to a person
        code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
        raise CouldNotVerify(f"cannot read the smoke secret {name!r} ({code}); check --smoke-secret and IAM",
                             kind=Kind.ACCOUNTS) from None
    try:
        data = json.loads(value)
        pool = [data["participant"]] if "participant" in data else []
        pool += [item for item in data.get("participants", []) if item not in pool]
        found = {"owner": [_credentials(data["owner"])], "participant": [_credentials(item) for item in pool]}
        if not found["participant"]:
            raise KeyError("participant")
        if len({item["username"] for item in found["participant"]}) != len(found["participant"]):
            raise ValueError("a participant account is listed twice")
        return found
    except (ValueError, KeyError, TypeError):
        raise CouldNotVerify(f"the smoke secret {name!r} is not JSON shaped {SECRET_SHAPE}", kind=Kind.ACCOUNTS) from None


def _credentials(item: Any) -> dict[str, str]:
    username, password = item["username"], item["password"]
    if not (isinstance(username, str) and isinstance(password, str) and username and password):
        raise TypeError("username and password must be non-empty strings")
    return {"username": username, "password": password}
