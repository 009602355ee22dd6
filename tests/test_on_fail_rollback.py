"""``--on-fail rollback``: a failed rolling gate (exit 1) puts the service back on the revision it ran before.

The stage honours UpdateService as ECS does (a new PRIMARY deployment of that task
definition, the failed one scaled down and retired); the harness finds the previous
revision in the deployment records, waits until it is stable and healthy, reports both
deployments, and still exits 1. Never on a pass, never on could-not-verify.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stage.seed import CLUSTER, SERVICE
from tests.conftest import StagePlan, on_shared_stage
from tests.smoke_runs import run_smoke

ROLLBACK = ("--on-fail", "rollback", "--stable-timeout", "120")


def deployments_of(stage: Any) -> list[tuple[str, str, str]]:
    service = stage.client("ecs").describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    return [(d["status"], d["rolloutState"], d["taskDefinition"]) for d in service["deployments"]]


def test_a_failed_gate_rolls_the_service_back_to_the_previous_revision(stage_factory: Any, tmp_path: Path) -> None:
    stage = stage_factory("one_bad_task")
    current, previous = stage.seeded.current_task_definition, stage.seeded.previous_task_definition
    failed_deployment = deployments_of(stage)[0]
    run = run_smoke(stage.env, tmp_path / "reports", *ROLLBACK)
    assert run.exit_code == 1, run.output[-3000:]  # the release failed, whatever the rollback did
    assert "code_error" in run.categories()
    rollback = run.verdict["rollback"]
    assert rollback["status"] == "stable", rollback
    assert rollback["failed"] == {"deployment_id": run.verdict["target"]["deployment_id"], "task_definition": current}
    assert rollback["to"]["task_definition"] == previous
    assert rollback["to"]["deployment_id"] not in (None, rollback["failed"]["deployment_id"])
    assert rollback["found_in"].startswith("service revision ")
    # The service is back on the previous revision, healthy, and the failed deployment is retired.
    assert deployments_of(stage) == [("PRIMARY", "COMPLETED", previous)]
    live = stage.scheduler.live_tasks()
    assert len(live) == 2 and {t.deployment.task_definition_arn for t in live} == {previous}
    assert all(t.health == "HEALTHY" for t in live)
    assert {t.plan.image_digest for t in live} == {stage.seeded.previous_digest}
    assert failed_deployment[2] == current
    lines = [line for line in run.output.splitlines() if "--on-fail rollback:" in line]
    assert len(lines) == 1 and "runs civicforge-board-mvp:1 again, stable and healthy" in lines[0]
    assert "### Rollback (--on-fail rollback)" in (tmp_path / "reports" / "summary.md").read_text()


@on_shared_stage(StagePlan("healthy"))
def test_a_passing_gate_rolls_nothing_back(shared_stage: Any, tmp_path: Path) -> None:
    before = deployments_of(shared_stage)
    run = run_smoke(shared_stage.env, tmp_path / "reports", *ROLLBACK, "--read-only")
    assert run.exit_code == 0, run.output[-3000:]
    assert "rollback" not in run.verdict
    assert deployments_of(shared_stage) == before


@on_shared_stage(StagePlan("healthy"))
def test_could_not_verify_never_rolls_back_and_says_so_once(shared_stage: Any, tmp_path: Path) -> None:
    before = deployments_of(shared_stage)
    env = {**shared_stage.env, "SMOKE_SECRET": "civicforge/board-mvp/no-such-secret"}
    run = run_smoke(env, tmp_path / "reports", *ROLLBACK)
    assert run.exit_code == 6, run.output[-3000:]
    assert "rollback" not in run.verdict
    lines = [line for line in run.output.splitlines() if "--on-fail rollback:" in line]
    assert len(lines) == 1 and "not rolled back: the run could not verify the deployment (exit 6)" in lines[0]
    assert deployments_of(shared_stage) == before
