"""The pytest layer in-process with ``pytester``: the header and its sources, and no crash, ever.

Each test runs `pytest <repo>/smoke` inside this process, with the harness's plugins
registered by a conftest in pytester's folder, against a local HTTP server on
loopback (or an address nothing listens on). A harness bug is planted by replacing
one internal step with one that raises: what is under test is the guard around it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from plugins import reporting, smoke_plugin
from plugins.core import verdict as verdicts
from tests.loopback import serving

SMOKE = str(Path(__file__).resolve().parent.parent / "smoke")
PLUGINS = '["plugins.fixtures", "plugins.reporting", "plugins.smoke_plugin", "plugins.civicforge.fixtures"]'
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
        "smoke harness options:",
        f"  target-url: {health_server} (from command line)",
        "  health-path: /api/health (from command line)",
        "  stable-timeout: 22.0 (from env SMOKE_STABLE_TIMEOUT)",
        "  board-id: board_from_ini (from ini smoke_board_id)",
    ])
    assert result.ret == 0


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


def test_a_harness_bug_before_the_tests_is_a_verdict_not_an_internal_error(
        smoke: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, health_server: str) -> None:
    def broken_preflight(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyError("deployment_id")

    monkeypatch.setattr(smoke_plugin, "run_preflight", broken_preflight)
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
    assert "Traceback (most recent call last)" in details and "in broken_preflight" in details


def test_a_harness_bug_while_reporting_still_leaves_a_verdict(
        smoke: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, health_server: str) -> None:
    def broken_reports(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("summary template missing")

    monkeypatch.setattr(smoke_plugin, "write_reports", broken_reports)
    result = run(smoke, "--target-url", health_server)
    assert result.ret == 6
    result.stdout.fnmatch_lines(["harness error: RuntimeError: summary template missing in _write_reports*"])
    verdict = json.loads((smoke.path / "reports" / "verdict.json").read_text())
    assert verdict["verdict"] == "error" and verdict["checks"], verdict


def test_when_even_the_verdict_cannot_be_written_the_one_line_says_so(
        smoke: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, health_server: str) -> None:
    def full_disk(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

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
    def broken_outputs(*_args: Any, **_kwargs: Any) -> Any:
        raise AttributeError("'NoneType' object has no attribute 'junitxml'")

    monkeypatch.setattr(smoke_plugin, "configure_outputs", broken_outputs)
    result = run(smoke, "--target-url", health_server)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == 6 and "INTERNALERROR" not in output and "Traceback" not in output
    report_dir = smoke.path / "reports"
    assert (f"harness error: AttributeError: 'NoneType' object has no attribute 'junitxml' in pytest_configure; "
            f"details in {report_dir}/harness-error.txt") in output
    assert "in broken_outputs" in (report_dir / "harness-error.txt").read_text()
