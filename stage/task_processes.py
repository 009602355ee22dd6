"""Stand-in task processes forked from one warm server, so 24 tasks boot in about a second.

A stand-in task is a Python process running FastAPI and uvicorn; importing them costs
about a second of CPU. Started as fresh interpreters, 24 tasks on 2 cores take half a
minute to boot. Here one forkserver process (``multiprocessing``'s) imports them once,
and every task is a fork of it: a task boots in milliseconds and shares the imported
code with its siblings (copy-on-write), like containers of one pulled image.

:class:`ForkedTask` gives the scheduler what it used from ``subprocess.Popen``: the
pid, stdout and stderr pipes (shipped to the task's log stream), ``poll``, ``wait``,
``terminate`` and ``kill``, and the exit status.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Imported once by the forkserver; every task forked from it has them loaded.
PRELOAD = ["uvicorn", "stage.standin.app", "stage.standin.__main__"]
_context = multiprocessing.get_context("forkserver")
_start_lock = threading.Lock()
_preloaded = False


def _ensure_preload() -> None:
    global _preloaded
    with _start_lock:
        if not _preloaded:
            # Global to the forkserver: set once, before it first starts.
            _context.set_forkserver_preload(PRELOAD)
            _preloaded = True


def warm_up() -> None:
    """Start the forkserver now (it imports FastAPI while the caller does other work)."""
    _ensure_preload()
    from multiprocessing import forkserver

    forkserver.ensure_running()


def _run_task(args: list[str], env: dict[str, str], stdout: Connection, stderr: Connection) -> None:
    """In the forked process: the task's output to its pipes, its environment, then the stand-in's main."""
    os.dup2(stdout.fileno(), 1)
    os.dup2(stderr.fileno(), 2)
    stdout.close()
    stderr.close()
    # The forkserver's own streams point elsewhere: new ones on the task's pipes, as a fresh interpreter has.
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)
    os.chdir(PROJECT_ROOT)
    os.environ.update(env)
    # The forkserver ignores SIGINT/SIGCHLD; a task gets the default dispositions back.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    from stage.standin.__main__ import main

    raise SystemExit(main(args))


class ForkedTask:
    """One forked stand-in task, with the part of ``subprocess.Popen``'s interface the scheduler uses."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        _ensure_preload()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        writers = [Connection(out_write, readable=False), Connection(err_write, readable=False)]
        self._process = _context.Process(target=_run_task, args=(args, env, *writers), daemon=False)
        try:
            self._process.start()  # the write ends travel to the forkserver with the arguments
        finally:
            for writer in writers:
                writer.close()
        self.stdout: IO[bytes] = os.fdopen(out_read, "rb")
        self.stderr: IO[bytes] = os.fdopen(err_read, "rb")
        self.args = args

    @property
    def pid(self) -> int:
        pid = self._process.pid
        assert pid is not None
        return pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            import subprocess

            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return code

    def terminate(self) -> None:
        if self._process.exitcode is None:
            self._process.terminate()

    def kill(self) -> None:
        if self._process.exitcode is None:
            self._process.kill()

    def __repr__(self) -> str:
        return f"ForkedTask(pid={self._process.pid}, exitcode={self._process.exitcode})"


def fork_task(args: list[str], env: dict[str, Any]) -> ForkedTask:
    """A stand-in task with ``args`` (``python -m stage.standin`` arguments), forked from the warm server."""
    return ForkedTask(args, {key: str(value) for key, value in env.items()})
