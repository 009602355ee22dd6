"""The pytest layer in-process with ``pytester``: the header and its sources, and no crash, ever.

Each test runs `pytest <repo>/smoke` inside this process, with the harness's plugins
registered by a conftest in pytester's folder, against a local HTTP server on
loopback (or an address nothing listens on), or through ECS discovery against a shared
stage (``--strict-lint``, ``--bootstrap-accounts`` and its production guard). A harness
bug is planted by replacing one internal step with one that raises: what is under test
is the guard around it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from ecs_verdict.pytest_plugin import reporting, smoke_plugin
from ecs_verdict import verdict as verdicts
from stage import Stage
from tests.conftest import StagePlan, on_shared_stage
from tests.loopback import serving

SMOKE = str(Path(__file__).resolve().parent.parent / "smoke")
PLUGINS = '["ecs_verdict.pytest_plugin.fixtures", "ecs_verdict.pytest_plugin.reporting", "ecs_verdict.pytest_plugin.smoke_plugin", "plugins.fixtures"]'
ACCOUNTS = {"SMOKE_OWNER_USERNAME": "o", "SMOKE_OWNER_PASSWORD": "owner-secret-1", "SMOKE_PARTICIPANT_USERNAME": "p",
            "SMOKE_PARTICIPANT_PASSWORD": "participant-secret-1"}


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        body = json.dumps({"status": "healthy", "database": "connected"}).encode()
        self.send_response(200 if self.path in ("/health", "/api/health") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[str]:
    with serving(_Healthy) as base_url:
        yield base_url


@pytest.fixture
def smoke(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeconftest(f"pytest_plugins = {PLUGINS}")
    for name in ("API_BASE_URL", "ECS_CLUSTER", "ECS_SERVICE", "SMOKE_SECRET", "SMOKE_STABLE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in ACCOUNTS.items():
        monkeypatch.setenv(name, value)
    return pytester


def run(smoke: pytest.Pytester, *args: str) -> pytest.RunResult:
    return smoke.runpytest_inprocess(SMOKE, "-p", "no:cacheprovider", "--report-dir", str(smoke.path / "reports"),
                                     "-k", "health", *args)


def test_the_header_names_each_value_and_where_it_came_from(smoke: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                            health_server: str) -> None:
    monkeypatch.setenv("SMOKE_STABLE_TIMEOUT", "22")
    ini = ("-o", "smoke_board_id=board_from_ini", "-o", "smoke_stable_timeout=11")  # -o: pytest's ini overrides
    result = run(smoke, *ini, "--target-url", health_server, "--health-path", "/api/health")
    result.stdout.fnmatch_lines([
        "smoke suite: CivicForge board (its causes: missing_board_owner)",
        "smoke harness options:",
        f"  target-url: {health_server} (from command line)",
        "  health-path: /api/health (from command line)",
        "  stable-timeout: 22.0 (from env SMOKE_STABLE_TIMEOUT)",
        "  metrics-namespace: CivicForge/Smoke (from suite CivicForge board)",
    ])
    # The board is the CivicForge suite's own option: its plugin adds it, resolves it and shows it.
    result.stdout.fnmatch_lines(["CivicForge suite options:", "  board-id: board_from_ini (from ini smoke_board_id)"])
    assert result.ret == 0


def test_a_bad_board_id_is_the_suites_own_exit_4_line(smoke: pytest.Pytester, health_server: str) -> None:
    result = run(smoke, "--target-url", health_server, "--board-id", "two words")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --board-id (from command line): 'two words' is not a name (no spaces)"])


def test_the_command_line_wins_over_environment_and_ini(smoke: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                        health_server: str) -> None:
    monkeypatch.setenv("SMOKE_STABLE_TIMEOUT", "22")
    result = run(smoke, "-o", "smoke_stable_timeout=11", "--target-url", health_server, "--stable-timeout", "33")
    result.stdout.fnmatch_lines(["  stable-timeout: 33.0 (from command line)"])


def test_a_bad_value_is_exit_4_and_one_line(smoke: pytest.Pytester) -> None:
    result = run(smoke, "--target-url", "http://u:p@127.0.0.1:9")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --target-url (from command line): target URL must not carry credentials*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_an_unreachable_target_url_is_one_could_not_verify(smoke: pytest.Pytester) -> None:
    # In a subprocess: httpx maps httpcore's errors by class, and an in-process run re-imports httpcore.
    result = smoke.runpytest_subprocess(SMOKE, "-p", "no:cacheprovider", "--report-dir", str(smoke.path / "reports"),
                                        "--target-url", "http://127.0.0.1:9")
    assert result.ret == 6
    result.stdout.fnmatch_lines(["could not verify: target http://127.0.0.1:9: ConnectError*"])
    verdict = json.loads((smoke.path / "reports" / "verdict.json").read_text())
    assert [d["category"] for d in verdict["diagnoses"]] == ["target_unreachable"]
    assert verdict["checks"] == []  # no test ran to error nine times over


def planted(error: BaseException) -> Callable[..., Any]:
    """A stand-in for one internal step of the harness that raises ``error``: the guard around it is under test."""
    def broken_step(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    return broken_step


def test_a_harness_bug_before_the_tests_is_a_verdict_not_an_internal_error(
        smoke: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, health_server: str) -> None:
    monkeypatch.setattr(smoke_plugin, "run_preflight", planted(KeyError("deployment_id")))
    result = run(smoke, "--target-url", health_server)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == 6 and "INTERNALERROR" not in output
    report_dir = smoke.path / "reports"
    result.stdout.fnmatch_lines([f"harness error: KeyError: 'deployment_id' in _preflight; details in "
                                 f"{report_dir}/harness-error.txt"])
    verdict = json.loads((report_dir / "verdict.json").read_text())
    assert (verdict["verdict"], verdict["exit_code"]) == ("error", 6)
    assert [d["category"] for d in verdict["diagnoses"]] == ["harness_error"]
    details = (report_dir / "harness-error.txt").read_text()
    assert "Traceback (most recent call last)" in details and "in broken_step" in details


def test_a_harness_bug_while_reporting_still_leaves_a_verdict(
        smoke: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, health_server: str) -> None:
    monkeypatch.setattr(smoke_plugin, "write_reports", planted(RuntimeError("summary template missing")))
    result = run(smoke, "--target-url", health_server)
    assert result.ret == 6
    result.stdout.fnmatch_lines(["harness error: RuntimeError: summary template missing in _write_reports*"])
    verdict = json.loads((smoke.path / "reports" / "verdict.json").read_text())
    assert verdict["verdict"] == "error" and verdict["checks"], verdict


def test_when_even_the_verdict_cannot_be_written_the_one_line_says_so(
        smoke: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, health_server: str) -> None:
    full_disk = planted(OSError(28, "No space left on device"))
    monkeypatch.setattr(verdicts, "write_verdict", full_disk)
    monkeypatch.setattr(reporting.verdicts, "write_verdict", full_disk)
    result = run(smoke, "--target-url", health_server)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == 6 and "INTERNALERROR" not in output
    result.stdout.fnmatch_lines(["harness error: OSError: * in _write_reports*verdict.json could not be written to "
                                 "*(No space left on device)"])
    assert "owner-secret-1" not in output


def test_a_harness_bug_while_configuring_is_one_line_and_exit_6(
        smoke: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, health_server: str) -> None:
    error = AttributeError("'NoneType' object has no attribute 'junitxml'")
    monkeypatch.setattr(smoke_plugin, "configure_outputs", planted(error))
    result = run(smoke, "--target-url", health_server)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == 6 and "INTERNALERROR" not in output and "Traceback" not in output
    report_dir = smoke.path / "reports"
    assert (f"harness error: AttributeError: 'NoneType' object has no attribute 'junitxml' in pytest_configure; "
            f"details in {report_dir}/harness-error.txt") in output
    assert "in broken_step" in (report_dir / "harness-error.txt").read_text()


# -- against the stage, through ECS discovery ---------------------------------------------------------

# The deployed task definition's health check has no startPeriod: lint warns, every check passes.
NO_START_PERIOD = StagePlan("healthy", ("no_start_period",))
STAGE_ONLY = ("-k", "deployment or health")  # the checks that need no smoke account
PARTICIPANT_ONLY = ("-k", "participant_cannot_create_invites")  # logs the participant in on each task
NEW_PARTICIPANT = {"username": "smoke-participant-new", "password": "new-participant-secret-1"}


def on_stage(smoke: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, stage: Stage,
             participant: dict[str, str] | None = None) -> pytest.Pytester:
    """Point the runs at ``stage`` the way a CI job does: its environment, its smoke accounts.

    Tests ask for ``shared_stage`` before ``smoke``: pytester puts ``sys.modules`` back as
    it found them, and a stage started after that would lose the moto modules it runs on.
    """
    for name, value in stage.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    owner, participant = stage.smoke_accounts["owner"], participant or stage.smoke_accounts["participant"]
    for role, account in (("OWNER", owner), ("PARTICIPANT", participant)):
        monkeypatch.setenv(f"SMOKE_{role}_USERNAME", account["username"])
        monkeypatch.setenv(f"SMOKE_{role}_PASSWORD", account["password"])
    return smoke


def log_in(stage: Stage, account: dict[str, str]) -> int:
    """The status of a login as ``account`` on the stage's first task."""
    with httpx.Client(base_url=f"http://{sorted(stage.task_ips().values())[0]}:{stage.port}", timeout=10.0) as client:
        return client.post("/api/auth/login", json=account).status_code


def run_on_stage(smoke: pytest.Pytester, name: str, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    report_dir = smoke.path / name
    result = smoke.runpytest_inprocess(SMOKE, "-p", "no:cacheprovider", "--report-dir", str(report_dir),
                                       "--ledger", str(smoke.path / f"{name}.ledger.jsonl"), *args)
    return result, json.loads((report_dir / "verdict.json").read_text())


@on_shared_stage(NO_START_PERIOD)
def test_a_lint_warning_passes_with_a_warning_and_fails_under_strict_lint(
        shared_stage: Stage, smoke: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    on_stage(smoke, monkeypatch, shared_stage)
    lenient, verdict = run_on_stage(smoke, "lenient", *STAGE_ONLY)
    assert lenient.ret == 0, lenient.stdout.str()[-3000:]
    assert (verdict["verdict"], verdict["exit_code"], verdict["diagnoses"]) == ("pass", 0, [])
    # In process with the stage, the stage's threads keep the tasks out of lanes: the run says so too;
    # and -k left the checks that need an account out, which the run says as well.
    assert any(line.startswith("note: left out ") and "deselected by -k 'deployment or health'" in line
               for line in verdict["warnings"]), verdict["warnings"]
    [warning] = [line for line in verdict["warnings"] if "not in lanes" not in line and "left out" not in line]
    assert "has no startPeriod" in warning
    assert {c["outcome"] for c in verdict["checks"]} == {"passed"}

    strict, verdict = run_on_stage(smoke, "strict", *STAGE_ONLY, "--strict-lint")
    assert strict.ret == 1, strict.stdout.str()[-3000:]
    assert (verdict["verdict"], verdict["exit_code"]) == ("fail", 1)
    assert [d["category"] for d in verdict["diagnoses"]] == ["task_definition_lint"]
    assert {c["outcome"] for c in verdict["checks"]} == {"passed"}  # the checks still passed: lint failed the run
    strict.stdout.fnmatch_lines(["  strict-lint: True (from command line)"])


@on_shared_stage(NO_START_PERIOD)
def test_bootstrap_accounts_will_not_register_on_production(
        shared_stage: Stage, smoke: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    on_stage(smoke, monkeypatch, shared_stage, participant=NEW_PARTICIPANT)
    result, verdict = run_on_stage(smoke, "production", *PARTICIPANT_ONLY, "--bootstrap-accounts")
    output = result.stdout.str() + result.stderr.str()
    # Refused once, before any test: every test that logs the participant in would fail the same way.
    assert result.ret == 6, output[-3000:]
    headline = f"could not verify: --bootstrap-accounts would register {NEW_PARTICIPANT['username']!r} on production"
    assert [line for line in output.splitlines() if line.startswith("could not verify:")] == [
        f"{headline}: create the participant account by hand, or pass --environment NAME for a test stage"]
    assert "INTERNALERROR" not in output
    assert (verdict["verdict"], verdict["checks"]) == ("error", [])
    assert [d["category"] for d in verdict["diagnoses"]] == ["smoke_accounts"]
    assert log_in(shared_stage, NEW_PARTICIPANT) == 401  # nobody was registered


@on_shared_stage(NO_START_PERIOD)
@pytest.mark.changes_shared_stage  # registers a participant account
def test_bootstrap_accounts_registers_a_missing_participant_off_production(
        shared_stage: Stage, smoke: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    on_stage(smoke, monkeypatch, shared_stage, participant=NEW_PARTICIPANT)
    refused, verdict = run_on_stage(smoke, "refused", *PARTICIPANT_ONLY, "--environment", "staging")
    assert refused.ret == 6, refused.stdout.str()[-3000:]  # without the flag: the missing account is named once
    assert [d["category"] for d in verdict["diagnoses"]] == ["smoke_accounts"]
    result, verdict = run_on_stage(smoke, "bootstrapped", *PARTICIPANT_ONLY, "--environment", "staging",
                                   "--bootstrap-accounts")
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert {c["outcome"] for c in verdict["checks"]} == {"passed"}
    assert log_in(shared_stage, NEW_PARTICIPANT) == 200
