"""Which suite a smoke run serves: its profile, and a suite that is not registered (exit 6, never a silent pass).

Every process of a smoke run (controller, xdist workers) asks the suites' plugins once, in
``pytest_configure``, through ``pytest_smoke_suite``: the first that answers gives the run its
name, its metrics namespace default and its own causes. No answer: ``NO_SUITE``.

A folder not listed in ``smoke_suites`` is not a smoke run: no discovery, so ``smoke_target``
has no task and pytest skips every test that asks for it. A CI gate reading that exit 0
would promote a release nothing checked. The run says so instead: one line naming the
folder and how to register it, exit 6 (``no_checks_ran``), and a verdict.json when the
job named a report folder.

Detected from what the tests ask for (``smoke_target``), not from paths: ``pytest`` alone
runs the harness's own tests, which ask for no task and stay untouched.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ecs_verdict import verdict as verdicts
from ecs_verdict.categories import CATEGORIES, make_diagnosis
from ecs_verdict.redact import SecretRegistry
from ecs_verdict.settings import SPECS, parse_report_dir
from ecs_verdict.suite import NO_SUITE, SuiteProfile, profile_problems
from ecs_verdict.pytest_plugin.stash import suite_key, unregistered_key

SUITES_INI = "smoke_suites"
WORKER_OUTPUT_KEY = "smoke_unregistered_suites"  # xdist: workers collect, the controller decides


def ask_suite(config: pytest.Config) -> SuiteProfile:
    """The profile of the suite the run reaches (``pytest_smoke_suite``), else ``NO_SUITE``; a bad one is exit 4."""
    profile = config.hook.pytest_smoke_suite(config=config)
    if profile is None:
        return NO_SUITE
    if not isinstance(profile, SuiteProfile):
        raise pytest.UsageError(f"pytest_smoke_suite returned {type(profile).__name__}, not an "
                                "ecs_verdict.suite.SuiteProfile: fix the suite's plugin")
    problems = profile_problems(profile, CATEGORIES)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise pytest.UsageError(f"{problems[0]}{more}: fix the suite's plugin")
    return profile


def suite_of(config: pytest.Config) -> SuiteProfile:
    """The run's suite profile (``NO_SUITE`` before ``pytest_configure`` asked, or when no suite answered)."""
    return config.stash.get(suite_key, NO_SUITE)


def note_unregistered(config: pytest.Config, test_file: Path) -> None:
    """A test in ``test_file`` asked for ``smoke_target`` in a run that reaches no registered suite."""
    folder = test_file.parent
    try:
        shown = str(folder.relative_to(Path(config.invocation_params.dir)))
    except ValueError:
        shown = str(folder)
    found = config.stash.setdefault(unregistered_key, {})
    found[shown] = found.get(shown, 0) + 1


def hand_to_controller(config: pytest.Config) -> None:
    """xdist worker: what it found, for the controller (which collects nothing itself)."""
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None and config.stash.get(unregistered_key, None):
        workeroutput[WORKER_OUTPUT_KEY] = config.stash[unregistered_key]


def take_from_worker(config: pytest.Config, workeroutput: dict[str, object]) -> None:
    """xdist controller: the worker's findings (each worker collects every test: keep the largest count)."""
    found = workeroutput.get(WORKER_OUTPUT_KEY) or {}
    known = config.stash.setdefault(unregistered_key, {})
    for folder, tests in dict(found).items():  # type: ignore[call-overload]
        known[folder] = max(known.get(folder, 0), int(tests))


def unregistered_line(config: pytest.Config) -> str | None:
    """The one line that says what happened and how to register the suite; None when nothing is wrong."""
    found = config.stash.get(unregistered_key, None)
    if not found:
        return None
    folders = sorted(found)
    tests = sum(found.values())
    listed = ", ".join(str(path) for path in config.getini(SUITES_INI)) or "nothing"
    return (f"could not verify [no_checks_ran]: {', '.join(folders)} is not a registered smoke suite, so its "
            f"{tests} test(s) asking for smoke_target got no task to check; register it in pytest.ini "
            f"(`{SUITES_INI} = {' '.join(folders)}`) or with -o {SUITES_INI}={folders[0]} "
            f"({SUITES_INI} lists {listed})")


def known_report_dir(config: pytest.Config) -> Path | None:
    """The report folder the job named (command line, environment or ini); None when it named none."""
    spec = SPECS["report_dir"]
    raw = config.getoption(spec.dest) or (os.environ.get(spec.env or "", "").strip()) or config.getini(spec.ini)
    if not raw:
        return None
    try:
        return parse_report_dir(str(raw))
    except ValueError:
        return None


def write_unregistered_verdict(config: pytest.Config, line: str) -> Path | None:
    """verdict.json and summary.md saying nothing was checked, where the job named a report folder."""
    report_dir = known_report_dir(config)
    if report_dir is None:
        return None
    found = config.stash[unregistered_key]
    cause = make_diagnosis("no_checks_ran", None, line.split(": ", 1)[1].split(";", 1)[0],
                           f"{sum(found.values())} test(s) in {', '.join(sorted(found))} ask for smoke_target; "
                           f"{SUITES_INI} does not list the folder")
    verdict = verdicts.build_verdict(
        started_at=datetime.now(timezone.utc), duration_s=0.0,
        target=verdicts.TargetRecord(region=None, cluster=None, service=None, deployment_id=None,
                                     task_definition=None, image_digest=None),
        tasks=[], checks=[],
        decision=verdicts.Decision("error", verdicts.EXIT_NOT_VERIFIED, (cause.as_dict(),)),  # type: ignore[arg-type]
    )
    try:
        path = verdicts.write_verdict(report_dir / "verdict.json", verdict, SecretRegistry())
        verdicts.write_summary(report_dir / "summary.md", verdict, SecretRegistry(),
                               os.environ.get("GITHUB_STEP_SUMMARY"))
    except OSError:
        return None  # the line on the terminal still says it all
    return path
