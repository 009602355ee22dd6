"""Every stage scenario and every fault switch: the verdict names the right cause and exit code.

One row per failure the runbook lived through. A row that fails here means the
harness would tell a person at 2 a.m. the wrong thing. Each row runs on its plan's
shared stage (the other modules' tests of that plan use the same one), except the
roll-out, which has to be watched from its start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from stage import Stage
from tests.conftest import StagePlan
from tests.smoke_runs import run_smoke


@dataclass(frozen=True)
class Row:
    scenario: str
    faults: tuple[str, ...]
    exit_code: int
    categories: frozenset[str]
    expect_pushed_digest: bool = False
    failing_tasks: int | None = None  # tasks named by the diagnoses, when it matters

    @property
    def id(self) -> str:
        return "+".join((self.scenario, *self.faults))

    @property
    def plan(self) -> StagePlan:
        if self.scenario == "rolling":  # rolls 1 s after the stage is ready: the run sees the roll-out
            return StagePlan(self.scenario, self.faults, rolling_delay_s=1.0, shared=False)
        return StagePlan(self.scenario, self.faults)


ROWS = [
    Row("healthy", (), 0, frozenset()),
    Row("rolling", (), 0, frozenset()),
    Row("one_bad_task", (), 1, frozenset({"code_error"}), failing_tasks=1),
    Row("restart_loop", (), 1, frozenset({"task_restarting"})),
    Row("exec_format", (), 1, frozenset({"arch_mismatch"})),
    Row("stale_image", (), 1, frozenset({"stale_image"}), expect_pushed_digest=True),
    Row("rolled_back", (), 1, frozenset({"deployment_rolled_back"})),
    Row("healthy", ("no_root_health",), 1, frozenset({"health_path_mismatch"})),
    Row("healthy", ("no_migrations",), 1, frozenset({"migrations_not_applied"}), failing_tasks=2),
    Row("healthy", ("no_owner",), 1, frozenset({"missing_board_owner"}), failing_tasks=2),
    Row("healthy", ("rowcount",), 1, frozenset({"db_adapter_error"}), failing_tasks=2),
    Row("healthy", ("urlsafe",), 1, frozenset({"code_error"}), failing_tasks=2),
    Row("healthy", ("participant_can_invite",), 1, frozenset({"permission_regression"}), failing_tasks=2),
    Row("healthy", ("curl_health_check",), 1, frozenset({"health_check_command"})),
    Row("healthy", ("slow_ms=50",), 0, frozenset()),
    Row("healthy", ("warmup_s=2",), 0, frozenset()),
]


@pytest.mark.parametrize(("shared_stage", "row"), [(row.plan, row) for row in ROWS], indirect=["shared_stage"],
                         ids=[row.id for row in ROWS])
def test_the_verdict_names_the_cause(shared_stage: Stage, tmp_path: Path, row: Row) -> None:
    stage = shared_stage
    args = ("--expect-image-digest", stage.expected_image_digest) if row.expect_pushed_digest else ()
    run = run_smoke(stage.env, tmp_path, "--stable-timeout", "90", *args)

    verdict = run.verdict
    assert (run.exit_code, verdict["exit_code"]) == (row.exit_code, row.exit_code), run.output
    assert verdict["verdict"] == ("pass" if row.exit_code == 0 else "fail")
    assert run.categories() == row.categories, verdict["diagnoses"]
    for diagnosis in verdict["diagnoses"]:
        assert diagnosis["evidence"] and diagnosis["next_step"], diagnosis
    if row.failing_tasks is not None:
        assert len({d["task_id"] for d in verdict["diagnoses"]}) == row.failing_tasks
