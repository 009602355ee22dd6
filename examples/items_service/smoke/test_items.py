"""The items service, checked on every task of the new deployment (the harness parametrises ``smoke_target``)."""

from __future__ import annotations

import httpx
import pytest

from ecs_verdict.targets import Target
from plugins.items_contract import check_items, check_status, check_version


@pytest.mark.readonly
def test_health_answers_200(smoke_http: httpx.Client, smoke_target: Target, smoke_health_path: str) -> None:
    """The path ECS's health check probes (read from the task definition) answers 200."""
    check_status(smoke_http.get(smoke_health_path), 200, task=smoke_target.short_id)


@pytest.mark.readonly
def test_version_names_the_service(smoke_http: httpx.Client, smoke_target: Target) -> None:
    version = check_version(smoke_http.get("/version"), task=smoke_target.short_id)
    assert version.service == "items", f"[task {smoke_target.short_id}] /version names {version.service!r}"


@pytest.mark.readonly
def test_items_match_the_model(smoke_http: httpx.Client, smoke_target: Target, items_token: str) -> None:
    items = check_items(smoke_http.get("/items", headers={"Authorization": f"Bearer {items_token}"}),
                        task=smoke_target.short_id)
    assert items, f"[task {smoke_target.short_id}] /items answered an empty list"


@pytest.mark.readonly
def test_items_refuse_a_request_without_a_token(smoke_http: httpx.Client, smoke_target: Target) -> None:
    check_status(smoke_http.get("/items"), 401, task=smoke_target.short_id)
