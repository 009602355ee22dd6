"""A request with no HTTP answer, end to end: retried and shown when it then answers, could-not-verify when not.

On a stage whose tasks reset the first ``GET /api/me`` each gets (the stand-in's
``reset_once`` fault: the connection dies, nothing is answered), the run passes and the
report shows the retries. Against a target that answers the preflight and then resets
everything, the check is could-not-verify (exit 6, ``no_answer``), never a failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stage import Stage
from tests.conftest import StagePlan, on_shared_stage
from tests.loopback import Misbehaviour, misbehaving, serving
from tests.smoke_runs import run_smoke

SMOKE = str(Path(__file__).resolve().parent.parent / "smoke")


def step_names(steps: list[dict[str, Any]]) -> Iterator[str]:
    for step in steps:
        yield step.get("name", "")
        yield from step_names(step.get("steps", []))


# A stage of its own for each run: the fault fires once per task, then it is spent.
RESET_ONCE = StagePlan("healthy", ("reset_once=/api/me",), shared=False)


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["task-lanes", "xdist"])
@on_shared_stage(RESET_ONCE)
def test_a_get_reset_mid_test_is_retried_and_the_run_passes_showing_it(shared_stage: Stage, tmp_path: Path,
                                                                       args: tuple[str, ...]) -> None:
    run = run_smoke(shared_stage.env, tmp_path, "--stable-timeout", "90", *args)
    verdict = run.verdict
    assert (run.exit_code, verdict["verdict"]) == (0, "pass"), run.output
    tasks = len(verdict["tasks"])
    assert tasks >= 2
    # Each task reset its first GET /api/me once; each was sent again, once.
    assert f"note: HTTP: {tasks} request(s) retried ({tasks} retries, budget 60); 0 left unanswered" \
        in verdict["warnings"], verdict["warnings"]
    assert verdict["http_retries"] == {"retries": tasks, "requests_retried": tasks, "unanswered": 0, "limit": 60}
    results = [json.loads(path.read_text()) for path in (tmp_path / "allure-results").glob("*-result.json")]
    lost = [name for result in results for name in step_names(result.get("steps", []))
            if "/api/me -> no answer (" in name]
    assert len(lost) == tasks, lost
    assert all(result["status"] == "passed" for result in results if any(
        "/api/me -> no answer (" in name for name in step_names(result.get("steps", []))))


def test_a_check_whose_request_stays_unanswered_is_could_not_verify(pytester: pytest.Pytester,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest('pytest_plugins = ["ecs_verdict.pytest_plugin.fixtures", "ecs_verdict.pytest_plugin.reporting", "ecs_verdict.pytest_plugin.smoke_plugin", '
                          '"plugins.fixtures"]')
    for name in ("API_BASE_URL", "ECS_CLUSTER", "ECS_SERVICE", "SMOKE_SECRET", "SMOKE_STABLE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    behaviour = Misbehaviour(reset=set(range(2, 100)))  # the preflight's probe is answered, then nothing is
    reports = pytester.path / "reports"
    with serving(misbehaving(behaviour)) as url:
        # In a subprocess: httpx maps httpcore's errors by class, and an in-process run re-imports httpcore.
        result = pytester.runpytest_subprocess(SMOKE, "-p", "no:cacheprovider", "--report-dir", str(reports),
                                               "--target-url", url, "-k", "health")
    verdict = json.loads((reports / "verdict.json").read_text())
    assert (result.ret, verdict["verdict"]) == (6, "error"), result.stdout.str()
    (row,) = verdict["checks"]
    assert (row["outcome"], row["category"]) == ("error", "no_answer")
    assert row["message"].startswith(f"GET {url}/health: no HTTP answer after 3 attempts (")
    assert [d["category"] for d in verdict["diagnoses"]] == ["no_answer"]
    assert verdict["diagnoses"][0]["summary"] == row["message"]
    assert "note: HTTP: 1 request(s) retried (2 retries, budget 60); 1 left unanswered" in verdict["warnings"]
    assert verdict["http_retries"] == {"retries": 2, "requests_retried": 1, "unanswered": 1, "limit": 60}
    assert behaviour.seen == ["GET /health"] * 4  # the probe, then the check's three attempts
