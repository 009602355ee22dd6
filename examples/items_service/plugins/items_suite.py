"""The items service's suite plugin: what the harness needs to know of this suite, and its token.

- ``pytest_smoke_suite``: the suite's profile (its report name, metrics namespace and its
  own cause, ``items_schema_drift``, with the next step this team takes).
- ``--items-token-secret`` / ``ITEMS_TOKEN_SECRET``: the Secrets Manager secret holding the
  API's bearer token, read with the harness's own AWS clients (the run's region, endpoint
  and credentials). ``ITEMS_API_TOKEN`` wins over it, for a person running by hand.
- ``items_token``: the token, registered with the run's secrets the moment it is read, so no
  report, log line or failure message shows it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from ecs_verdict.aws import make_clients
from ecs_verdict.redact import SecretRegistry
from ecs_verdict.suite import SuiteCause, SuiteProfile
from plugins.items_contract import SCHEMA_DRIFT

if TYPE_CHECKING:
    from ecs_verdict.pytest_plugin.preflight import RunState  # the smoke_preflight fixture's value

TOKEN_ENV = "ITEMS_API_TOKEN"
SECRET_ENV = "ITEMS_TOKEN_SECRET"

PROFILE = SuiteProfile(
    name="Items service",
    metrics_namespace="Items/Smoke",
    causes=(
        SuiteCause(
            category=SCHEMA_DRIFT,
            title="the items API answers a body that no longer matches its model",
            next_step="Roll back, then compare the release's Item model with plugins/items_contract.py; a "
                      "deliberate change ships with a new API version, never in place.",
        ),
    ),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("items").addoption(
        "--items-token-secret", dest="items_token_secret", default=None, metavar="NAME",
        help=f"Secrets Manager secret (name or ARN) holding the items API's bearer token [env {SECRET_ENV}]; "
             f"{TOKEN_ENV} wins over it")


def pytest_smoke_suite(config: pytest.Config) -> SuiteProfile:
    # The one suite of this repository: it answers for every smoke run.
    return PROFILE


def read_token(config: pytest.Config, state: RunState) -> str:
    """The bearer token: ``ITEMS_API_TOKEN``, else the secret; one clear line when neither gives one."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    secret = config.getoption("items_token_secret") or os.environ.get(SECRET_ENV, "").strip()
    if not secret:
        pytest.fail(f"could not verify: no token for /items: set {SECRET_ENV} (or --items-token-secret) to the "
                    f"secret that holds it, or {TOKEN_ENV}", pytrace=False)
    # The preflight's clients where this process has them (the controller, a lane); a worker makes its own.
    clients = state.clients or make_clients(state.region)
    try:
        token = clients.secretsmanager.get_secret_value(SecretId=secret)["SecretString"].strip()
    except Exception as error:  # noqa: BLE001 - any failure to read it: the check cannot be made
        pytest.fail(f"could not verify: the secret {secret!r} could not be read ({type(error).__name__})",
                    pytrace=False)
    if not token:
        pytest.fail(f"could not verify: the secret {secret!r} is empty", pytrace=False)
    return token


@pytest.fixture(scope="session")
def items_token(pytestconfig: pytest.Config, smoke_preflight: RunState, smoke_secrets: SecretRegistry) -> str:
    """The items API's bearer token (registered as a secret before anything can print it)."""
    token = read_token(pytestconfig, smoke_preflight)
    smoke_secrets.add(token)
    return token
