"""The pytest layer of the smoke harness: options, the once-per-run preflight, parametrisation.

The work itself is pytest-free (``src/ecs_verdict``, ``ecs_verdict.preflight``, ``ecs_verdict.run``);
this module only decides *when* it runs and hands its results to tests:

- a run is a smoke run when its arguments reach the ``smoke/`` suite; any
  other run (``pytest`` alone runs ``tests/``) never touches AWS;
- the controller resolves options, discovers and waits once, and passes the
  ``RunState`` to xdist workers through ``workerinput``;
- every test that asks for ``smoke_target`` runs once per task, with the
  short task id in its test id; a read-only one (not marked ``writes``) also runs
  through the load balancer's listener (test id ``[lb]``, or ``[lb-test]`` for the
  blue/green test listener), when the service has one;
- the exit status says what happened: 0 passed, 1 a check or the deploy
  failed, 6 could not verify, 4 usage error (pytest's own).
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ecs_verdict.pytest_plugin import options as smoke_options
from ecs_verdict.http import RetryBudget
from ecs_verdict.remote_results import upload_run_reports
from ecs_verdict.stability import Progress
from ecs_verdict.terminal_summary import cause_lines, preflight_lines, verdict_line
from ecs_verdict.verdict import EXIT_NOT_VERIFIED
from ecs_verdict.pytest_plugin.fixtures import DEPLOYMENT_CHECK, registry_of
from ecs_verdict.pytest_plugin.harness_errors import harness_hook, record_run_error
from ecs_verdict.pytest_plugin.lanes import TaskLanes, lanes_apply
from ecs_verdict.preflight import RunState, run_preflight
from ecs_verdict.run import why_not_run
from ecs_verdict.pytest_plugin.reporting import configure_outputs, write_reports, write_fallback_verdict
from ecs_verdict.pytest_plugin.stash import (config_key, drop_reasons_key, error_shown_key, harness_error_key,
                                             retry_budget_key, smoke_run_key, state_key, suite_key, verdict_key)
from ecs_verdict.pytest_plugin.suites import (SUITES_INI, ask_suite, hand_to_controller, note_unregistered, suite_of,
                                              take_from_worker, unregistered_line, write_unregistered_verdict)
from ecs_verdict.pytest_plugin.task_fate import register_if_needed as watch_task_fates

WORKER_KEY = "smoke_run_state"
LANES_PLUGIN = "smoke-task-lanes"
PROGRESS_EVERY_S = 10.0  # without a terminal, one progress line this often




def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from ecs_verdict.pytest_plugin import hookspecs  # the hooks a suite's plugin may implement

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    smoke_options.add_options(parser)
    parser.addini(SUITES_INI, type="paths", default=[],
                  help="folders of smoke suites (besides those a suite's plugin names through pytest_smoke_suite_folders)")


def reaches(config: pytest.Config, suite: Path) -> bool:
    """True when the run's arguments reach ``suite`` (the folder, a file in it, or a folder above it)."""
    for arg in config.args:
        path = Path(arg.split("::", 1)[0])
        path = path if path.is_absolute() else Path(config.invocation_params.dir) / path
        path = path.resolve()
        if path == suite or suite in path.parents or path in suite.parents:
            return True
    return False


def is_smoke_run(config: pytest.Config) -> bool:
    """True when the run's arguments reach a smoke suite (``pytest smoke``, or one listed in ``smoke_suites``)."""
    from_plugins = [Path(folder) for folders in config.hook.pytest_smoke_suite_folders(config=config) for folder in folders]
    suites = [*from_plugins, *(Path(suite) for suite in config.getini(SUITES_INI))]
    suites = [suite.resolve() for suite in suites]
    return any(reaches(config, suite) for suite in suites)


@pytest.hookimpl(tryfirst=True)  # before allure and junitxml read their output paths
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{DEPLOYMENT_CHECK}: reports on the deployment itself, so it runs (and "
                                       "fails with the evidence) when the deployment failed and no other test does")
    try:
        _configure_smoke_run(config)
    except (pytest.UsageError, pytest.exit.Exception, KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # noqa: BLE001 - a harness bug before any report exists: one line, exit 6
        pytest.exit(record_run_error(config, "pytest_configure", error), returncode=EXIT_NOT_VERIFIED)


def _configure_smoke_run(config: pytest.Config) -> None:
    smoke_run = is_smoke_run(config)
    config.stash[smoke_run_key] = smoke_run
    if not smoke_run:
        return
    # Every process asks (workers load the same plugins): the suite's defaults and causes are the same everywhere.
    config.stash[suite_key] = suite = ask_suite(config)
    resolved = smoke_options.resolve_config(
        lambda dest: config.getoption(dest), lambda name: config.getini(name) or None,
        check_writable=not hasattr(config, "workerinput"),  # the controller writes every report
        suite=suite,
    )
    config.stash[config_key] = resolved
    config.stash[retry_budget_key] = RetryBudget()  # before any lane forks: one budget for the run
    configure_outputs(config, resolved)
    watch_task_fates(config)
    if lanes_apply(config):
        config.pluginmanager.register(TaskLanes(config), LANES_PLUGIN)
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and WORKER_KEY in workerinput:
        config.stash[state_key] = RunState.from_json(workerinput[WORKER_KEY])


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if not config.stash.get(smoke_run_key, False) or hasattr(config, "workerinput"):
        return
    config.stash[state_key] = RunState()  # replaced below; stays (with a harness error) if preflight crashes
    _preflight(session)


@harness_hook
def _preflight(session: pytest.Session) -> None:
    config = session.config
    progress = _ProgressLine(config)
    state = RunState.after(run_preflight(config.stash[config_key], on_progress=progress))
    progress.done(state)
    config.stash[state_key] = state


@pytest.hookimpl(optionalhook=True)
@harness_hook
def pytest_configure_node(node: Any) -> None:
    """xdist: hand the controller's one discovery and wait to each worker."""
    state = node.config.stash.get(state_key, None)
    if state is not None:
        node.workerinput[WORKER_KEY] = state.to_json()


@harness_hook
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "smoke_target" not in metafunc.fixturenames:
        return
    if not metafunc.config.stash.get(smoke_run_key, False):
        note_unregistered(metafunc.config, metafunc.definition.path)  # exit 6 at the end, never a silent pass
    state = metafunc.config.stash.get(state_key, None)
    targets = list(state.targets) if state is not None else []
    if state is not None and through_load_balancer(metafunc.definition):
        targets += state.lb_targets
    # Indirect: the smoke_target fixture follows a task ECS replaced mid-run (ecs_verdict.pytest_plugin.task_fate).
    metafunc.parametrize("smoke_target", targets, ids=[t.short_id for t in targets], indirect=True)


WRITES_MARKER = "writes"


def through_load_balancer(item: pytest.Item) -> bool:
    """Read-only checks go through the load balancer too; writes pin a task (the listener picks one per request).

    The same rule as ``--read-only``: a test marked ``writes`` is the one it leaves out.
    """
    return item.get_closest_marker(WRITES_MARKER) is None


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist: a suite that is not registered, as a worker found it."""
    take_from_worker(node.config, getattr(node, "workeroutput", {}))


@harness_hook
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash.get(state_key, None)
    if state is None:
        return
    resolved = config.stash[config_key]
    keep, drop = [], []
    why = config.stash.setdefault(drop_reasons_key, {})
    for item in items:
        reason = why_not_run(state, harness_failed=harness_error_key in config.stash, read_only=resolved.read_only,
                             deployment_check=item.get_closest_marker(DEPLOYMENT_CHECK) is not None,
                             writes=not through_load_balancer(item))
        if reason is None:
            keep.append(item)
        else:
            drop.append(item)
            why[item.nodeid] = reason
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    """Everything imported and collected so far stays: out of the collector's sight, and shared by the lanes.

    pytest collects garbage at the end of every run (0.2 s over botocore's and pydantic's objects);
    frozen objects are not scanned, and a forked lane does not copy their pages to touch them.
    """
    if session.config.stash.get(smoke_run_key, False):
        gc.freeze()


@harness_hook
def pytest_report_header(config: pytest.Config) -> list[str]:
    resolved = config.stash.get(config_key, None)
    if resolved is None:
        return []
    suite = suite_of(config)
    lines = [f"smoke suite: {suite.name}" + (f" (its causes: {', '.join(c.category for c in suite.causes)})"
                                              if suite.causes else ""),
             "smoke harness options:", *(f"  {line}" for line in resolved.describe())]
    state = config.stash.get(state_key, None)
    if state is not None and resolved.health_path is None:
        # Not an option the user set: say which path the run took, and from where.
        lines.append(f"  health-path: {state.health_path} (from {state.health_path_source})")
    return lines


@harness_hook
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """What was verified, and when it failed, why: the same story as summary.md, for the CI log."""
    unregistered = unregistered_line(config)
    if unregistered is not None:
        terminalreporter.write_line(unregistered, red=True, bold=True)
    state = config.stash.get(state_key, None)
    if state is None or hasattr(config, "workerinput"):
        return
    redact = registry_of(config).redact

    def write(line: str, **markup: bool) -> None:
        terminalreporter.write_line(redact(line), **markup)

    terminalreporter.section("smoke harness")
    for line, markup in preflight_lines(state):
        write(line, **markup)
    verdict = config.stash.get(verdict_key, None)
    if verdict is None:
        return
    for line, markup in cause_lines(verdict):
        write(line, **markup)
    error = config.stash.get(harness_error_key, None)
    if error is not None:
        write(error, red=True, bold=True)
        config.stash[error_shown_key] = True
    line, markup = verdict_line(verdict, config.stash[config_key].report_dir)
    write(line, **markup)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash.get(state_key, None)
    if hasattr(config, "workerinput"):
        hand_to_controller(config)
        return
    unregistered = unregistered_line(config)
    if unregistered is not None and state is None:
        write_unregistered_verdict(config, unregistered)
        session.exitstatus = EXIT_NOT_VERIFIED
        return
    if state is None:
        return
    _write_reports(session, exitstatus)
    error = config.stash.get(harness_error_key, None)
    verdict = config.stash.get(verdict_key, None)
    if error is not None and (verdict is None or verdict["exit_code"] != EXIT_NOT_VERIFIED):
        # A harness error after (or instead of) the verdict: the run proved nothing; say so everywhere.
        verdict = write_fallback_verdict(config, config.stash[config_key], state, registry_of(config), error)
    elif verdict is None:
        verdict = write_fallback_verdict(config, config.stash[config_key], state, registry_of(config),
                                         "harness error: the reports were not written")
    session.exitstatus = verdict["exit_code"]


def pytest_unconfigure(config: pytest.Config) -> None:
    """The harness error's one line, if the terminal summary could not print it; then the upload, if asked."""
    error = config.stash.get(harness_error_key, None)
    if error is not None and not config.stash.get(error_shown_key, False):
        sys.stderr.write(error + "\n")
    resolved = config.stash.get(config_key, None)
    if resolved is None or resolved.results_uri is None or hasattr(config, "workerinput"):
        return
    # Last of all, after every report file and the terminal summary: the private gate's caller reads them there,
    # and when they cannot go, this line ends the task's log, where the caller quotes it from.
    problem = upload_run_reports(Path(resolved.report_dir), resolved.results_uri, resolved.aws_region)
    if problem is not None:
        sys.stderr.write(f"smoke harness: {problem}\n")


@harness_hook
def _write_reports(session: pytest.Session, exitstatus: int) -> None:
    # trylast: pytest's JUnit file is written by now, so the report scrub covers it too.
    config = session.config
    write_reports(config, config.stash[config_key], config.stash[state_key], registry_of(config), int(exitstatus),
                  harness_error=config.stash.get(harness_error_key, None))


class _ProgressLine:
    """One live line on a terminal; a line every ~10 s in CI logs."""

    def __init__(self, config: pytest.Config) -> None:
        self._writer = config.get_terminal_writer()
        self._tty = sys.stdout.isatty() and config.getoption("verbose") >= 0
        self._last_line_at = 0.0
        self._shown = False

    def __call__(self, progress: Progress) -> None:
        line = f"waiting for the deployment: {progress.describe()}"
        if self._tty:
            self._writer.write("\r" + line[: self._writer.fullwidth - 1].ljust(self._writer.fullwidth - 1))
            self._writer.flush()
            self._shown = True
        elif time.monotonic() - self._last_line_at >= PROGRESS_EVERY_S:
            self._last_line_at = time.monotonic()
            self._writer.line(line)

    def done(self, state: RunState) -> None:
        if self._shown:
            self._writer.line("")
        if state.targets and state.outcome is None:
            through = ", ".join(listener.target_id for listener in state.lb_listeners)
            self._writer.line(f"deployment settled after {state.waited_s:.1f} s: testing {len(state.targets)} task(s)"
                              + (f" and, read-only, through the load balancer ({through})" if through else ""))
