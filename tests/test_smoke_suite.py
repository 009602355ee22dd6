"""The smoke suite end to end: ``pytest smoke`` as a real subprocess against the local stage.

One shared stage per scenario and fault (``shared_stage``, parametrised indirectly with
a ``StagePlan``: tests of one plan run one after another, one stage at a time, as moto's
state is process-wide), reused by every assertion about it. Outcomes come from the run's
``verdict.json``; memberships are counted through the API as the owner; "no user added"
is read from the tasks' CloudWatch access logs, which must show logins and no registration.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugins.ledger import Ledger
from stage import Stage
from stage.seed import LOG_GROUP
from tests.conftest import StagePlan, on_shared_stage
from tests.smoke_runs import ROOT as REPO_ROOT
from tests.smoke_runs import RUN_TIMEOUT_S, SmokeRun, smoke_command, smoke_env, with_plugin
from tests.smoke_runs import run_smoke as run_stage_smoke

LEDGER_DEADLINE_S = 60.0
LOG_DEADLINE_S = 15.0
POLL_S = 0.05
SMOKE_TESTS = {
    "test_deployment_settled", "test_health_answers_healthy", "test_single_use_invite_admits_the_participant_once",
    "test_board_has_an_owner", "test_owner_account_is_an_owner", "test_owner_can_invite_and_manage_members",
    "test_participant_cannot_create_invites", "test_participant_cannot_remove_members",
    "test_requests_without_credentials_are_refused", "test_removing_a_non_member_answers_404",
}
EXIT_INTERRUPTED = 2

HEALTHY = StagePlan("healthy")
# The build serves /api/health only, and its task definition probes that: they agree.
NO_ROOT_HEALTH = StagePlan("healthy", ("no_root_health",), "/api/health")
NO_MIGRATIONS = StagePlan("one_bad_task", ("no_migrations",))
NO_OWNER = StagePlan("healthy", ("no_owner",))
ROWCOUNT = StagePlan("one_bad_task", ("rowcount",))
URLSAFE = StagePlan("one_bad_task")  # the scenario's own fault: urlsafe (shared with test_verdict_matrix)
PARTICIPANT_CAN_INVITE = StagePlan("one_bad_task", ("participant_can_invite",))
in_stage = on_shared_stage


@pytest.fixture
def stage(shared_stage: Stage) -> Stage:
    return shared_stage


# -- running the suite ------------------------------------------------------------------------------


def run_smoke(stage: Stage, workdir: Path, *args: str) -> SmokeRun:
    """One run with its own report folder; every run in ``workdir`` shares that folder's ledger."""
    report_dir = workdir / f"report-{len(list(workdir.glob('report-*')))}"
    run = run_stage_smoke(stage.env, report_dir, *args, ledger=workdir / "ledger.jsonl")
    # Every run writes its verdict, and the verdict's exit code is the one the process ended with.
    assert run.verdict["exit_code"] == run.exit_code, run.output[-3000:]
    return run


def faulty_task_ids(stage: Stage) -> set[str]:
    return {t.id for t in stage.scheduler.live_tasks() if t.plan.faults.names}


# -- the API, as the owner -------------------------------------------------------------------------


def participant_member_ids(stage: Stage) -> set[int]:
    """The user ids of the smoke participants that are members of board_001, read through the API."""
    accounts = stage.smoke_accounts
    ip = sorted(stage.task_ips().values())[0]
    with httpx.Client(base_url=f"http://{ip}:{stage.port}", timeout=10.0) as client:
        login = client.post("/api/auth/login", json=accounts["owner"])
        assert login.status_code == 200, login.text
        members = client.get("/api/boards/board_001/members",
                             headers={"Authorization": f"Bearer {login.json()['token']}"})
        assert members.status_code == 200, members.text
    pool = {account["username"] for key, account in accounts.items() if key.startswith("participant")}
    return {int(m["user_id"]) for m in members.json() if m["username"] in pool}


def participant_memberships(stage: Stage) -> int:
    """How many memberships of board_001 the smoke participants hold, read through the API."""
    return len(participant_member_ids(stage))


def access_log_lines(stage: Stage, fragment: str) -> list[str]:
    """Every log line of every task containing ``fragment`` (all pages: a shared stage logs a lot)."""
    logs = stage.client("logs")
    lines = []
    for stream in logs.describe_log_streams(logGroupName=LOG_GROUP)["logStreams"]:
        page: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream["logStreamName"],
                                "startFromHead": True}
        while True:
            answer = logs.get_log_events(**page)
            lines += [e["message"] for e in answer["events"] if fragment in e["message"]]
            if not answer["events"] or answer["nextForwardToken"] == page.get("nextToken"):
                break
            page["nextToken"] = answer["nextForwardToken"]
    return lines


def wait_for(condition: Any, deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up after {deadline_s:.0f} s waiting for {what}"
        time.sleep(POLL_S)  # polling an outside process's file/log: no event to wait on


# -- healthy ----------------------------------------------------------------------------------------


@in_stage(HEALTHY)
def test_healthy_passes_and_xdist_gives_the_same_outcomes(stage: Stage, tmp_path: Path) -> None:
    serial = run_smoke(stage, tmp_path)
    assert serial.exit_code == 0, serial.output[-3000:]
    assert serial.verdict["verdict"] == "pass"
    assert {name for name, _ in serial.outcomes()} == SMOKE_TESTS
    per_task = [key for key in serial.outcomes() if key[1] is not None]
    assert {task for _, task in per_task} == set(stage.task_ips())
    parallel = run_smoke(stage, tmp_path, "-n", "4")
    assert parallel.exit_code == 0, parallel.output[-3000:]
    assert parallel.outcomes() == serial.outcomes()
    assert participant_memberships(stage) == 0


@in_stage(HEALTHY)
def test_twenty_runs_add_no_user_and_leave_no_membership(stage: Stage, tmp_path: Path) -> None:
    logins_before = len(access_log_lines(stage, "POST /auth/login"))  # the shared stage has served other runs
    for number in range(20):
        run = run_smoke(stage, tmp_path)
        assert run.exit_code == 0, f"run {number + 1}:\n{run.output[-3000:]}"
        assert participant_memberships(stage) == 0, f"a smoke membership was left after run {number + 1}"
    assert Ledger(tmp_path / "ledger.jsonl", "reader").outstanding() == []
    # The access logs show the runs logged in (so the log search works) and never registered anyone.
    wait_for(lambda: len(access_log_lines(stage, "POST /auth/login")) >= logins_before + 20, LOG_DEADLINE_S,
             "login access lines")
    assert access_log_lines(stage, "POST /auth/register") == []


@in_stage(HEALTHY)
def test_read_only_runs_only_readonly_tests_and_writes_nothing(stage: Stage, tmp_path: Path) -> None:
    run = run_smoke(stage, tmp_path, "--read-only")
    assert run.exit_code == 0, run.output[-3000:]
    names = {name for name, _ in run.outcomes()}
    assert "test_single_use_invite_admits_the_participant_once" not in names
    assert "test_removing_a_non_member_answers_404" not in names
    assert "test_board_has_an_owner" in names
    assert not (tmp_path / "ledger.jsonl").exists()


def join_by_hand(stage: Stage, account: str = "participant") -> int:
    """A membership made outside the harness (a run that died, or one on another machine); its user id."""
    accounts = stage.smoke_accounts
    ip = sorted(stage.task_ips().values())[0]
    with httpx.Client(base_url=f"http://{ip}:{stage.port}", timeout=10.0) as client:
        owner = client.post("/api/auth/login", json=accounts["owner"]).json()["token"]
        participant = client.post("/api/auth/login", json=accounts[account]).json()
        invite = client.post("/api/boards/board_001/invites", json={"role": "participant", "expires_hours": 1},
                             headers={"Authorization": f"Bearer {owner}"}).json()
        token = httpx.URL(invite["invite_url"]).params["token"]
        joined = client.post("/api/boards/board_001/join", json={"token": token},
                             headers={"Authorization": f"Bearer {participant['token']}"})
        assert joined.status_code == 200, joined.text
    return int(participant["user_id"])


def remove_by_hand(stage: Stage, user_id: int) -> None:
    accounts = stage.smoke_accounts
    ip = sorted(stage.task_ips().values())[0]
    with httpx.Client(base_url=f"http://{ip}:{stage.port}", timeout=10.0) as client:
        owner = client.post("/api/auth/login", json=accounts["owner"]).json()["token"]
        removed = client.delete(f"/api/boards/board_001/members/{user_id}", headers={"Authorization": f"Bearer {owner}"})
        assert removed.status_code == 200, removed.text


@in_stage(HEALTHY)
def test_a_crashed_runs_membership_is_swept_by_the_next_run(stage: Stage, tmp_path: Path) -> None:
    """A run on this machine died after its join (its ledger says so): the next run removes the membership."""
    user_id = join_by_hand(stage)
    Ledger(tmp_path / "ledger.jsonl", "crashed-run").record("created", board="board_001", user_id=user_id,
                                                            task="crashed")
    assert participant_memberships(stage) == 1
    run = run_smoke(stage, tmp_path)
    assert run.exit_code == 0, run.output[-3000:]
    assert f"smoke clean-up removed leftover membership(s) of user {user_id}" in run.output
    assert participant_memberships(stage) == 0


@in_stage(HEALTHY)
def test_another_runs_membership_is_left_alone_and_its_account_avoided(stage: Stage, tmp_path: Path) -> None:
    """A run elsewhere holds the first participant right now: this run joins another one and passes."""
    user_id = join_by_hand(stage)
    try:
        run = run_smoke(stage, tmp_path)
        assert run.exit_code == 0, run.output[-3000:]
        assert f"left user {user_id} alone" in run.output
        assert participant_memberships(stage) == 1  # still the other run's
    finally:
        remove_by_hand(stage, user_id)


@in_stage(HEALTHY)
def test_two_full_runs_at_once_never_blame_the_service(stage: Stage, tmp_path: Path) -> None:
    """Two machines' runs (separate ledgers and report folders, no shared lock), ten times over."""
    false_failures = []
    collisions = 0
    for attempt in range(10):
        processes = []
        for machine in ("a", "b"):
            report_dir = tmp_path / f"{attempt}-{machine}"
            command = smoke_command(report_dir, ledger=tmp_path / f"{machine}.ledger.jsonl")
            processes.append((report_dir, subprocess.Popen(
                command, cwd=REPO_ROOT, env=smoke_env(stage.env), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True)))
        for report_dir, process in processes:
            output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
            run = SmokeRun(process.returncode, output, report_dir)
            collisions += sum("held by another run" in warning for warning in run.verdict["warnings"])
            if run.exit_code != 0 or run.failing():
                false_failures.append((attempt, run.exit_code, run.failing() or output[-2000:]))
        assert participant_memberships(stage) == 0, f"attempt {attempt} left a membership behind"
    print(f"two runs at once, 10 times: {collisions} participant collision(s) noted, "
          f"{len(false_failures)} false failure(s)")
    assert false_failures == []


# Loaded into the interrupted run with -p: once a join has succeeded (the ledger has its "created"
# entry), the process's next request waits until the test lets go. The test interrupts the run
# while it waits, so the signal always lands between the join and the removal.
HOLD_AFTER_JOIN_HOOK = '''
import os
import socket

import httpx

_send = httpx.Client.send
_state = {"joined": False, "held": False}


def _send_holding_after_the_join(self, request, **kwargs):
    if _state["joined"] and not _state["held"]:
        _state["held"] = True
        with socket.create_connection(("127.0.0.1", int(os.environ["SMOKE_TEST_HOLD_PORT"]))) as hold:
            hold.sendall(b"joined")
            try:
                hold.recv(1)  # returns (or fails) when the test closes its end
            except OSError:
                pass
    response = _send(self, request, **kwargs)
    if request.method == "POST" and request.url.path.endswith("/join") and response.status_code == 200:
        _state["joined"] = True
    return response


httpx.Client.send = _send_holding_after_the_join
'''


def accept_the_hold(server: socket.socket, process: subprocess.Popen[str], deadline_s: float) -> socket.socket:
    """The first run process that holds after its join; fails if the run ends or the deadline passes first."""
    deadline = time.monotonic() + deadline_s
    server.settimeout(0.2)  # to notice a run that ended instead
    while True:
        assert process.poll() is None, "the run ended before it joined, so it could not be interrupted"
        assert time.monotonic() < deadline, f"no join held after {deadline_s:.0f} s"
        try:
            connection, _ = server.accept()
        except TimeoutError:
            continue
        connection.settimeout(deadline_s)
        assert connection.recv(16) == b"joined"
        return connection


@in_stage(HEALTHY)
@pytest.mark.parametrize(("signum", "workers"), [(signal.SIGINT, "0"), (signal.SIGTERM, "0"), (signal.SIGINT, "2")],
                         ids=["SIGINT", "SIGTERM", "SIGINT-xdist"])
def test_interrupted_invite_flow_leaves_no_membership(stage: Stage, tmp_path: Path, signum: int, workers: str) -> None:
    """Interrupted between the join and the removal (the controller alone gets the signal, as from CI)."""
    ledger_path = tmp_path / "ledger.jsonl"
    ledger = Ledger(ledger_path, "reader")
    command = smoke_command(tmp_path / "report", "smoke/test_invites.py", "-n", workers, "-p", "hold_after_join",
                            ledger=ledger_path)
    with socket.create_server(("127.0.0.1", 0)) as server:
        env = with_plugin(tmp_path, "hold_after_join", HOLD_AFTER_JOIN_HOOK,
                          {**stage.env, "SMOKE_TEST_HOLD_PORT": str(server.getsockname()[1])})
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=smoke_env(env), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            with accept_the_hold(server, process, LEDGER_DEADLINE_S):
                # Caught mid-flow: the ledger records the join, the service lists the member, no removal yet.
                created = {e.user_id for e in ledger.entries() if e.event == "created"}
                assert created, ledger.entries()
                assert created <= participant_member_ids(stage)
                assert [e for e in ledger.entries() if e.event == "removed"] == []
                process.send_signal(signum)
            server.close()  # leaving the hold lets the held request go on; closing here, any other worker's
            output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == EXIT_INTERRUPTED, output[-3000:]
    assert participant_memberships(stage) == 0, output[-3000:]
    assert ledger.outstanding() == []


# -- each fault is caught and named ------------------------------------------------------------------


@in_stage(NO_ROOT_HEALTH)
def test_the_health_path_comes_from_the_task_definition(stage: Stage, tmp_path: Path) -> None:
    # No --health-path: the harness checks what ECS's own health check probes (/api/health here).
    run = run_smoke(stage, tmp_path, "-k", "deployment or health")
    assert run.exit_code == 0, run.output[-3000:]
    assert "health-path: /api/health (from task definition)" in run.output
    assert {outcome for (name, _), outcome in run.outcomes().items() if name == "test_health_answers_healthy"} == {
        "passed"}


@in_stage(NO_ROOT_HEALTH)
def test_a_health_path_the_build_does_not_serve_is_named(stage: Stage, tmp_path: Path) -> None:
    run = run_smoke(stage, tmp_path, "--health-path", "/health")
    assert run.exit_code == 1, run.output[-3000:]
    assert "health-path: /api/health (from task definition)" not in run.output
    # The preflight already finds it: /health is 404 while /api/health answers (runbook lesson 1).
    [finding] = run.diagnoses("health_path_mismatch")
    assert "/health" in finding["summary"] and "404" in finding["summary"], finding
    assert "test_health_answers_healthy" not in {name for name, _ in run.outcomes()}


@in_stage(NO_MIGRATIONS)
def test_no_migrations_fails_only_the_bad_task_and_is_named(stage: Stage, tmp_path: Path) -> None:
    run = run_smoke(stage, tmp_path)
    assert run.exit_code == 1, run.output[-3000:]
    bad = faulty_task_ids(stage)
    failing = run.failing()
    assert failing and {task for _, task in failing} == bad
    assert ("test_health_answers_healthy", next(iter(bad))) not in failing  # health runs only SELECT 1
    assert all("500" in message for message in failing.values())
    [finding] = run.diagnoses("migrations_not_applied")
    assert finding["task_id"] in bad and "no such table" in finding["evidence"]
    assert "python -m src.board_mvp.migrations_pg" in finding["next_step"]  # CivicForge's step for the generic cause


@in_stage(NO_OWNER)
def test_no_owner_is_named_in_the_runbook_words(stage: Stage, tmp_path: Path) -> None:
    run = run_smoke(stage, tmp_path)
    assert run.exit_code == 1, run.output[-3000:]
    failing = run.failing()
    for task in stage.task_ips():
        message = failing[("test_board_has_an_owner", task)]
        assert "board_001 has no owner: Missing Initial Board Owner (runbook lesson 3)" in message
    assert {d["task_id"] for d in run.diagnoses("missing_board_owner")} == set(stage.task_ips())
    # CivicForge's cause (its plugin's profile, not the harness): its next step, and the owner account's
    # refusals on the same tasks absorbed into it rather than named as contract violations of their own.
    assert run.categories() == {"missing_board_owner"}, run.verdict["diagnoses"]
    assert all("python -m src.board_mvp.migrations_pg" in d["next_step"] for d in run.diagnoses("missing_board_owner"))


@in_stage(ROWCOUNT)
def test_rowcount_is_named_as_lesson_7_on_the_bad_task_only(stage: Stage, tmp_path: Path) -> None:
    run = run_smoke(stage, tmp_path)
    assert run.exit_code == 1, run.output[-3000:]
    [bad] = faulty_task_ids(stage)
    assert set(run.failing()) == {("test_removing_a_non_member_answers_404", bad)}
    assert "runbook lesson 7" in run.failing()[("test_removing_a_non_member_answers_404", bad)]
    assert [d["task_id"] for d in run.diagnoses("db_adapter_error")] == [bad]


@in_stage(URLSAFE)
def test_urlsafe_fails_the_invite_test_on_the_bad_task_and_is_named(stage: Stage, tmp_path: Path) -> None:
    run = run_smoke(stage, tmp_path)
    assert run.exit_code == 1, run.output[-3000:]
    [bad] = faulty_task_ids(stage)
    assert set(run.failing()) == {("test_single_use_invite_admits_the_participant_once", bad)}
    assert "500" in run.failing()[("test_single_use_invite_admits_the_participant_once", bad)]
    named = [d for d in run.verdict["diagnoses"] if d["task_id"] == bad and "urlsafe" in json.dumps(d)]
    assert named, run.verdict["diagnoses"]
    assert participant_memberships(stage) == 0


@in_stage(PARTICIPANT_CAN_INVITE)
def test_participant_can_invite_is_a_security_failure(stage: Stage, tmp_path: Path) -> None:
    run = run_smoke(stage, tmp_path)
    assert run.exit_code == 1, run.output[-3000:]
    [bad] = faulty_task_ids(stage)
    failing = run.failing()
    assert set(failing) == {("test_participant_cannot_create_invites", bad)}
    message = failing[("test_participant_cannot_create_invites", bad)]
    # The class is the harness's (contracts re-exports it), so the report recognises it whichever suite raised it.
    assert message.startswith("ecs_verdict.findings.ContractViolation: SECURITY: permission granted that must be denied")
    assert [d["task_id"] for d in run.diagnoses("permission_regression")] == [bad]
    # The invite the regression let through is a secret: its URL never reaches a report file.
    reports = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    assert "token=" not in reports.replace("token=***", "")
