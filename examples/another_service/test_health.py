"""Another service's smoke suite, health only: what a second team writes to reuse the harness.

The harness (discovery, the wait, per-task parametrisation, reports, diagnosis of
the deployment) needs no edit: list this folder in the ini's ``smoke_suites`` and
run ``pytest examples/another_service --ecs-cluster C --ecs-service S``. None of the
CivicForge suite's accounts, sweeps or contracts take part.
"""

from __future__ import annotations

import httpx
import pytest

from ecs_verdict.targets import Target


@pytest.mark.readonly
def test_health_answers_200(smoke_http: httpx.Client, smoke_target: Target, smoke_health_path: str) -> None:
    """Every task of the new deployment answers its health path (the one ECS probes) with 200."""
    response = smoke_http.get(smoke_health_path)
    assert response.status_code == 200, f"{smoke_target.describe()}: GET {smoke_health_path} -> {response.status_code}"
