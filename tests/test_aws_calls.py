"""Within one run no AWS call is repeated for a fact already known.

Counted by the stage's moto server per operation, for one passing and one failing
run. The stage's own calls while it stands still are its log shipping
(``logs.PutLogEvents``), left out. Evidence and lint reuse what discovery read: the
task definition, the service, the tasks it described; the smoke secret is read once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


from stage import Stage
from tests.conftest import StagePlan, on_shared_stage
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


@on_shared_stage(StagePlan("healthy"))
def test_a_passing_run_reads_each_fact_once(shared_stage: Stage, tmp_path: Path) -> None:
    exit_code, calls = harness_calls(shared_stage, tmp_path)
    assert exit_code == 0
    assert calls == DISCOVERY


@on_shared_stage(StagePlan("healthy", ("urlsafe",)))
def test_a_failing_run_adds_only_the_logs_and_the_registry(shared_stage: Stage, tmp_path: Path) -> None:
    exit_code, calls = harness_calls(shared_stage, tmp_path)
    assert exit_code == 1
    # Diagnosis reads each failing task's log stream and the registry's digest; nothing discovery knew.
    assert calls == {**DISCOVERY, "logs.GetLogEvents": 2, "ecr.DescribeImages": 1}
