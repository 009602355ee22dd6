"""verdict.json round trip, exit codes, redaction on the way out, and the markdown summary."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ecs_verdict.categories import NEXT_STEPS, Diagnosis
from ecs_verdict.coverage import LeftOut, describe_left_out, skipped_checks
from ecs_verdict.errors import CouldNotVerify, DeployFailed, HarnessOutcome
from ecs_verdict.kinds import Kind
from ecs_verdict.redact import SecretRegistry
from ecs_verdict.suite import SuiteCause, SuiteProfile
from ecs_verdict.verdict import (
    CheckRecord,
    TargetRecord,
    TaskRecord,
    build_verdict,
    decide,
    read_verdict,
    SUMMARY_LIMIT_BYTES,
    render_summary,
    write_summary,
    write_verdict,
)

T1 = "3f2a9c0d1e8b4f6a9c7d5e3b1a0f2c4d"
T2 = "9b8a7c6d5e4f30211a2b3c4d5e6f7a8b"
DIGEST = "sha256:" + "ab" * 32
INVITE_TOKEN = "Zq3-_kR9vLmN0pQrStUvWxYz0123456789abcdEFGH"
PASSWORD = "correct horse battery staple"

TARGET = TargetRecord(
    region="us-east-1",
    cluster="civicforge-cluster",
    service="civicforge-board-service",
    deployment_id="ecs-svc/1234567890123456789",
    task_definition="civicforge-board-mvp:7",
    image_digest=DIGEST,
)
TASKS = [
    TaskRecord(task_id=T1, ip="127.0.0.11", image_digest=DIGEST, started_at="2025-03-01T11:50:00Z"),
    TaskRecord(task_id=T2, ip="127.0.0.12", image_digest=DIGEST, started_at=None),
]


def check(name: str, task_id: str | None, outcome: str, message: str = "") -> CheckRecord:
    record = CheckRecord(name=name, task_id=task_id, outcome=outcome, duration_s=0.12, message=message)  # type: ignore
    return record


PASSING = [
    check(f"smoke/test_health.py::test_health[{T1[:8]}]", T1, "passed"),
    check(f"smoke/test_health.py::test_health[{T2[:8]}]", T2, "passed"),
    check("smoke/test_auth.py::test_no_credentials_rejected", None, "passed"),
]


def verdict_with(checks: list[CheckRecord], **inputs: Any) -> dict:
    return build_verdict(
        started_at=datetime(2025, 3, 1, 12, 0, 5, tzinfo=timezone(timedelta(hours=2))),
        duration_s=42.3456,
        target=TARGET,
        tasks=TASKS,
        checks=checks,
        decision=decide(checks, **inputs),
    )  # type: ignore[return-value]


NOT_VERIFIED = CouldNotVerify("no AWS credentials found: set ...", kind=Kind.NO_CREDENTIALS)
DEPLOY_FAILED = DeployFailed("rolled back", kind=Kind.ROLLED_BACK)


def test_an_unknown_kind_is_refused_where_it_enters_never_guessed() -> None:
    """JSON from a worker, or a suite's own code, naming a kind the harness does not know: one clear error."""
    with pytest.raises(ValueError, match="unknown outcome kind 'something_new'"):
        HarnessOutcome.from_dict({**NOT_VERIFIED.to_dict(), "kind": "something_new"})
    with pytest.raises(ValueError, match="unknown outcome kind 'something_new'"):
        CouldNotVerify("x", kind="something_new")  # type: ignore[arg-type]
    assert HarnessOutcome.from_dict(NOT_VERIFIED.to_dict()).to_dict() == NOT_VERIFIED.to_dict()


@pytest.mark.parametrize(
    ("outcomes", "inputs", "expected"),
    [
        (["passed", "passed", "skipped"], {}, ("pass", 0, [])),
        (["passed", "failed", "error"], {}, ("fail", 1, [])),
        (["passed"], {"outcome": DEPLOY_FAILED}, ("fail", 1, [])),
        (["passed", "error"], {}, ("error", 6, ["checks_errored"])),
        (["skipped"], {}, ("error", 6, ["no_checks_ran"])),
        ([], {}, ("error", 6, ["no_checks_ran"])),
        (["passed"], {"task_ids": [T1]}, ("pass", 0, [])),
        (["passed", "skipped"], {"task_ids": [T1, T2]}, ("error", 6, ["no_checks_ran"])),  # T2 got no check
        (["error"], {"task_ids": [T1, T2]}, ("error", 6, ["checks_errored", "no_checks_ran"])),
        (["failed"], {"task_ids": [T1, T2]}, ("fail", 1, [])),  # a proven breakage outranks an unchecked task
        ([], {"outcome": NOT_VERIFIED}, ("error", 6, ["no_credentials"])),
        (["failed"], {"usage_error": True}, ("error", 4, [])),
        (["passed"], {"strict_lint": True, "lint_warnings": ["no startPeriod"]}, ("fail", 1, ["task_definition_lint"])),
        (["passed"], {"strict_lint": False, "lint_warnings": ["no startPeriod"]}, ("pass", 0, [])),
        (["passed", "failed"], {"interrupted": 2}, ("error", 2, [])),
        (["failed"], {"internal_error": "harness error: KeyError"}, ("error", 6, ["harness_error"])),
    ],
)
def test_decide(outcomes: list[str], inputs: dict[str, Any], expected: tuple[str, int, list[str]]) -> None:
    decision = decide([check("c", T1, o) for o in outcomes], **inputs)
    assert (decision.verdict, decision.exit_code, [d["category"] for d in decision.diagnoses]) == expected
    assert all(d["next_step"] for d in decision.diagnoses)


UNANSWERED = "GET http://127.0.0.11:8000/api/me: no HTTP answer after 3 attempts (ReadError: [Errno 104] " \
             "Connection reset by peer)"
CONTRACT = Diagnosis("contract_violation", T2, "check test_invite_shape failed", "missing field expires_at",
                     NEXT_STEPS["contract_violation"])


def unanswered(task_id: str = T1) -> CheckRecord:
    return CheckRecord(name="test_me", task_id=task_id, outcome="error", duration_s=9.1, message=UNANSWERED,
                       category="no_answer")


@pytest.mark.parametrize(
    ("checks", "diagnoses", "expected"),
    [
        # No HTTP answer alone: could not verify that check on that task, named by its request.
        ([check("c", T1, "passed"), unanswered()], [], ("error", 6, [("no_answer", T1)])),
        ([unanswered(T1), unanswered(T2)], [], ("error", 6, [("no_answer", T1), ("no_answer", T2)])),
        # ... unless another check proves a breakage: exit 1, both named.
        ([unanswered(T1), check("test_invite_shape", T2, "failed", "missing field expires_at")], [CONTRACT],
         ("fail", 1, [("contract_violation", T2), ("no_answer", T1)])),
        # Another errored check (not an unanswered request) is still checks_errored.
        ([unanswered(T1), check("c", T2, "error", "fixture bug")], [],
         ("error", 6, [("no_answer", T1), ("checks_errored", T2)])),
    ],
)
def test_decide_with_unanswered_requests(checks: list[CheckRecord], diagnoses: list[Diagnosis],
                                         expected: tuple[str, int, list[tuple[str, str]]]) -> None:
    decision = decide(checks, diagnoses=diagnoses)
    assert (decision.verdict, decision.exit_code,
            [(d["category"], d["task_id"]) for d in decision.diagnoses]) == expected
    answerless = [d for d in decision.diagnoses if d["category"] == "no_answer"]
    assert all(d["summary"] == UNANSWERED and d["next_step"] == NEXT_STEPS["no_answer"] for d in answerless)


def test_an_unanswered_request_named_by_diagnosis_is_named_once() -> None:
    named = Diagnosis("no_answer", T1, UNANSWERED, f"check test_me on task {T1[:8]}: {UNANSWERED}",
                      NEXT_STEPS["no_answer"])
    decision = decide([unanswered(T1)], diagnoses=[named])
    assert [d["evidence"] for d in decision.diagnoses] == [named.evidence]


@pytest.mark.parametrize(("kind", "category"), [
    ("no_credentials", "no_credentials"), ("bad_credentials", "no_credentials"), ("access_denied", "aws_access_denied"),
    ("aws_unreachable", "aws_unreachable"), ("throttled", "aws_error"), ("unknown_region", "unknown_region"),
    ("no_region", "unknown_region"), ("cluster_not_found", "service_not_found"),
    ("service_not_found", "service_not_found"), ("container_not_found", "container_not_found"),
    ("desired_zero", "no_running_task"), ("no_running_task", "no_running_task"),
    ("no_public_ip", "target_unreachable"), ("target_unreachable", "target_unreachable"),
    ("accounts", "smoke_accounts"), ("deadline", "not_stable"),
])
def test_each_could_not_verify_cause_has_its_own_category_and_next_step(kind: str, category: str) -> None:
    decision = decide([], outcome=CouldNotVerify(f"{kind} happened", kind=kind, evidence=["x"]))
    (diagnosis,) = decision.diagnoses
    assert (decision.verdict, decision.exit_code, diagnosis["category"]) == ("error", 6, category)
    assert diagnosis["summary"] == f"{kind} happened" and diagnosis["next_step"] == NEXT_STEPS[category]
    if category != "target_unreachable":
        assert "security group" not in diagnosis["next_step"]


def test_verdict_round_trips_through_json(tmp_path: Path) -> None:
    failing = PASSING + [check("smoke/test_invites.py::test_owner_creates_invite", T1, "failed", "500")]
    diagnosis = Diagnosis("code_error", T1, "raised AttributeError", "task 3f2a9c0d log: AttributeError", "fix it")
    verdict = build_verdict(
        started_at=datetime(2025, 3, 1, 10, 0, 5),
        duration_s=1.005,
        target=TARGET,
        tasks=TASKS,
        checks=failing,
        diagnoses=[diagnosis],
        warnings=["health_check_external_tool: container civicforge-app health check calls curl"],
    )
    path = write_verdict(tmp_path / "out" / "verdict.json", verdict, SecretRegistry())
    loaded = read_verdict(path)
    assert loaded == json.loads(json.dumps(verdict))
    assert (loaded["verdict"], loaded["exit_code"]) == ("fail", 1)
    assert loaded["started_at"] == "2025-03-01T10:00:05Z"
    assert loaded["diagnoses"] == [diagnosis.as_dict()]
    assert list(loaded) == [
        "verdict",
        "exit_code",
        "started_at",
        "duration_s",
        "target",
        "tasks",
        "checks",
        "diagnoses",
        "causes",
        "links",
        "warnings",
    ]
    assert [p.name for p in path.parent.iterdir()] == ["verdict.json"]  # no temporary file left behind


def test_started_at_is_converted_to_utc_with_z() -> None:
    assert verdict_with(PASSING)["started_at"] == "2025-03-01T10:00:05Z"
    assert verdict_with(PASSING)["duration_s"] == 42.35


def test_secrets_never_reach_the_written_files(tmp_path: Path) -> None:
    registry = SecretRegistry([INVITE_TOKEN, PASSWORD])
    message = f"invite http://127.0.0.11:8000/board/board_001/join?token={INVITE_TOKEN} for password {PASSWORD!r}"
    verdict = verdict_with(PASSING + [check("test_join", T1, "failed", message + " Bearer eyJa.eyJb.sig")])
    step_summary = tmp_path / "step_summary.md"
    step_summary.write_text("# earlier step\n")
    write_verdict(tmp_path / "verdict.json", verdict, registry)
    text = write_summary(tmp_path / "summary.md", verdict, registry, str(step_summary))
    for written in (tmp_path / "verdict.json", tmp_path / "summary.md", step_summary):
        content = written.read_text()
        assert INVITE_TOKEN not in content and PASSWORD not in content and "eyJa.eyJb" not in content
        assert "***" in content
    assert step_summary.read_text() == "# earlier step\n" + text
    assert verdict["checks"][-1]["message"].startswith("invite http")  # the caller's value is untouched


def test_summary_headline_and_grid() -> None:
    checks = PASSING + [
        check(f"smoke/test_invites.py::test_owner_creates_invite[{T1[:8]}]", T1, "failed", "POST invites -> 500"),
        check(f"smoke/test_invites.py::test_owner_creates_invite[{T2[:8]}]", T2, "error", "connection reset"),
    ]
    verdict = build_verdict(
        started_at=datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc),
        duration_s=42.3,
        target=TARGET,
        tasks=TASKS,
        checks=checks,
        diagnoses=[Diagnosis("code_error", T1, "raised AttributeError", "task 3f2a9c0d log: a|b", "use token_urlsafe")],
        warnings=["health check has no startPeriod"],
    )
    summary = render_summary(verdict)
    lines = summary.splitlines()
    assert lines[0] == "## ❌ FAIL: civicforge-board-service, deployment ecs-svc/1234567890123456789 (42.3 s)"
    assert f"| check | `{T1[:8]}` | `{T2[:8]}` | `service` |" in lines
    assert "| smoke/test_health.py::test_health | ✅ | ✅ | – |" in lines
    assert "| smoke/test_auth.py::test_no_credentials_rejected | – | – | ✅ |" in lines
    assert "| smoke/test_invites.py::test_owner_creates_invite | ❌ | ⚠️ | – |" in lines
    assert "1. **[code_error]** raised AttributeError (on 1 of 2 tasks: 3f2a9c0d)" in lines
    assert "   - evidence: `task 3f2a9c0d log: a\\|b`" in lines
    assert "   - next step: use token_urlsafe" in lines
    assert "- ⚠️ health check has no startPeriod" in lines
    assert "POST invites -> 500" in summary


@pytest.mark.parametrize(
    ("checks", "flags", "headline"),
    [
        (PASSING, {}, "## ✅ PASS: civicforge-board-service"),
        (
            [check("t", T1, "error", "unreachable")],
            {"outcome": NOT_VERIFIED},
            "## ⚠️ COULD NOT VERIFY: civicforge-board-service",
        ),
    ],
)
def test_summary_headline_for_pass_and_not_verified(checks: list[CheckRecord], flags: dict, headline: str) -> None:
    summary = render_summary(verdict_with(checks, **flags))
    assert summary.startswith(headline)
    assert ("### Why: 1 cause" in summary) is bool(flags)  # could-not-verify names its cause too


def test_write_summary_without_a_step_summary_writes_only_the_file(tmp_path: Path) -> None:
    text = write_summary(tmp_path / "summary.md", verdict_with(PASSING), SecretRegistry(), None)
    assert (tmp_path / "summary.md").read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["summary.md"]


# --- summary.md: one cause once, top-down, within GitHub's step summary limit --------------------------


def many_tasks_verdict(tasks: int, *, failures_per_task: int = 1, message: str = "POST invites -> 500") -> Any:
    ids = [f"{n:08x}" + "c" * 24 for n in range(tasks)]
    checks = [check(f"test_invite_{k}[{task_id[:8]}]", task_id, "failed", f"{message} ({k})")
              for task_id in ids for k in range(failures_per_task)]
    diagnoses = [Diagnosis("code_error", task_id, "the application raised AttributeError",
                           f"task {task_id[:8]} log: AttributeError: no urlsafe", "use token_urlsafe")
                 for task_id in ids]
    return build_verdict(started_at=datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc), duration_s=9.0, target=TARGET,
                         tasks=[TaskRecord(task_id=t, ip=None, image_digest=DIGEST, started_at=None) for t in ids],
                         checks=checks, diagnoses=diagnoses)


def test_a_cause_on_every_task_is_said_once_and_before_the_grid_and_the_failures() -> None:
    verdict = many_tasks_verdict(24)

    summary = render_summary(verdict)

    assert len(verdict["diagnoses"]) == 24 and len(verdict["causes"]) == 1
    assert summary.count("**[code_error]**") == 1 and summary.count("- next step:") == 1
    assert "(on 24 of 24 tasks: 00000000, 00000001, " in summary and "00000017)" in summary
    positions = [summary.index(mark) for mark in ("## ❌ FAIL", "### Why: 1 cause", "### Checks",
                                                  "<details><summary>24 failed or errored check(s)")]
    assert positions == sorted(positions)


def test_the_failures_text_is_left_out_from_the_end_to_stay_under_the_limit() -> None:
    verdict = many_tasks_verdict(40, failures_per_task=40, message="x" * 590)  # 1600 failures, ~1 MB of text

    summary = render_summary(verdict)

    assert len(summary.encode("utf-8")) <= SUMMARY_LIMIT_BYTES
    assert summary.startswith("## ❌ FAIL") and "### Why: 1 cause" in summary and "### Checks" in summary
    shown = summary.count("- ❌ **test_invite_")
    assert 0 < shown < 1600
    assert f"_{1600 - shown} more left out to keep summary.md under 512 KiB" in summary
    assert summary.endswith("</details>\n")


def test_a_summary_whose_top_alone_is_too_long_is_cut_at_a_line_with_a_note() -> None:
    verdict = build_verdict(started_at=datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc), duration_s=1.0,
                            target=TARGET, tasks=TASKS, checks=PASSING,
                            warnings=[f"warning {n}: " + "w" * 200 for n in range(40)])

    summary = render_summary(verdict, limit_bytes=4096)

    assert len(summary.encode("utf-8")) <= 4096
    assert summary.startswith("## ✅ PASS") and summary.endswith("verdict.json has it all._\n")


def test_two_causes_with_one_next_step_say_it_once() -> None:
    line = "task {} log: {}"
    diagnoses = [Diagnosis("code_error", T1, "raised AttributeError", line.format(T1[:8], "AttributeError: x"), "fix it"),
                 Diagnosis("code_error", T2, "raised NameError", line.format(T2[:8], "NameError: y"), "fix it")]
    verdict = build_verdict(started_at=datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc), duration_s=1.0,
                            target=TARGET, tasks=TASKS, checks=[check("t", T1, "failed", "500")], diagnoses=diagnoses)

    lines = render_summary(verdict).splitlines()

    assert len(verdict["causes"]) == 2
    assert [line for line in lines if "next step:" in line] == ["   - next step: fix it", "   - next step: as for 1. above"]


def test_a_task_left_without_checks_is_named_with_why() -> None:
    checks = [check(f"test_health[{T1[:8]}]", T1, "passed"), check(f"test_invites[{T1[:8]}]", T1, "passed")]
    left_out = [LeftOut(f"test_health[{T2[:8]}]", T2, "deselected by -k '3f2a9c0d'"),
                LeftOut(f"test_invites[{T2[:8]}]", T2, "deselected by -k '3f2a9c0d'")]
    decision = decide(checks, task_ids=[T1, T2], left_out=left_out)
    (cause,) = decision.diagnoses
    assert (decision.exit_code, cause["category"], cause["task_id"]) == (6, "no_checks_ran", T2)
    assert cause["summary"] == f"no check ran on 1 of 2 task(s) ({T2[:8]}): not verified"
    assert cause["evidence"] == f"task {T2[:8]}: 2 check(s) deselected by -k '3f2a9c0d'"
    assert "smoke_suites" in cause["next_step"] and "-k/-m" in cause["next_step"]


def test_a_narrowed_selection_that_checks_every_task_passes_and_says_what_it_left_out() -> None:
    checks = [check(f"test_health[{t[:8]}]", t, "passed") for t in (T1, T2)]
    checks += [check(f"test_invites[{t[:8]}]", t, "skipped", "writes: --read-only") for t in (T1, T2)]
    left_out = [LeftOut(f"test_join[{t[:8]}]", t, "deselected by -k 'health'") for t in (T1, T2)]
    assert decide(checks, task_ids=[T1, T2], left_out=left_out).exit_code == 0
    assert describe_left_out([*left_out, *skipped_checks(checks)]) == [
        "left out 2 check(s) deselected by -k 'health': test_join",
        "left out 2 check(s) skipped (writes: --read-only): test_invites",
    ]


# A suite of the tests' own: one cause that is the service's fault, one that means "could not verify".
SHOP = SuiteProfile("Shop", "Shop/Smoke", causes=(
    SuiteCause("out_of_stock_fixture", "The fixture product has no stock", "Run the seed job."),
    SuiteCause("sandbox_closed", "The payment sandbox is closed", "Run again when it opens.", not_verified=True),
), next_steps={"migrations_not_applied": "Run `shop migrate` before the server starts."})


def suite_diagnosis(category: str, task_id: str = T1) -> Diagnosis:
    return Diagnosis(category, task_id, "a suite cause", "evidence", "its own step")


def test_a_suite_cause_of_the_service_fails_the_run() -> None:
    decision = decide([check("c", T1, "failed")], diagnoses=[suite_diagnosis("out_of_stock_fixture")], suite=SHOP)
    assert (decision.verdict, decision.exit_code) == ("fail", 1)


def test_a_could_not_verify_suite_cause_is_exit_6_named_by_its_own_category_only() -> None:
    # The check proved the suite cause: its row is an error naming it (the pytest layer does that), not a failure.
    checks = [check("c", T1, "passed"), {**check("pay", T1, "error"), "category": "sandbox_closed"}]
    decision = decide(checks, diagnoses=[suite_diagnosis("sandbox_closed")], task_ids=[T1], suite=SHOP)
    assert (decision.verdict, decision.exit_code) == ("error", 6)
    assert [d["category"] for d in decision.diagnoses] == ["sandbox_closed"]  # no checks_errored beside it
    # Without the suite the same category is unknown: the errored check is the set-up's, still exit 6.
    unknown = decide(checks, diagnoses=[suite_diagnosis("sandbox_closed")], task_ids=[T1])
    assert [d["category"] for d in unknown.diagnoses] == ["sandbox_closed", "checks_errored"]


def test_a_suite_gives_its_own_next_step_for_a_generic_category() -> None:
    generic = Diagnosis("migrations_not_applied", T1, "table users is missing", "log",
                        NEXT_STEPS["migrations_not_applied"])
    tailored = Diagnosis("code_error", T1, "AttributeError", "log", "Use secrets.token_urlsafe(32).")
    decision = decide([check("c", T1, "failed")], diagnoses=[generic, tailored], suite=SHOP)
    assert [d["next_step"] for d in decision.diagnoses] == ["Run `shop migrate` before the server starts.",
                                                           "Use secrets.token_urlsafe(32)."]
    assert decide([check("c", T1, "failed")], diagnoses=[generic]).diagnoses[0]["next_step"] == \
        NEXT_STEPS["migrations_not_applied"]
