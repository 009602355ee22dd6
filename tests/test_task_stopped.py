"""A task that ECS stops while the suite runs: re-checked on its replacement, or the cause named once.

One table: the stop (as ``stage.task_stops`` plays it), how the run ends and what it says.
The task is stopped at a fixed moment: a ``-p`` plugin hands the id of the task the first
health test is about to check to this test over a FIFO and blocks until the stage has
stopped it (no sleeping, no guessing). Tests of that task run after it (a health test,
then a permission test), so the table also shows where a later test of the task goes.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from stage import Stage
from tests.conftest import StageFactory
from tests.smoke_runs import SmokeRun, run_smoke, with_plugin

# Before the first health test of the run (in collection order; in whichever process runs it),
# hand its task id over and wait until the stage stopped that task.
STOP_HOOK = '''
import os

def pytest_runtest_setup(item):
    first = next(i for i in item.session.items if i.name.startswith("test_health_answers_healthy["))
    if item is first and not getattr(item.config, "_task_stopped", False):
        item.config._task_stopped = True
        with open(os.environ["SMOKE_TEST_STOP"], "w") as request:
            request.write(item.callspec.id)
        with open(os.environ["SMOKE_TEST_STOPPED"]) as done:
            done.read()
'''
CHECKS = "test_health_answers_healthy or test_requests_without_credentials_are_refused"
STABLE_TIMEOUT_S = "20"  # the run's deadline: also how long a replacement that never gets healthy is waited for


@dataclass(frozen=True)
class Row:
    id: str
    how: str  # a stage.task_stops name
    replacement: str  # what the task the service starts instead does
    exit_code: int
    says: tuple[str, ...]  # in the run's output (and, for exit 0, the verdict's warnings)
    category: str | None = None  # the diagnosis naming the stopped task
    modes: tuple[str, ...] = ("lanes",)
    rerun_on: str = "a new task"  # exit 0 only: where the stopped task's checks re-ran


ROWS = [
    # A scale-in starts no replacement: the task left the service, its checks go to a task that stays.
    Row("scale-in", "scale_in", "serve", 0,
        ("stopped mid-run by ECS: ServiceSchedulerInitiated: Scaling activity initiated by",
         "the service scaled in (no replacement comes): its checks re-ran on task"), rerun_on="a task that stays"),
    Row("replaced by the service scheduler", "scale_in_replaced", "serve", 0,
        ("stopped mid-run by ECS: ServiceSchedulerInitiated: Scaling activity initiated by",)),
    Row("spot interruption", "spot", "serve", 0,
        ("stopped mid-run by ECS: SpotInterruption: Your Spot Task was interrupted.; its checks re-ran on task",),
        modes=("lanes", "serial", "xdist")),
    Row("user stop", "user", "serve", 0, ("stopped mid-run by ECS: UserInitiated: Task stopped by user",)),
    Row("essential container crashed", "crash", "serve", 1,
        ("exit code 1", "RuntimeError: background worker died"), category="task_crashed", modes=("lanes", "serial")),
    Row("out of memory", "oom", "serve", 1,
        ("ran out of memory mid-run", "exit code 137, OutOfMemoryError: Container killed due to memory usage"),
        category="task_crashed"),
    Row("replacement never healthy", "spot", "hang", 6,
        ("no replacement was healthy before the run's deadline",), category="task_stopped"),
]
MODES = {"lanes": (), "serial": ("--serial",), "xdist": ("-n", "2")}  # lanes: the default, a forked lane per task
CASES = [pytest.param(row, mode, id=f"{row.id}-{mode}") for row in ROWS for mode in row.modes]


def run_with_a_task_stopped(stage: Stage, tmp_path: Path, row: Row, *args: str) -> tuple[SmokeRun, str]:
    """``pytest smoke`` with the first health test's task stopped as ``row`` says; the run and that task's id."""
    request_fifo, done_fifo = tmp_path / "stop", tmp_path / "stopped"
    os.mkfifo(request_fifo)
    os.mkfifo(done_fifo)
    stopped: dict[str, str] = {}

    def stop_the_task_the_suite_is_about_to_test() -> None:
        with open(request_fifo) as request:
            short_id = request.read()
        try:
            stopped["id"] = stage.stop_task(short_id, row.how, replacement=row.replacement).id
        finally:
            with open(done_fifo, "w") as done:
                done.write("go")

    controller = threading.Thread(target=stop_the_task_the_suite_is_about_to_test, daemon=True)
    controller.start()
    env = with_plugin(tmp_path, "stop_hook", STOP_HOOK,
                      {**stage.env, "SMOKE_TEST_STOP": str(request_fifo), "SMOKE_TEST_STOPPED": str(done_fifo)})
    run = run_smoke(env, tmp_path / "reports", "-k", CHECKS, "-p", "stop_hook", "--stable-timeout", STABLE_TIMEOUT_S,
                    *args, timeout_s=180)
    controller.join(timeout=5)
    assert "id" in stopped, f"the hook never handed a task over:\n{run.output[-3000:]}"
    return run, stopped["id"]


@pytest.mark.parametrize(("row", "mode"), CASES)
def test_a_task_stopped_mid_run(stage_factory: StageFactory, tmp_path: Path, row: Row, mode: str) -> None:
    stage = stage_factory("healthy")
    first_tasks = set(stage.task_ips())
    run, stopped = run_with_a_task_stopped(stage, tmp_path, row, *MODES[mode])

    assert run.exit_code == row.exit_code, run.output[-4000:]
    for text in row.says:
        assert text in run.output, run.output[-4000:]
    verdict = run.verdict
    checked = {check["task_id"] for check in verdict["checks"] if check["outcome"] == "passed"}
    if row.exit_code == 0:
        # Every check passed, and none of them on the stopped task: they re-ran on a task that was not there at the
        # start (or, after a scale-in, on one that stays).
        assert stopped not in checked and all(c["outcome"] == "passed" for c in verdict["checks"]), verdict["checks"]
        new = checked - first_tasks
        rerun_on = next(iter(new)) if row.rerun_on == "a new task" else next(iter(first_tasks - {stopped}))
        assert len(new) == (1 if row.rerun_on == "a new task" else 0), verdict["checks"]
        assert {t["task_id"] for t in verdict["tasks"]} == checked == (first_tasks - {stopped}) | new
        note = next(w for w in verdict["warnings"] if "stopped mid-run by ECS" in w)
        assert f"task {stopped[:8]} stopped mid-run" in note
        assert f"re-ran on task {rerun_on[:8]}" in note
        return
    # The stopped task is named once, by its cause; its later test points at it instead of failing again.
    named = [d for d in verdict["diagnoses"] if d["category"] == row.category]
    assert [d["task_id"] for d in named] == [stopped], verdict["diagnoses"]
    for text in row.says:
        assert text in named[0]["summary"] + named[0]["evidence"], named[0]
    mine = {check["name"]: check["outcome"] for check in verdict["checks"] if check["task_id"] == stopped}
    assert mine == {"test_health_answers_healthy": "failed" if row.exit_code == 1 else "error",
                    "test_requests_without_credentials_are_refused": "skipped"}, verdict["checks"]
    others = {check["outcome"] for check in verdict["checks"] if check["task_id"] != stopped}
    assert others == {"passed"}, verdict["checks"]
    assert "contract_violation" not in {d["category"] for d in verdict["diagnoses"]}


# Stops the task right after a participant joined through it (a membership the test must undo), once.
STOP_AFTER_JOIN_HOOK = '''
import os

from plugins.ledger import MembershipWrites

_join = MembershipWrites.join


def join_then_stop(self, member, token):
    response = _join(self, member, token)
    if response.is_success and not os.environ.get("SMOKE_TEST_STOP_DONE"):
        os.environ["SMOKE_TEST_STOP_DONE"] = "1"
        with open(os.environ["SMOKE_TEST_STOP"], "w") as request:
            request.write(self.task)
        with open(os.environ["SMOKE_TEST_STOPPED"]) as done:
            done.read()
    return response


MembershipWrites.join = join_then_stop
'''


def test_a_task_stopped_after_a_join_is_no_clean_up_failure_and_leaves_nothing_behind(stage_factory: StageFactory,
                                                                          tmp_path: Path) -> None:
    stage = stage_factory("healthy")
    request_fifo, done_fifo = tmp_path / "stop", tmp_path / "stopped"
    os.mkfifo(request_fifo)
    os.mkfifo(done_fifo)
    stopped: dict[str, str] = {}

    def stop_the_task_a_participant_just_joined_through() -> None:
        with open(request_fifo) as request:
            short_id = request.read()
        try:
            stopped["id"] = stage.stop_task(short_id, "spot").id
        finally:
            with open(done_fifo, "w") as done:
                done.write("go")

    controller = threading.Thread(target=stop_the_task_a_participant_just_joined_through, daemon=True)
    controller.start()
    env = with_plugin(tmp_path, "stop_after_join", STOP_AFTER_JOIN_HOOK,
                      {**stage.env, "SMOKE_TEST_STOP": str(request_fifo), "SMOKE_TEST_STOPPED": str(done_fifo)})
    # --serial: one process, so the hook stops one task once (a lane per task would each stop theirs).
    run = run_smoke(env, tmp_path / "reports", "-k", "test_single_use_invite_admits_the_participant_once", "-p",
                    "stop_after_join", "--serial", "--stable-timeout", STABLE_TIMEOUT_S, timeout_s=180)
    controller.join(timeout=5)

    assert "id" in stopped, run.output[-3000:]
    assert run.exit_code == 0, run.output[-4000:]
    assert "clean-up left a smoke membership behind" not in run.output
    warnings = " ".join(run.verdict["warnings"])
    assert f"clean-up on task {stopped['id'][:8]}: removing user" in warnings
    assert "got no answer (ConnectError); left to the end-of-run sweep" in warnings
    assert f"task {stopped['id'][:8]} stopped mid-run by ECS: SpotInterruption" in warnings
    # The re-run, holding the same participant, removed what the stopped attempt left; nothing is left after the run.
    assert "was still a member from an earlier test of this run whose clean-up did not remove it" in warnings
    assert "smoke clean-up: no smoke membership left behind (after the tests)" in run.output
