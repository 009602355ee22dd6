"""Within one run no AWS call is repeated for a fact already known.

Counted by the stage's moto server per operation, for one passing and one failing
run. The stage's own calls while it stands still are its log shipping
(``logs.PutLogEvents``), left out. Evidence and lint reuse what discovery read: the
task definition, the service, the tasks it described; the smoke secret is read once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.smoke_runs import run_smoke

STAGE_OWN = {"logs.PutLogEvents"}
DISCOVERY = {
    "ecs.DescribeServices": 1,
    "ecs.ListTasks": 2,  # RUNNING, then STOPPED: two different facts
    "ecs.DescribeTasks": 1,
    "ecs.DescribeTaskDefinition": 1,
    "ec2.DescribeNetworkInterfaces": 1,
    "secretsmanager.GetSecretValue": 1,
}


def harness_calls(stage: Any, tmp_path: Path) -> tuple[int, dict[str, int]]:
    before = stage.aws_calls
    run = run_smoke(stage.env, tmp_path)
    after = stage.aws_calls
    made = {op: after[op] - before.get(op, 0) for op in after if after[op] - before.get(op, 0)}
    return run.exit_code, {op: count for op, count in made.items() if op not in STAGE_OWN}


def test_a_passing_run_reads_each_fact_once(stage_factory: Any, tmp_path: Path) -> None:
    exit_code, calls = harness_calls(stage_factory("healthy"), tmp_path)
    assert exit_code == 0
    assert calls == DISCOVERY


@pytest.mark.parametrize("fault", ["urlsafe"])
def test_a_failing_run_adds_only_the_logs_and_the_registry(stage_factory: Any, tmp_path: Path, fault: str) -> None:
    exit_code, calls = harness_calls(stage_factory("healthy", faults=[fault]), tmp_path)
    assert exit_code == 1
    # Diagnosis reads each failing task's log stream and the registry's digest; nothing discovery knew.
    assert calls == {**DISCOVERY, "logs.GetLogEvents": 2, "ecr.DescribeImages": 1}
