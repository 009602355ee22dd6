"""The harness as another team gets it: a wheel, a fresh venv, and their own repository.

The wheel is built from a copy of this checkout (``pip wheel --no-deps``: pip is all it needs, and it is
the same PEP 517 build ``python -m build`` runs, in its own isolated build environment). A
fresh venv in a temporary folder gets that wheel and ``examples/items_service/requirements.txt``,
with the versions this dev venv has (a constraints file written from it, so a new release on
the index cannot change the test), from the package index as a user's pip would; set pip's own
``PIP_NO_INDEX=1`` and ``PIP_FIND_LINKS=<wheelhouse>`` to run it offline. The example project is
copied beside the venv and run there, with nothing of this repository on its path, against the
stage running the example's own app (``app_cmd``).

One venv for the module (its tests are one xdist group, through the module-scoped fixture).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from stage import Stage, StageOptions
from tests.conftest import TEST_START_PERIOD_SCALE, StageFactory
from tests.smoke_runs import SmokeRun

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "items_service"
DISTRIBUTION = "pytest-ecs-verdict"
PACKAGE = "ecs_verdict"
# Top-level names of this repository that are not the harness: none may be in the wheel or importable beside it.
NOT_THE_HARNESS = ("stage", "tests", "plugins", "contracts", "smoke", "bench", "examples")
TOKEN_SECRET = "items/smoke-token"
HEALTH_PATH = "/healthz"
OWN_CAUSE = "items_schema_drift"  # the example's SuiteCause (examples/items_service/plugins/items_suite.py)
OWN_NEXT_STEP = "Roll back, then compare the release's Item model"
CHECKS = {"test_health_answers_200", "test_version_names_the_service", "test_items_match_the_model",
          "test_items_refuse_a_request_without_a_token"}
# Local state of a checkout, never part of a build: virtualenvs, tools, git, earlier builds' leftovers.
CHECKOUT_LEFT_OUT = (".venv", ".tools", ".git", "build", "dist", "*.egg-info", "__pycache__", "reports", "node_modules")
INSTALL_TIMEOUT_S = 300
RUN_TIMEOUT_S = 240
# What the runs keep of this process's environment: nothing that could put this checkout on their path.
KEPT_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PIP_NO_INDEX", "PIP_FIND_LINKS")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    python: Path  # the fresh venv's interpreter
    project: Path  # the example project, copied beside the venv
    token: str  # what the stage's secret holds and the app accepts
    token_file: Path


@dataclass(frozen=True)
class Run(SmokeRun):
    """A run of the example project in its fresh venv: what a run of this repository's suite tells, and more."""

    def outcomes(self) -> dict[tuple[str, str], str]:
        return {(str(c["name"]), str(c["task_id"])): str(c["outcome"]) for c in self.verdict["checks"]}  # type: ignore[attr-defined]

    def written(self) -> str:
        """Everything the run printed and wrote to its report folder, as text."""
        files = [p.read_text(errors="replace") for p in self.report_dir.rglob("*") if p.is_file()]
        return "\n".join([self.output, *files])


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{' '.join(map(str, command))} -> {done.returncode}\n{done.stdout[-3000:]}" \
                                 f"\n{done.stderr[-3000:]}"
    return done


def _constraints() -> str:
    """``name==version`` for every distribution of this venv but the harness (installed here editable)."""
    pins = {dist.metadata["Name"]: dist.version for dist in metadata.distributions() if dist.metadata["Name"]}
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items())
                   if re.sub(r"[-_.]+", "-", name).lower() != DISTRIBUTION)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel-install")
    checkout, dist, venv, project = root / "checkout", root / "dist", root / "venv", root / "items-smoke"
    # A copy of the checkout, stage/, tests/ and all: the build writes build/ and egg-info beside its sources,
    # which must not race another run's in this worktree. Built from another directory, as a user's would be.
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(*CHECKOUT_LEFT_OUT))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist), str(checkout)],
         cwd=root, timeout=INSTALL_TIMEOUT_S)
    [wheel] = dist.glob("*.whl")
    # No pip inside the venv: this venv's pip installs into it (--python), a few seconds less than ensurepip.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=INSTALL_TIMEOUT_S)
    python = venv / "bin" / "python"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (root / "constraints.txt").write_text(_constraints())
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--disable-pip-version-check",
          "--constraint", str(root / "constraints.txt"), str(wheel), "--requirement", str(project / "requirements.txt")],
         cwd=root, timeout=INSTALL_TIMEOUT_S)
    token = "items-" + secrets.token_urlsafe(24)
    token_file = root / "app-token"
    token_file.write_text(token)
    return Installed(wheel, python, project, token, token_file)


def _app_cmd(installed: Installed, *faults: str) -> str:
    """The example's own app as the stage's tasks (one process per task, on the task's address)."""
    app = installed.project / "app" / "items_app.py"
    return " ".join([sys.executable, str(app), "{host}", "{port}", "--token-file", str(installed.token_file),
                     *(f"--fault {fault}" for fault in faults)])


def _start(stage: Stage, installed: Installed) -> Stage:
    stage.client("secretsmanager").create_secret(Name=TOKEN_SECRET, SecretString=installed.token)
    return stage


def _run_example(installed: Installed, report_dir: Path, stage_env: dict[str, str], *args: str) -> Run:
    """``pytest`` in the example project, with the fresh venv's Python and the stage's AWS."""
    env = {name: os.environ[name] for name in KEPT_VARIABLES if name in os.environ}
    env |= {key: value for key, value in stage_env.items() if key != "SMOKE_SECRET"}  # CivicForge's, not theirs
    env["ITEMS_TOKEN_SECRET"] = TOKEN_SECRET
    done = subprocess.run([str(installed.python), "-m", "pytest", "--report-dir", str(report_dir), *args],
                          cwd=installed.project, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          check=False)
    return Run(done.returncode, done.stdout + done.stderr, report_dir)


@pytest.fixture(scope="module")
def broken_run(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One run against a release whose ``/items`` drifted from its model, for the tests that read it.

    Its stage is stopped before the fixture hands the run over: the process holds one stage at a time.
    """
    stage = Stage(StageOptions(scenario="healthy", app_cmd=_app_cmd(installed, "schema_drift"),
                               health_check_path=HEALTH_PATH, start_period_scale=TEST_START_PERIOD_SCALE))
    stage.start()
    try:
        run = _run_example(installed, tmp_path_factory.mktemp("broken") / "reports", _start(stage, installed).env)
        tasks = set(stage.task_ips())
    finally:
        stage.stop()
    assert {check["task_id"] for check in run.verdict["checks"]} == tasks, run.output[-3000:]  # type: ignore[attr-defined]
    yield run


def test_the_wheel_holds_the_harness_and_nothing_of_the_repository_around_it(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        entry_points = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {PACKAGE, next(t for t in tops if t.endswith(".dist-info"))}, sorted(tops)
    assert not [name for name in names if name.split("/", 1)[0] in NOT_THE_HARNESS]
    modules = {path.relative_to(ROOT / "src").as_posix() for path in (ROOT / "src" / PACKAGE).rglob("*.py")}
    assert modules <= set(names), sorted(modules - set(names))
    assert re.search(r"^\[pytest11\]\n.*= ecs_verdict\.pytest_plugin$", entry_points, re.MULTILINE), entry_points
    # In the fresh venv the harness is the installed wheel, and none of this repository's other names imports.
    probe = ("import importlib.util, ecs_verdict; print(ecs_verdict.__file__); "
             f"print(sorted(n for n in {NOT_THE_HARNESS!r} if importlib.util.find_spec(n)))")
    lines = _run([str(installed.python), "-c", probe], cwd=installed.python.parent).stdout.splitlines()
    assert Path(lines[0]).is_relative_to(installed.python.parent.parent), lines
    assert lines[1] == "[]", lines


def test_the_example_project_passes_a_good_release_on_every_task(installed: Installed, stage_factory: StageFactory,
                                                                 tmp_path: Path) -> None:
    stage = _start(stage_factory("healthy", app_cmd=_app_cmd(installed), health_check_path=HEALTH_PATH), installed)
    run = _run_example(installed, tmp_path / "reports", stage.env)
    assert run.exit_code == 0, run.output[-4000:]
    assert run.verdict["verdict"] == "pass"
    assert run.outcomes() == {(check, task): "passed" for check in CHECKS for task in stage.task_ips()}
    assert f"health-path: {HEALTH_PATH} (from task definition)" in run.output
    assert "rootdir: " + str(installed.project) in run.output  # its own pytest.ini, not this repository's
    assert installed.token not in run.written()


def test_a_drifted_schema_fails_the_release_on_the_one_check_that_saw_it(broken_run: Run, installed: Installed
                                                                        ) -> None:
    assert broken_run.exit_code == 1, broken_run.output[-4000:]
    assert broken_run.verdict["verdict"] == "fail"
    failing = {name for (name, _task), outcome in broken_run.outcomes().items() if outcome != "passed"}
    assert failing == {"test_items_match_the_model"}
    assert "price_cents: Field required" in broken_run.output
    assert installed.token not in broken_run.written()  # the failing request carried it


def test_a_drifted_schema_is_named_by_the_suites_own_cause_and_next_step(broken_run: Run) -> None:
    causes = broken_run.verdict["causes"]
    assert [cause["category"] for cause in causes] == [OWN_CAUSE], causes  # type: ignore[index]
    [cause] = causes  # type: ignore[misc]
    assert cause["next_step"].startswith(OWN_NEXT_STEP), cause
    assert f"why [{OWN_CAUSE}]" in broken_run.output


def test_a_suite_that_is_not_registered_checks_nothing_and_never_passes(installed: Installed, tmp_path: Path
                                                                       ) -> None:
    # The team forgot `smoke_suites` (and its plugin is not loaded): its tests would get no task to check.
    # The target is named, but nothing may reach AWS: port 9 on loopback answers nobody.
    unreachable = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "ECS_CLUSTER": "items-cluster", "ECS_SERVICE": "items-service"}
    run = _run_example(installed, tmp_path / "reports", unreachable, "-o", "smoke_suites=",
                       "-p", "no:plugins.items_suite")
    assert run.exit_code == 6, run.output[-4000:]
    assert [d["category"] for d in run.verdict["diagnoses"]] == ["no_checks_ran"]  # type: ignore[attr-defined]
    assert "smoke is not a registered smoke suite" in run.output, run.output[-3000:]
