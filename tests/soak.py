"""The soak's noise, its faulty deploys and how one run is judged: shared by tests/test_soak.py and bench/bench_soak.py.

The noise is what issue 16 saw real networks do: a few % of task GETs reset or stalled past the
client's read timeout, keep-alive connections closed when idle, each task answering 503 to its
first request of a run (a warm-up), and 10-20 % of AWS calls throttled, answered 500/503 or reset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stage import Stage, StageOptions
from stage.faultproxy import AwsNoise, NetworkFaults, TaskNoise
from tests.conftest import TEST_RESTART_DELAY_S, TEST_START_PERIOD_SCALE
from tests.smoke_runs import run_smoke

TASK_NOISE = TaskNoise(reset=0.03, stall=0.01, methods=frozenset({"GET"}), stall_s=15.0, idle_close_s=1.0,
                       warmup_503_requests=1)
AWS_NOISE = AwsNoise(throttle=0.08, server_error=0.04, reset=0.04)
STABLE_TIMEOUT_S = "90"
# A healthy task's first check passes within a second on a quiet machine; on a loaded one (six
# stages on two cores) booting can outlast TEST_START_PERIOD_SCALE's 7.5 s and the stage would stop
# healthy tasks, which is not the noise under test. Only restart_loop needs a short startPeriod.
HEALTHY_START_PERIOD_SCALE = 0.5


def noise(seed: int) -> NetworkFaults:
    return NetworkFaults(tasks=TASK_NOISE, aws=AWS_NOISE, seed=seed)


@dataclass(frozen=True, slots=True)
class FaultyDeploy:
    """A runbook fault the stage offers, and the category the verdict must name for it."""

    scenario: str
    faults: tuple[str, ...]
    category: str

    @property
    def id(self) -> str:
        return "+".join((self.scenario, *self.faults))


FAULTY_DEPLOYS = (
    FaultyDeploy("healthy", ("urlsafe",), "code_error"),
    FaultyDeploy("healthy", ("rowcount",), "db_adapter_error"),
    FaultyDeploy("healthy", ("no_migrations",), "migrations_not_applied"),
    FaultyDeploy("one_bad_task", ("participant_can_invite",), "permission_regression"),
    FaultyDeploy("restart_loop", (), "task_restarting"),
)


def noisy_stage(seed: int, scenario: str = "healthy", faults: tuple[str, ...] = ()) -> Stage:
    """A stage (not started) whose tasks and AWS endpoint sit behind the soak's noise."""
    start_period_scale = TEST_START_PERIOD_SCALE if scenario == "restart_loop" else HEALTHY_START_PERIOD_SCALE
    return Stage(StageOptions(scenario=scenario, faults=faults, network_faults=noise(seed),
                              restart_delay_s=TEST_RESTART_DELAY_S, start_period_scale=start_period_scale))


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """One smoke run under noise: its exit code, categories, retries the verdict reports, faults injected."""

    exit_code: int
    categories: frozenset[str]
    retries: int
    injected: dict[str, int] = field(default_factory=dict)
    failing: tuple[str, ...] = ()  # "check on task: message", for a report

    def describe(self) -> str:
        named = ", ".join(sorted(self.categories)) or "-"
        return f"exit {self.exit_code} [{named}]"


def soak_run(stage: Stage, report_dir: Path) -> RunOutcome:
    """One full ``pytest smoke`` run against ``stage``; every task warms up (503) again first."""
    proxy = stage.network
    proxy.rearm_warmup()
    before = proxy.counts()
    run = run_smoke(stage.env, report_dir, "--stable-timeout", STABLE_TIMEOUT_S)
    after = proxy.counts()
    injected = {kind: after[kind] - before.get(kind, 0) for kind in after if after[kind] != before.get(kind, 0)}
    verdict_path = report_dir / "verdict.json"
    verdict = json.loads(verdict_path.read_text()) if verdict_path.exists() else {}
    categories = frozenset(d["category"] for d in verdict.get("diagnoses", []))
    failing = tuple(f"{c['name']} on {str(c.get('task_id'))[:8]}: {str(c.get('message'))[:160]}"
                    for c in verdict.get("checks", []) if c.get("outcome") not in ("passed", "skipped"))
    return RunOutcome(run.exit_code, categories, retries_reported(verdict), injected, failing)


def retries_reported(verdict: dict[str, Any]) -> int:
    """The HTTP retries the verdict says the run spent (``http_retries``, every lane's together)."""
    return int((verdict.get("http_retries") or {}).get("retries", 0))


TASK_FAULT_KINDS = ("tasks.reset", "tasks.stall", "tasks.idle_close", "tasks.warmup_503")
AWS_FAULT_KINDS = ("aws.throttle", "aws.500", "aws.503", "aws.reset")


def total(outcomes: list[RunOutcome], kind: str) -> int:
    return sum(o.injected.get(kind, 0) for o in outcomes)
