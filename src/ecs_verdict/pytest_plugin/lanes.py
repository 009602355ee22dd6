"""Every task checked at once: each task's tests run in a forked lane, reported as if run here.

Why fork, and not threads or xdist (the README's "Scale" section has the figures):

- pytest runs one test at a time in a process (its fixture cache and set-up stack are
  shared), so threads could overlap only requests made outside the tests, and the tests
  would have to assert on recorded exchanges instead of making their own requests;
- xdist workers are fresh interpreters that import and collect everything again (about
  a second each on this machine's two cores) and are not grouped by task;
- a fork of the run after collection and the wait costs milliseconds, shares the
  imported code and the collected items, and runs each test through pytest's own
  protocol: its fixtures, its Allure steps, its report, untouched.

Each lane sends its pytest reports back (serialised as xdist does) over a pipe; this
process replays them through its hooks in collection order, so the terminal, JUnit,
the verdict rows and the exit code are those of a serial run. Secrets a lane learns are
sent with its reports. A lane that dies leaves its unfinished tests as errors and the
run a harness error (exit 6). Ctrl-C or SIGTERM stops every lane, whose teardowns and
this process's end sweep remove what the tests wrote.

Off under xdist (its workers are the concurrency), with ``--serial``, with one task, and
where there is no ``os.fork`` or the process already runs threads (a fork would copy
their locks).
"""

from __future__ import annotations

import os
import selectors
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from ecs_verdict.lanes import DEFAULT_MAX_LANES, LanePlan, decode, encode, plan_lanes
from ecs_verdict.pytest_plugin.fixtures import registry_of, target_of
from ecs_verdict.pytest_plugin.harness_errors import record_run_error
from ecs_verdict.pytest_plugin.reporting import check_properties
from ecs_verdict.pytest_plugin.stash import config_key, harness_error_key, state_key

LANE_STOP_S = 10.0  # after Ctrl-C, how long a lane may take to tear its tests down before it is killed
EXIT_INTERRUPTED = 130


def task_key_of(item: pytest.Item) -> str | None:
    """The id of the task an item checks, else None (the deployment check)."""
    target = target_of(item)
    return target.task_id if target is not None else None


def lanes_apply(config: pytest.Config) -> bool:
    """Whether this process should run the tasks in lanes (see the module docstring)."""
    resolved = config.stash.get(config_key, None)
    return (resolved is not None and not resolved.serial and hasattr(os, "fork")
            and not hasattr(config, "workerinput") and getattr(config.option, "dist", "no") == "no")


class TaskLanes:
    """Registered on a smoke run's controller; takes over ``pytest_runtestloop`` when lanes apply."""

    def __init__(self, config: pytest.Config, max_lanes: int = DEFAULT_MAX_LANES) -> None:
        self.config = config
        self.max_lanes = max_lanes
        self.lanes_run = 0

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            return None  # pytest's own loop reports the collection errors
        if session.config.option.collectonly:
            return None
        plan = plan_lanes([task_key_of(item) for item in session.items], self.max_lanes)
        if not plan.concurrent:
            return None  # one task: one test after another
        if threading.active_count() > 1:
            # A fork would copy another thread's locks mid-use. Say so: a run that is slower than it
            # should be must not look like the concurrent one.
            names = ", ".join(sorted(t.name for t in threading.enumerate() if t is not threading.current_thread()))
            state = self.config.stash.get(state_key, None)
            if state is not None:
                state.notes.append(f"tasks checked one after another, not in lanes: other threads run ({names})")
            return None
        try:
            self._run(session, plan)
        except Exception as error:  # noqa: BLE001 - a harness bug is a verdict, never an INTERNALERROR
            record_run_error(self.config, "pytest_runtestloop (task lanes)", error)
        return True  # handled: pytest's own loop must not run the tests a second time

    def _run(self, session: pytest.Session, plan: LanePlan) -> None:
        items = session.items
        first = [items[i] for i in plan.first]
        for index, item in enumerate(first):
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=first[index + 1] if index + 1 < len(first)
                                                     else None)
            if session.shouldfail or session.shouldstop:
                return
        lanes = [[items[i] for i in lane] for lane in plan.lanes]
        running = _start_lanes(session, lanes)
        self.lanes_run = len(running)
        try:
            _collect(session, running, [items[i] for lane in plan.lanes for i in lane])
        except BaseException:
            _stop_lanes(running)
            raise


class _Lane:
    """A forked lane, seen from the run: its pid, the read end of its pipe, what it sent so far."""

    def __init__(self, pid: int, fd: int, items: list[pytest.Item]) -> None:
        self.pid = pid
        self.fd = fd
        self.items = items
        self.buffer = b""
        self.exit_status: int | None = None
        self.error: str | None = None

    @property
    def task(self) -> str:
        key = task_key_of(self.items[0]) if self.items else None
        return key[:8] if key else "?"


def _start_lanes(session: pytest.Session, lanes: list[list[pytest.Item]]) -> list[_Lane]:
    started: list[_Lane] = []
    for items in lanes:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the lane
            os.close(read_fd)
            for other in started:
                os.close(other.fd)
            os._exit(_lane_main(session, items, write_fd))
        os.close(write_fd)
        started.append(_Lane(pid, read_fd, items))
    return started


# -- inside a lane -----------------------------------------------------------------------------------


class _Relay:
    """In a lane: every report, and the secrets learned before it, down the pipe."""

    def __init__(self, config: pytest.Config, out: Any) -> None:
        self.config = config
        self.out = out
        self.sent: set[str] = set()

    def send(self, kind: str, **fields: Any) -> None:
        self.out.write(encode(kind, **fields))
        self.out.flush()

    def _secrets(self) -> None:
        fresh = [value for value in registry_of(self.config).values() if value not in self.sent]
        if fresh:
            self.sent.update(fresh)
            self.send("secrets", values=fresh)

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.send("logstart", nodeid=nodeid, location=list(location))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._secrets()  # before the report: the run redacts its outputs with them
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
        self.send("report", data=data)

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.send("logfinish", nodeid=nodeid, location=list(location))


def _lane_main(session: pytest.Session, items: list[pytest.Item], write_fd: int) -> int:
    """Run ``items`` through pytest's protocol in this forked process; the exit status of the lane."""
    config = session.config
    out = os.fdopen(write_fd, "wb")
    relay = _Relay(config, out)
    try:
        _silence_terminal(config)
        config.pluginmanager.register(relay, "smoke-lane-relay")
        for index, item in enumerate(items):
            nextitem = items[index + 1] if index + 1 < len(items) else None
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            if session.shouldfail or session.shouldstop:
                break
        session._setupstate.teardown_exact(None)  # noqa: SLF001 - what pytest's own sessionfinish does
        relay._secrets()
        return 0
    except KeyboardInterrupt:  # SIGTERM from the run (smoke runs turn it into KeyboardInterrupt)
        _teardown_quietly(session)
        return EXIT_INTERRUPTED
    except BaseException as error:  # noqa: BLE001 - the run must hear why its lane ended
        try:
            relay.send("lane_error", text="".join(traceback.format_exception(type(error), error,
                                                                             error.__traceback__))[-4000:])
        except OSError:
            pass
        _teardown_quietly(session)
        return 1
    finally:
        try:
            out.close()
        except OSError:
            pass


def _teardown_quietly(session: pytest.Session) -> None:
    try:
        session._setupstate.teardown_exact(None)  # noqa: SLF001
    except BaseException:  # noqa: BLE001 - already on the way out
        pass


def _silence_terminal(config: pytest.Config) -> None:
    """The run prints each report once, when it replays it; the lane prints nothing."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        from _pytest.config import create_terminal_writer

        reporter._tw = create_terminal_writer(config, open(os.devnull, "w", encoding="utf-8"))  # noqa: SLF001


# -- in the run: replay in collection order ------------------------------------------------------------


def _messages(lane: _Lane, chunk: bytes) -> Iterator[dict[str, Any]]:
    lane.buffer += chunk
    *lines, lane.buffer = lane.buffer.split(b"\n")
    for line in lines:
        if line.strip():
            yield decode(line)


def _collect(session: pytest.Session, lanes: list[_Lane], order: list[pytest.Item]) -> None:
    """Read every lane until it ends; replay each test's reports once every test before it has been."""
    config = session.config
    by_nodeid: dict[str, list[dict[str, Any]]] = {item.nodeid: [] for item in order}
    finished: set[str] = set()
    ordered = sorted(order, key=lambda item: session.items.index(item))
    position = 0
    selector = selectors.DefaultSelector()
    for lane in lanes:
        selector.register(lane.fd, selectors.EVENT_READ, lane)
    open_lanes = len(lanes)
    while open_lanes:
        for key, _ in selector.select():
            lane: _Lane = key.data
            chunk = os.read(lane.fd, 65536)
            if not chunk:
                selector.unregister(lane.fd)
                os.close(lane.fd)
                open_lanes -= 1
                continue
            for message in _messages(lane, chunk):
                kind = message["kind"]
                if kind == "secrets":
                    for value in message["values"]:
                        registry_of(config).add(value)
                elif kind == "lane_error":
                    lane.error = message["text"]
                elif kind in ("logstart", "report", "logfinish"):
                    nodeid = message.get("nodeid") or message["data"]["nodeid"]
                    by_nodeid.setdefault(nodeid, []).append(message)
                    if kind == "logfinish":
                        finished.add(nodeid)
        position = _replay_ready(config, ordered, position, by_nodeid, finished)
    selector.close()
    for lane in lanes:
        _, status = os.waitpid(lane.pid, 0)
        lane.exit_status = os.waitstatus_to_exitcode(status)
    for lane in lanes:
        if lane.exit_status != 0 or lane.error:
            _lane_failed(config, lane, finished)
    for item in ordered[position:]:
        if item.nodeid not in finished:
            lane = next(lane for lane in lanes if item in lane.items)
            by_nodeid[item.nodeid] = _unfinished_messages(config, item, lane)
            finished.add(item.nodeid)
    _replay_ready(config, ordered, position, by_nodeid, finished)


def _replay_ready(config: pytest.Config, ordered: list[pytest.Item], position: int,
                  by_nodeid: dict[str, list[dict[str, Any]]], finished: set[str]) -> int:
    hook = config.hook
    while position < len(ordered) and ordered[position].nodeid in finished:
        for message in by_nodeid.pop(ordered[position].nodeid, []):
            kind = message["kind"]
            if kind == "logstart":
                hook.pytest_runtest_logstart(nodeid=message["nodeid"], location=tuple(message["location"]))
            elif kind == "report":
                report = hook.pytest_report_from_serializable(config=config, data=message["data"])
                if isinstance(report.longrepr, list):
                    # A skip's (path, line, reason) crossed the pipe as JSON, a list; pytest's terminal wants the tuple.
                    report.longrepr = tuple(report.longrepr)
                hook.pytest_runtest_logreport(report=report)
            else:
                hook.pytest_runtest_logfinish(nodeid=message["nodeid"], location=tuple(message["location"]))
        position += 1
    return position


def _lane_failed(config: pytest.Config, lane: _Lane, finished: set[str]) -> None:
    if lane.exit_status == EXIT_INTERRUPTED:
        return  # stopped on purpose (Ctrl-C): pytest reports the interruption
    unfinished = [item for item in lane.items if item.nodeid not in finished]
    how = f"exit status {lane.exit_status}" if lane.exit_status else "an error"
    detail = (lane.error or "").strip().splitlines()[-1:] or ["no message"]
    error = RuntimeError(f"the lane checking task {lane.task} ended with {how} ({len(unfinished)} test(s) "
                         f"unfinished): {detail[0]}")
    record_run_error(config, "a task lane", error)


def _unfinished_messages(config: pytest.Config, item: pytest.Item, lane: _Lane) -> list[dict[str, Any]]:
    """A test whose lane ended before it finished: an error row, never a silent gap.

    Made as pytest makes a report, with the properties the verdict row reads (check, task).
    """
    why = (f"not run: the lane checking task {lane.task} ended first "
           f"({config.stash.get(harness_error_key, 'exit status ' + str(lane.exit_status))})")

    def never_ran() -> None:
        pytest.fail(why, pytrace=False)

    call = pytest.CallInfo.from_call(never_ran, when="setup")
    report = pytest.TestReport.from_item_and_call(item, call)
    report.user_properties.extend(check_properties(item))
    data = config.hook.pytest_report_to_serializable(config=config, report=report)
    location = list(item.location)
    return [{"kind": "logstart", "nodeid": item.nodeid, "location": location},
            {"kind": "report", "data": data},
            {"kind": "logfinish", "nodeid": item.nodeid, "location": location}]


def _stop_lanes(lanes: list[_Lane]) -> None:
    """SIGTERM every lane (its tests tear down), then wait a bounded time; SIGKILL what is left."""
    for lane in lanes:
        if lane.exit_status is None:
            try:
                os.kill(lane.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + LANE_STOP_S
    for lane in lanes:
        if lane.exit_status is not None:
            continue
        while True:
            try:
                pid, status = os.waitpid(lane.pid, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                lane.exit_status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() >= deadline:
                os.kill(lane.pid, signal.SIGKILL)
                os.waitpid(lane.pid, 0)
                break
            time.sleep(0.05)  # a bounded poll for the child's exit (waitpid offers no deadline)
