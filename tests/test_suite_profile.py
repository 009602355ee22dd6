"""A suite plugs in through ``pytest_smoke_suite``: its name, namespace and causes reach every report.

Each case is one real `pytest` run of a small suite of its own ("Shop") in a temporary folder,
with the harness's plugins given by ``-p`` and no CivicForge plugin loaded, against a loopback
health server. The suite's conftest answers ``pytest_smoke_suite`` with two causes: one the
service's fault (exit 1), one that means could-not-verify (exit 6). A run no suite answers for
gets the generic names and never passes on nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ecs_verdict.categories import CATEGORIES
from ecs_verdict.suite import NO_SUITE, profile_problems
from plugins.causes import CIVICFORGE_PROFILE
from tests.smoke_runs import ROOT, RUN_TIMEOUT_S, SmokeRun
from tests.test_no_checks import health_url, run_suite, suite_folder  # noqa: F401 - health_url is a fixture

SHOP_CONFTEST = '''
from ecs_verdict.suite import SuiteCause, SuiteProfile

SHOP = SuiteProfile(
    name="Shop",
    metrics_namespace="Shop/Smoke",
    causes=(
        SuiteCause("out_of_stock_fixture", "The fixture product has no stock: the seed job did not run",
                   "Run `shop seed` against the database, then the gate again.", absorbs_statuses=(404,)),
        SuiteCause("sandbox_closed", "The payment sandbox is closed", "Run again when it opens.", not_verified=True),
    ),
)


def pytest_smoke_suite(config):
    return SHOP
'''
SHOP_TESTS = '''
import pytest
from ecs_verdict.findings import ContractViolation


@pytest.mark.readonly
def test_health(smoke_http, smoke_target, smoke_health_path):
    assert smoke_http.get(smoke_health_path).status_code == 200


@pytest.mark.readonly
def test_stock(smoke_http, smoke_target):
    if {cause!r}:
        raise ContractViolation(check="stock", expected="the fixture product in stock", actual="0 in stock",
                                task=smoke_target.short_id, category={cause!r})


@pytest.mark.readonly
def test_cart(smoke_http, smoke_target):
    response = smoke_http.get("/api/cart")  # 404: the consequence of no stock, absorbed by that cause
    if response.status_code != 200:
        raise ContractViolation.from_response(response, check="cart", expected="200", actual=str(response.status_code),
                                              task=smoke_target.short_id)
'''


def shop_suite(tmp_path: Path, cause: str | None, conftest: str = SHOP_CONFTEST) -> Path:
    folder = tmp_path / "shop_smoke"
    folder.mkdir()
    (folder / "conftest.py").write_text(conftest)
    (folder / "test_shop.py").write_text(SHOP_TESTS.format(cause=cause))
    return folder


def report_file(run: SmokeRun) -> dict:
    return json.loads((run.report_dir / "allure-results" / "smoke-report.json").read_text())


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_a_check_naming_a_suite_cause_fails_the_run_under_that_cause_everywhere(
        tmp_path: Path, health_url: str, workers: tuple[str, ...]) -> None:  # noqa: F811
    run = run_suite(shop_suite(tmp_path, "out_of_stock_fixture"), tmp_path / "reports", "--target-url", health_url,
                    *workers)
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output, run.output[-3000:]
    assert run.exit_code == 1, run.output[-3000:]
    # The cart's 404 is the missing stock's consequence on the same task: one cause, not two.
    (cause,) = run.verdict["causes"]
    assert cause["category"] == "out_of_stock_fixture"
    assert cause["summary"] == "The fixture product has no stock: the seed job did not run"
    assert cause["next_step"] == "Run `shop seed` against the database, then the gate again."
    assert "expected the fixture product in stock, got 0 in stock" in cause["evidence"]
    assert "[out_of_stock_fixture]" in (run.report_dir / "summary.md").read_text()
    assert "why [out_of_stock_fixture]: The fixture product has no stock" in run.output
    assert "smoke suite: Shop (its causes: out_of_stock_fixture, sandbox_closed)" in run.output
    assert "metrics-namespace: Shop/Smoke (from suite Shop)" in run.output
    report = report_file(run)
    assert report["report_name"] == "Shop smoke"
    assert [rule["id"] for rule in report["categories"]] == ["out_of_stock_fixture", "sandbox_closed"]
    labels = [label for path in (run.report_dir / "allure-results").glob("*-result.json")
              for label in json.loads(path.read_text())["labels"] if label["name"] == "smoke_category"]
    assert {label["value"] for label in labels} == {"out_of_stock_fixture"}


def test_a_could_not_verify_suite_cause_is_exit_6_under_its_own_name(tmp_path: Path, health_url: str) -> None:  # noqa: F811
    run = run_suite(shop_suite(tmp_path, "sandbox_closed"), tmp_path / "reports", "--target-url", health_url,
                    "-k", "not cart")
    assert run.exit_code == 6, run.output[-3000:]
    assert run.verdict["verdict"] == "error"
    assert run.categories() == {"sandbox_closed"}, run.verdict["diagnoses"]
    assert {c["name"]: (c["outcome"], c.get("category")) for c in run.verdict["checks"]}["test_stock"] == (
        "error", "sandbox_closed")


def test_a_suite_profile_that_reuses_a_harness_category_is_exit_4_in_one_line(tmp_path: Path,
                                                                                health_url: str) -> None:  # noqa: F811
    clash = SHOP_CONFTEST.replace('"out_of_stock_fixture"', '"stale_image"')
    run = run_suite(shop_suite(tmp_path, None, clash), tmp_path / "reports", "--target-url", health_url)
    assert run.exit_code == 4, run.output[-3000:]
    assert "Traceback" not in run.output
    assert ("suite 'Shop': cause 'stale_image' is one of the harness's own categories: give it another name: "
            "fix the suite's plugin") in run.output


def test_a_registered_suite_no_plugin_answers_for_gets_the_generic_names(tmp_path: Path,
                                                                          health_url: str) -> None:  # noqa: F811
    run = run_suite(suite_folder(tmp_path, "readonly"), tmp_path / "reports", "--target-url", health_url)
    assert run.exit_code == 0, run.output[-3000:]
    assert f"smoke suite: {NO_SUITE.name}" in run.output
    assert f"metrics-namespace: {NO_SUITE.metrics_namespace} (from default)" in run.output
    assert report_file(run)["report_name"] == "ecs-verdict smoke" and report_file(run)["categories"] == []


def test_a_folder_no_suite_registers_never_passes_against_ecs(tmp_path: Path) -> None:
    """No suite, a cluster and service that answer nothing (AWS on a closed loopback port): never exit 0."""
    run = run_suite(suite_folder(tmp_path, "readonly"), tmp_path / "reports", "--ecs-cluster", "shop",
                    "--ecs-service", "shop-api", "--aws-region", "us-east-1", registered=False,
                    env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "testing",
                         "AWS_SECRET_ACCESS_KEY": "testing"})
    assert run.exit_code == 6, run.output[-3000:]
    assert run.categories() == {"no_checks_ran"}


def test_the_civicforge_profile_is_valid_and_names_what_the_harness_no_longer_does() -> None:
    assert profile_problems(CIVICFORGE_PROFILE, CATEGORIES) == []
    assert CIVICFORGE_PROFILE.metrics_namespace == "CivicForge/Smoke"
    assert "missing_board_owner" not in CATEGORIES
    assert CIVICFORGE_PROFILE.cause("missing_board_owner") is not None
    assert set(CIVICFORGE_PROFILE.next_steps) <= set(CATEGORIES)


ALLURE_TOOLS = ROOT / ".tools"


@pytest.mark.skipif(shutil.which("node") is None or not (ALLURE_TOOLS / "node_modules" / ".bin" / "allure").exists(),
                    reason="Node.js and the Allure 3 CLI (make report installs it) render the report")
def test_the_rendered_report_has_the_suites_name_and_a_category_for_its_cause(tmp_path: Path,
                                                                                health_url: str) -> None:  # noqa: F811
    run = run_suite(shop_suite(tmp_path, "out_of_stock_fixture"), tmp_path / "reports", "--target-url", health_url)
    assert run.exit_code == 1, run.output[-3000:]
    html = tmp_path / "allure-report"
    subprocess.run(["node", str(ROOT / "report" / "allure-report.mjs"), str(run.report_dir / "allure-results"),
                    str(html), str(ALLURE_TOOLS)], cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    widget = json.loads((html / "widgets" / "categories.json").read_text())
    names = [node["name"] for node in widget["nodes"].values() if node.get("type") == "category"]
    # Without the run's rules the static ones know no suite cause, and Allure files it under "Product errors".
    assert names == ["out_of_stock_fixture: The fixture product has no stock: the seed job did not run"]
    assert "<title> Shop smoke: FAIL (exit 1): [out_of_stock_fixture]" in (html / "index.html").read_text()


def test_with_pytester_a_plain_folder_and_no_suite_never_passes(pytester: pytest.Pytester,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The same, as pytester runs it: the harness comes from its entry point, nothing registers the folder."""
    for name, value in {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "API_BASE_URL": "", "SMOKE_SECRET": ""}.items():
        monkeypatch.setenv(name, value)
    pytester.mkpydir("plain")
    (pytester.path / "plain" / "test_health.py").write_text(
        "def test_health(smoke_http, smoke_target, smoke_health_path):\n"
        "    assert smoke_http.get(smoke_health_path).status_code == 200\n")
    result = pytester.runpytest_subprocess("plain", "-p", "no:cacheprovider", "--ecs-cluster", "shop",
                                           "--ecs-service", "shop-api", "--aws-region", "us-east-1",
                                           "--report-dir", str(pytester.path / "reports"))
    assert result.ret == 6 and result.ret != 0
    result.stdout.fnmatch_lines(["could not verify ?no_checks_ran?: plain is not a registered smoke suite*"])  # ? for [ ]
    verdict = json.loads((pytester.path / "reports" / "verdict.json").read_text())
    assert [d["category"] for d in verdict["diagnoses"]] == ["no_checks_ran"]
