"""The run's core (ecs_verdict.run, ecs_verdict.preflight): typed values from a failed check to the verdict.

No pytest in the code under test: a failed check is a ``CheckFailure`` value, the preflight's
outcome a ``HarnessOutcome``; both become JSON only to cross a process (xdist, a lane).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from ecs_verdict.errors import CouldNotVerify, DeployFailed
from ecs_verdict.http import NoAnswer
from ecs_verdict.kinds import Kind
from ecs_verdict.preflight import Preflight, RunState
from ecs_verdict.run import CheckFailure, act_on_the_service, check_failure_of, conclude
from ecs_verdict.settings import Settings
from ecs_verdict.targets import targets_from_urls
from ecs_verdict.verdict import CheckRecord

TARGETS = targets_from_urls(["http://127.0.0.1:8000"])
TASK = TARGETS[0].task_id


class Violation(AssertionError):
    """What a suite's check raises: a wrong answer, with the kind it proves."""

    def __init__(self, message: str, failure_kind: str | None = None) -> None:
        super().__init__(message)
        self.failure_kind = failure_kind


def test_a_check_failure_is_a_value_and_json_only_across_a_process() -> None:
    failed = check_failure_of(Violation("missing field expires_at"), ("GET http://127.0.0.1:8000/api/x", 200),
                              (1.0, 2.0))
    assert (failed.kind, failed.violation, failed.status, failed.ran) == (Kind.CHECK_FAILED, True, 200, (1.0, 2.0))
    crossed = CheckFailure.from_dict(json.loads(json.dumps(failed.to_dict())))
    assert crossed == failed and crossed.kind is Kind.CHECK_FAILED
    assert json.loads(str(failed)) == failed.to_dict()  # what JUnit shows of the property


def test_an_unanswered_request_is_named_by_its_request_and_never_a_violation() -> None:
    error = NoAnswer("GET", "http://127.0.0.1:8000/api/me", 3, "ReadError: [Errno 104] Connection reset by peer")
    failed = check_failure_of(error, ("GET http://127.0.0.1:8000/earlier", 500), (1.0, 2.0))
    assert failed.request == "GET http://127.0.0.1:8000/api/me" and failed.status is None
    assert failed.no_answer and not failed.violation
    assert failed.failure("test_me").kind is Kind.NO_ANSWER


def test_an_unknown_kind_is_refused_where_it_enters() -> None:
    with pytest.raises(ValueError, match="unknown outcome kind 'made_up'"):
        check_failure_of(Violation("x", failure_kind="made_up"), None, (1.0, 2.0))
    with pytest.raises(ValueError, match="unknown outcome kind 'made_up'"):
        CheckFailure.from_dict({**CheckFailure().to_dict(), "kind": "made_up"})
    with pytest.raises(ValueError, match="unknown outcome kind 'made_up'"):
        RunState.from_json(json.dumps({**json.loads(RunState().to_json()),
                                       "outcome": {**CouldNotVerify("x", kind=Kind.DEADLINE).to_dict(),
                                                   "kind": "made_up"}}))


@pytest.mark.parametrize("outcome", [None, CouldNotVerify("deploy not stable", kind=Kind.DEADLINE, evidence=["a"]),
                                     DeployFailed("rolled back", kind=Kind.ROLLED_BACK)])
def test_the_preflight_crosses_to_a_worker_as_json_and_comes_back_typed(outcome: object) -> None:
    state = RunState.after(Preflight(targets=TARGETS, outcome=outcome))  # type: ignore[arg-type]
    back = RunState.from_json(state.to_json())
    assert back.targets == state.targets and back.deployment is None
    assert (back.outcome.to_dict() if back.outcome else None) == (outcome.to_dict() if outcome else None)  # type: ignore[attr-defined]
    assert type(back.outcome) is type(outcome)
    assert back.preflight.to_dict() == state.preflight.to_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.preflight.targets = ()  # type: ignore[misc]  # what the preflight found stays what it found


def test_a_failed_check_reaches_the_verdict_typed_within_the_process() -> None:
    settings = Settings(targets=TARGETS)
    state = RunState.after(Preflight(targets=TARGETS))
    checks = [CheckRecord(name="test_shape", task_id=TASK, outcome="failed", duration_s=0.1, message="bad"),
              CheckRecord(name="test_health", task_id=TASK, outcome="passed", duration_s=0.1, message="")]
    failed = CheckFailure(violation=True, status=200, request="GET http://127.0.0.1:8000/api/x", check="test_shape",
                          task_id=TASK, message="missing field expires_at")
    conclusion = conclude(settings, state, checks, {"smoke/test_x.py::test_shape[t]": failed}, left_out=[],
                          interrupted=None, harness_error=None, retry_counts=None)
    verdict = conclusion.verdict
    assert (verdict["verdict"], verdict["exit_code"]) == ("fail", 1)
    assert [(d["category"], d["task_id"]) for d in verdict["diagnoses"]] == [("contract_violation", TASK)]


def test_the_preflight_outcome_decides_a_run_that_checked_nothing() -> None:
    settings = Settings(targets=TARGETS)
    state = RunState.after(Preflight(targets=TARGETS, outcome=CouldNotVerify("GET /health: no answer",
                                                                    kind=Kind.TARGET_UNREACHABLE)))
    verdict = conclude(settings, state, [], {}, left_out=[], interrupted=None, harness_error=None,
                       retry_counts=None).verdict
    assert (verdict["exit_code"], [d["category"] for d in verdict["diagnoses"]]) == (6, ["target_unreachable"])


def test_a_run_that_acts_on_nothing_does_nothing_and_asks_no_one() -> None:
    acted: list[str] = []
    settings = Settings(targets=TARGETS)
    done = act_on_the_service(settings, RunState.after(Preflight(targets=TARGETS)), 1)
    assert (done.fields, done.notes, done.refused) == ({}, [], None)
    conclude(settings, RunState.after(Preflight(targets=TARGETS)), [], {}, left_out=[], interrupted=None, harness_error=None,
             retry_counts=None, before_acting=lambda: acted.append("asked"))
    assert acted == []
