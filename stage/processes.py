"""The processes behind the stage's tasks: starting an app command, and a pool of booted stand-ins."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

from stage.errors import StageError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def popen(argv: list[str], *, stdin: int = subprocess.DEVNULL, env: dict[str, str] | None = None
           ) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin,
                                env=env)
    except OSError as error:
        raise StageError(f"cannot start the app command {argv[0]!r}: {error.strerror}") from None


class WarmPool:
    """Stand-in task processes forked from a server that has already imported FastAPI.

    A task then "boots" as fast as a real container that is already pulled, and 24 of them
    share one copy of the imported code (``stage.task_processes``). The server starts
    before moto is seeded, so both costs overlap. ``size`` 0 (an ``--app-cmd`` stage)
    starts no server.
    """

    def __init__(self, size: int, secret_key: str) -> None:
        self._env = {"CIVICFORGE_SECRET_KEY": secret_key}
        if size:
            from stage import task_processes

            threading.Thread(target=task_processes.warm_up, name="warm-pool", daemon=True).start()

    def take(self, args: list[str]) -> Any:
        """A started stand-in task (a ``ForkedTask``: pid, stdout/stderr pipes, wait, terminate)."""
        from stage import task_processes

        return task_processes.fork_task(args, self._env)

    def close(self) -> None:
        """Nothing to stop: the forkserver exits with the stage's process; the scheduler stops its tasks."""


def terminate(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
