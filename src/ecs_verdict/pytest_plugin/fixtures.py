"""Fixtures the smoke tests use; all named ``smoke_*``.

- ``smoke_target``: one task (parametrised: every test runs once per task); the task that
  replaced it when ECS stopped it mid-run (``ecs_verdict.pytest_plugin.task_fate``).
- ``smoke_http``: an httpx client bound to that task, recording every exchange.
- ``smoke_config``, ``smoke_deployment``, ``smoke_preflight``: what the run knows.
- ``smoke_health_path``: the health path (``--health-path``, else the task definition's).
- ``smoke_secrets``: the run's SecretRegistry (register anything secret you learn).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import allure
import httpx
import pytest

from ecs_verdict.allure3 import TASK_LABEL
from ecs_verdict.http import Exchange, ExchangeLog, recording_client
from ecs_verdict.redact import SecretRegistry
from ecs_verdict.targets import Target
from ecs_verdict.preflight import RunState
from ecs_verdict.settings import Settings as SmokeConfig
from ecs_verdict.pytest_plugin.stash import (config_key, exchanges_key, redirects_key, retry_budget_key, secrets_key,
                                             state_key)

if TYPE_CHECKING:
    from ecs_verdict.deployment import Deployment



def registry_of(config: pytest.Config) -> SecretRegistry:
    """The run's one SecretRegistry (created on first use)."""
    if secrets_key not in config.stash:
        config.stash[secrets_key] = SecretRegistry()
    return config.stash[secrets_key]


@pytest.fixture(scope="session")
def smoke_secrets(pytestconfig: pytest.Config) -> SecretRegistry:
    return registry_of(pytestconfig)


@pytest.fixture(scope="session")
def smoke_config(pytestconfig: pytest.Config) -> SmokeConfig:
    if config_key not in pytestconfig.stash:
        pytest.skip("not a smoke run: run `pytest smoke` with a target")
    return pytestconfig.stash[config_key]


@pytest.fixture(scope="session")
def smoke_preflight(pytestconfig: pytest.Config) -> RunState:
    return pytestconfig.stash[state_key]


@pytest.fixture(scope="session")
def smoke_health_path(pytestconfig: pytest.Config) -> str:
    """The health path this run checks: ``--health-path``, else what the task definition's check probes."""
    return pytestconfig.stash[state_key].health_path


@pytest.fixture(scope="session")
def smoke_deployment(smoke_preflight: RunState) -> Deployment | None:
    """The verified PRIMARY deployment (None when targets were given by URL)."""
    return smoke_preflight.deployment


def allure_step_for(exchange: Exchange) -> None:
    """One Allure step per HTTP request, with the (redacted) request and response attached."""
    with allure.step(exchange.title):
        allure.attach(exchange.request_text, name="request", attachment_type=allure.attachment_type.TEXT)
        allure.attach(exchange.response_text, name="response", attachment_type=allure.attachment_type.TEXT)


@pytest.fixture
def smoke_exchanges(request: pytest.FixtureRequest, smoke_secrets: SecretRegistry) -> ExchangeLog:
    """Every HTTP exchange of this test, for failure reports and Allure steps."""
    log = ExchangeLog(secrets=smoke_secrets, on_exchange=allure_step_for)
    request.node.stash[exchanges_key] = log
    return log


@pytest.fixture
def smoke_http(request: pytest.FixtureRequest, smoke_target: Target, smoke_exchanges: ExchangeLog
               ) -> Iterator[httpx.Client]:
    """An httpx client for this test's task (``base_url`` is the task's address).

    A request with no HTTP answer is retried when that is safe, within the run's retry
    budget (each attempt an Allure step); what stays unanswered raises
    ``ecs_verdict.http.NoAnswer`` (the check could not be verified on this task, unless
    ECS stopped the task meanwhile: ``ecs_verdict.pytest_plugin.task_fate`` then follows it).
    """
    budget = request.config.stash.get(retry_budget_key, None)
    with recording_client(smoke_target.base_url, smoke_exchanges, budget=budget) as client:
        yield client




def redirect_target(config: pytest.Config, target: Target) -> Target:
    """``target``, or the task that replaced it (and so on, if the replacement was replaced in turn)."""
    redirects = config.stash.get(redirects_key, {})
    seen = {target.task_id}
    while target.task_id in redirects:
        target = redirects[target.task_id]
        if target.task_id in seen:
            break
        seen.add(target.task_id)
    return target


@pytest.fixture
def smoke_target(request: pytest.FixtureRequest) -> Target:
    """This test's task: its parameter, or the task that replaced it when ECS stopped it mid-run."""
    return redirect_target(request.config, request.param)


def target_of(item: pytest.Item) -> Target | None:
    """The task a test ran against (its ``smoke_target`` parameter), None for a test of no task."""
    callspec = getattr(item, "callspec", None)
    target = callspec.params.get("smoke_target") if callspec is not None else None
    return target if isinstance(target, Target) else None


# Marks the test that reports on the deployment itself (smoke/test_deployment.py): the one test kept when the
# deploy failed, so the failure is a test outcome with its evidence rather than nine identical errors.
DEPLOYMENT_CHECK = "deployment_check"
# TASK_LABEL (ecs_verdict.allure3): the Allure label naming a test's task, read back when results are labelled


@pytest.fixture(autouse=True)
def _smoke_task_label(request: pytest.FixtureRequest) -> None:
    target = target_of(request.node)
    if target is not None:
        allure.dynamic.label(TASK_LABEL, target.task_id)


def exchanges_of(item: pytest.Item) -> list[Exchange]:
    log = item.stash.get(exchanges_key, None)
    return log.exchanges if log is not None else []
