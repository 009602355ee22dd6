"""Fixtures for the harness's own tests: the local stage, in-process.

Two ways to get a stage:

- ``stage_factory(...)``: a stage of the test's own, stopped after it. For tests that
  change the stage (kill a task, scale the service) or watch it change (a roll-out).
- ``shared_stage``, parametrised indirectly with a ``StagePlan``: one running stage per
  plan, handed to every test of that plan in turn, for tests that only read it (or put
  back what they change). Tests of one plan run one after another, whichever module
  they are in (``pytest_collection_modifyitems`` below), so each plan starts once. A
  test marked ``changes_shared_stage`` runs last of its plan and the stage is stopped
  after it.

moto's state is process-wide, so the process holds one stage at a time: a shared
stage is stopped before any test that does not ask for it (and so before a
``stage_factory`` or a module's own ``Stage``), and after a test of it fails, so one
failure cannot leak into the next test.

Under pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``) each worker is a process
of its own with its own stage; what must share one runs on one worker (``StageGroupScheduling``):
the tests of a shared plan (group "stage-<plan id>"), the tests of a module that share a
module- or class-scoped fixture (a module's own ``Stage``: group "module-<path>"), and
tests marked ``xdist_group(name)``. Every other test goes wherever a worker is free. A new test file needs nothing here: the groups
follow from the fixtures it asks for. Task addresses are claimed across processes
(``stage.task_network``), so two workers' stages never share one.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# httpx imports httpcore on its first request. Import it here, before any pytester in-process run: such a
# run drops the modules it imported when it ends, and an httpcore imported anew afterwards has exception
# classes httpx no longer maps (a refused connection then surfaces as httpcore.ConnectError).
import httpcore  # noqa: F401
import pytest
from xdist.scheduler import LoadScopeScheduling

from stage import Stage, StageOptions

StageFactory = Callable[..., Stage]
# Tasks that never pass a health check (restart_loop, curl_health_check, a health path that 404s)
# are stopped only after the task definition's 60 s startPeriod. Counted x 0.125 (7.5 s, about the
# 8 s the stage used to allow) they fail as fast as the tests need. Healthy tasks are unaffected:
# their first passing check makes them HEALTHY. Tests of the real clock pass start_period_scale
# themselves (tests/test_start_period.py).
TEST_START_PERIOD_SCALE = 0.125
# A failed task is replaced after this long: quick enough that restart_loop shows its stops at once.
TEST_RESTART_DELAY_S = 0.2
# A shared "rolling" stage must stay mid-roll-out for as long as its tests run.
SHARED_ROLLING_DELAY_S = 600.0


@dataclass(frozen=True, slots=True)
class StagePlan:
    """What a shared stage runs; equal plans (in any module) share one running stage.

    ``shared=False`` gives each test a stage of its own (a roll-out that must be watched
    from its start), stopped after the test.
    """

    scenario: str = "healthy"
    faults: tuple[str, ...] = ()
    health_check_path: str = "/health"
    rolling_delay_s: float = SHARED_ROLLING_DELAY_S
    shared: bool = True
    load_balancer: bool = False  # an ALB in front of the service (stage.load_balancer)
    lb_faults: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        parts = [self.scenario, *self.faults]
        if self.health_check_path != "/health":
            parts.append(f"probe{self.health_check_path.replace('/', '_')}")
        if self.load_balancer:
            parts += ["alb", *self.lb_faults]
        return "-".join(parts)

    def options(self) -> StageOptions:
        return StageOptions(scenario=self.scenario, faults=self.faults, health_check_path=self.health_check_path,
                            rolling_delay_s=self.rolling_delay_s, restart_delay_s=TEST_RESTART_DELAY_S,
                            start_period_scale=TEST_START_PERIOD_SCALE, load_balancer=self.load_balancer,
                            lb_faults=self.lb_faults)


class SharedStages:
    """Holds at most one running stage, the one of the plan the current test asked for."""

    def __init__(self) -> None:
        self._plan: StagePlan | None = None
        self._stage: Stage | None = None

    def stage_for(self, plan: StagePlan) -> Stage:
        if self._stage is not None and self._plan == plan and plan.shared:
            return self._stage
        self.release()
        stage = Stage(plan.options())
        stage.start()
        self._plan, self._stage = plan, stage
        return stage

    def release(self) -> None:
        stage, self._plan, self._stage = self._stage, None, None
        if stage is not None:
            stage.stop()


shared_stages_key = pytest.StashKey[SharedStages]()
groups_file_key = pytest.StashKey[Path]()
failed_key = pytest.StashKey[bool]()


CHANGES_SHARED_STAGE = "changes_shared_stage"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{CHANGES_SHARED_STAGE}: the test changes its shared stage; it runs last of "
                                       "its plan and the stage is stopped after it")
    config.stash[shared_stages_key] = SharedStages()
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        config.stash[groups_file_key] = Path(tempfile.mkdtemp(prefix="stage-groups-")) / "groups.json"


def changes_its_stage(item: pytest.Item) -> bool:
    return item.get_closest_marker(CHANGES_SHARED_STAGE) is not None


def pytest_unconfigure(config: pytest.Config) -> None:
    shared = config.stash.get(shared_stages_key, None)
    if shared is not None:
        shared.release()


def plan_of(item: pytest.Item) -> StagePlan | None:
    callspec = getattr(item, "callspec", None)
    plan = callspec.params.get("shared_stage") if callspec is not None else None
    return plan if isinstance(plan, StagePlan) else None


SHARED_SCOPES = ("class", "module", "package")
GROUPS_FILE_KEY = "stage_groups_file"  # workerinput: where a worker writes {nodeid: group}


def xdist_group_of(item: pytest.Item) -> str | None:
    """The tests that must run in one process with ``item``, by name; None: it runs anywhere."""
    marked = item.get_closest_marker("xdist_group")
    if marked is not None:
        return str(marked.args[0] if marked.args else marked.kwargs.get("name", "default"))
    plan = plan_of(item)
    if plan is not None:
        return f"stage-{plan.id}" if plan.shared else None
    fixtures = getattr(item, "_fixtureinfo", None)
    for definitions in (fixtures.name2fixturedefs.values() if fixtures is not None else ()):
        if definitions and definitions[-1].scope in SHARED_SCOPES:
            return f"module-{item.nodeid.split('::', 1)[0]}"
    return None


class StageGroupScheduling(LoadScopeScheduling):
    """xdist's loadscope, with our groups as its scopes (a test in no group is a scope of its own).

    xdist's own ``--dist loadgroup`` passes groups by appending them to node ids, which
    pytest 9.2 no longer allows (pytest-xdist#1386): grouping silently stops. The workers
    write their groups to a file instead; the controller reads it once all have collected.
    """

    def __init__(self, config: pytest.Config, log: Any, groups_file: Path) -> None:
        super().__init__(config, log)
        self._groups_file = groups_file
        self._groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._groups is None:
            self._groups = json.loads(self._groups_file.read_text()) if self._groups_file.exists() else {}
        return self._groups.get(nodeid, nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
    if config.getvalue("dist") != "loadgroup":
        return None
    return StageGroupScheduling(config, log, config.stash[groups_file_key])


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput[GROUPS_FILE_KEY] = str(node.config.stash[groups_file_key])


@pytest.hookimpl(tryfirst=True)  # before xdist's own tells the controller that collection is done
def pytest_collection_finish(session: pytest.Session) -> None:
    workerinput = getattr(session.config, "workerinput", None)
    if workerinput is None or GROUPS_FILE_KEY not in workerinput:
        return
    groups = {item.nodeid: group for item in session.items if (group := xdist_group_of(item)) is not None}
    target = Path(workerinput[GROUPS_FILE_KEY])
    written = target.with_name(f"{target.name}.{workerinput['workerid']}")
    written.write_text(json.dumps(groups))
    written.replace(target)  # every worker collects the same tests: any one's file is the whole answer


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run each shared plan's tests one after another: the plan's stage then starts once.

    Each plan's tests move up to its first one; within a plan, tests that change the
    stage go last. Every other test keeps its place, so no module of another kind is
    split.
    """
    groups: dict[StagePlan, list[pytest.Item]] = {}
    runs: list[list[pytest.Item]] = []
    for item in items:
        plan = plan_of(item)
        if plan is None or not plan.shared:
            runs.append([item])
        elif plan in groups:
            groups[plan].append(item)
        else:
            groups[plan] = [item]
            runs.append(groups[plan])
    for group in groups.values():
        group.sort(key=changes_its_stage)  # stable: otherwise in collection order
    items[:] = [item for run in runs for item in run]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture (a module's own Stage, a stage_factory) starts a second moto.
    if plan_of(item) is None:
        item.config.stash[shared_stages_key].release()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                                          pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[failed_key] = True
    return report


@pytest.fixture
def shared_stage(request: pytest.FixtureRequest) -> Iterator[Stage]:
    """The running stage of the ``StagePlan`` this test is parametrised with (indirectly); read it, don't change it."""
    plan = getattr(request, "param", None)
    assert isinstance(plan, StagePlan), "parametrize shared_stage indirectly with a StagePlan"
    shared = request.config.stash[shared_stages_key]
    yield shared.stage_for(plan)
    if not plan.shared or changes_its_stage(request.node) or request.node.stash.get(failed_key, False):
        shared.release()


def on_shared_stage(*plans: StagePlan) -> pytest.MarkDecorator:
    """``@on_shared_stage(StagePlan("healthy"), ...)``: the test runs once per plan, on that plan's shared stage."""
    return pytest.mark.parametrize("shared_stage", plans, indirect=True, ids=[plan.id for plan in plans])


@pytest.fixture
def stage_factory() -> Iterator[StageFactory]:
    """``stage_factory("rolling", faults=["urlsafe"], **options)``: a running stage, stopped after the test.

    ``options`` are StageOptions fields; start_period_scale defaults to TEST_START_PERIOD_SCALE.
    One stage at a time per process: moto's state is process-wide.
    """
    started: list[Stage] = []

    def start(scenario: str = "healthy", *, faults: list[str] | tuple[str, ...] = (), **options: object) -> Stage:
        options.setdefault("start_period_scale", TEST_START_PERIOD_SCALE)
        stage = Stage(StageOptions(scenario=scenario, faults=tuple(faults), **options))  # type: ignore[arg-type]
        stage.start()
        started.append(stage)
        return stage

    yield start
    for stage in started:
        stage.stop()


@pytest.fixture
def healthy_stage(stage_factory: StageFactory) -> Stage:
    return stage_factory("healthy")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Dummy credentials for clients the code under test makes (the stage's own clients carry theirs)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return monkeypatch
