"""The processes behind the stage's tasks: starting an app command, and a pool of booted stand-ins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

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
    """Stand-in processes that have already imported FastAPI, waiting for their task's arguments.

    A task then "boots" as fast as a real container that is already pulled; the pool refills
    itself in the background. Started before moto is seeded, so both costs overlap.
    """

    def __init__(self, size: int, secret_key: str) -> None:
        self._size = size
        self._env = {**os.environ, "CIVICFORGE_SECRET_KEY": secret_key}
        self._ready: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._fill()

    def _fill(self) -> None:
        with self._lock:
            while not self._closed and len(self._ready) < self._size:
                self._ready.append(popen([sys.executable, "-m", "stage.standin", "--warm"], stdin=subprocess.PIPE,
                                          env=self._env))

    def take(self, args: list[str]) -> subprocess.Popen[bytes]:
        with self._lock:
            process = self._ready.pop(0) if self._ready else None
        if process is None:
            process = popen([sys.executable, "-m", "stage.standin", "--warm"], stdin=subprocess.PIPE, env=self._env)
        assert process.stdin is not None
        process.stdin.write((json.dumps(args) + "\n").encode())
        process.stdin.close()
        threading.Thread(target=self._fill, name="warm-pool", daemon=True).start()
        return process

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._ready = self._ready, []
        for process in idle:
            if process.stdin is not None:
                process.stdin.close()  # an empty line: the process exits at once
            terminate(process)


def terminate(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
