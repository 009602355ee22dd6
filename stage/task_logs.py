"""Ship each stage task's stdout/stderr lines to its CloudWatch log stream, as the awslogs driver does."""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from stage.seed import LOG_GROUP


class LogShipper:
    """Copies each task's stdout/stderr lines into its CloudWatch log stream."""

    def __init__(self, logs: Any) -> None:
        self._logs = logs
        self._queue: queue.Queue[tuple[str, int, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)
        self._thread.start()

    def line(self, stream: str, text: str) -> None:
        self._queue.put((stream, int(time.time() * 1000), text))

    def follow(self, stream: str, pipe: Any) -> threading.Thread:
        def pump() -> None:
            for raw in iter(pipe.readline, b""):
                self.line(stream, raw.decode(errors="replace").rstrip("\n"))
            pipe.close()

        thread = threading.Thread(target=pump, name=f"log-{stream[-8:]}", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        done = False
        while not done:
            item = self._queue.get()
            items = [item]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            done = None in items
            batch = chronological_batches(entry for entry in items if entry is not None)
            for stream, events in batch.items():
                try:
                    self._logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)
                except Exception as error:  # noqa: BLE001 - a lost log line must not kill the scheduler
                    print(f"stage: could not ship {len(events)} log lines to {stream}: {error}", file=sys.stderr)
            for _ in items:
                self._queue.task_done()


def chronological_batches(entries: Iterable[tuple[str, int, str]]) -> dict[str, list[dict[str, Any]]]:
    """``{stream: log events}`` in time order, as one PutLogEvents request each.

    stdout and stderr are pumped by two threads, so queued lines can be out of order, and
    CloudWatch refuses a whole request that is not chronological. The sort is stable: lines
    stamped in the same millisecond keep the order they were queued in.
    """
    batch: dict[str, list[dict[str, Any]]] = {}
    for stream, stamp, text in entries:
        batch.setdefault(stream, []).append({"timestamp": stamp, "message": text or " "})
    for events in batch.values():
        events.sort(key=lambda event: event["timestamp"])
    return batch
