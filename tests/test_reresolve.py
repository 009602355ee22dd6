"""A task replaced while the suite runs: the harness asks ECS once more, tests the replacement, and says so."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from stage import Stage
from tests.conftest import StagePlan, on_shared_stage
from tests.smoke_runs import run_smoke, with_plugin

# Loaded into the smoke run with -p: before the first health test, hand its task id to this
# test over a FIFO and block until the task has been replaced (no sleeping, no guessing).
REPLACE_HOOK = '''
import os

def pytest_runtest_setup(item):
    if item.name.startswith("test_health_answers_healthy[") and not getattr(item.config, "_replaced", False):
        item.config._replaced = True
        with open(os.environ["SMOKE_TEST_REPLACE"], "w") as request:
            request.write(item.callspec.id)
        with open(os.environ["SMOKE_TEST_REPLACED"]) as done:
            done.read()
'''


@on_shared_stage(StagePlan("healthy"))
@pytest.mark.changes_shared_stage  # kills a task
def test_a_task_replaced_mid_run_is_re_resolved_once_and_reported(shared_stage: Stage, tmp_path: Path) -> None:
    stage = shared_stage
    request_fifo, done_fifo = tmp_path / "replace", tmp_path / "replaced"
    os.mkfifo(request_fifo)
    os.mkfifo(done_fifo)
    replaced: dict[str, str] = {}

    def replace_the_task_the_suite_is_about_to_test() -> None:
        with open(request_fifo) as request:
            short_id = request.read()
        victim = next(t for t in stage.scheduler.live_tasks() if t.id.startswith(short_id))
        replaced["old"] = victim.id
        victim.process.kill()  # the task dies; the scheduler starts a replacement on a new address

        def replacement_healthy() -> bool:
            live = [t for t in stage.scheduler.live_tasks() if t.health == "HEALTHY"]
            return len(live) == 2 and victim.id not in {t.id for t in live}

        replaced["ready"] = str(stage.wait_until(replacement_healthy, 30))
        with open(done_fifo, "w") as done:
            done.write("go")

    controller = threading.Thread(target=replace_the_task_the_suite_is_about_to_test, daemon=True)
    controller.start()
    env = with_plugin(tmp_path, "replace_hook", REPLACE_HOOK,
                      {**stage.env, "SMOKE_TEST_REPLACE": str(request_fifo), "SMOKE_TEST_REPLACED": str(done_fifo)})
    # --serial: the hook hands over one task from one process (each task lane would run it once).
    run = run_smoke(env, tmp_path / "reports", "-k", "health", "-p", "replace_hook", "--serial", timeout_s=120)
    controller.join(timeout=5)

    assert replaced.get("ready") == "True", run.output
    assert run.exit_code == 0, run.output
    note = f"task {replaced['old'][:8]} stopped answering and was re-resolved once: now testing its replacement"
    assert note in run.output
    assert any(note in warning for warning in run.verdict["warnings"])
