"""Which tests run side by side: one lane per task, in collection order (pytest-free).

A smoke run's requests are latency-bound: on a service of 24 tasks the wall time is the
slowest task's chain of requests, not the sum over tasks, as soon as the tasks are
checked at once. A lane is the list of tests one process runs one after another; tests
of the same task share a lane (and its logins), tests of different tasks run in
different lanes, and tests of no task (the deployment check) run before the lanes start.

The wire between a lane and the run is JSON lines (:func:`encode` / :func:`decode`):
what the lane's pytest reported, in the form pytest itself serialises reports for xdist.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_LANES = 32  # processes at once: beyond this, tasks share lanes (round robin)


@dataclass(frozen=True, slots=True)
class LanePlan:
    """Indexes into the collected items: ``first`` run in the run's own process, then each lane at once."""

    first: tuple[int, ...]
    lanes: tuple[tuple[int, ...], ...]

    @property
    def concurrent(self) -> bool:
        return len(self.lanes) > 1


def plan_lanes(task_keys: Sequence[Hashable | None], max_lanes: int = DEFAULT_MAX_LANES) -> LanePlan:
    """Lanes for items whose task is ``task_keys[i]`` (None: no task); order within a lane is collection order.

    Tasks go to lanes round robin in the order they are first seen, so with more tasks than
    ``max_lanes`` each lane checks whole tasks and no two lanes share one.
    """
    if max_lanes < 1:
        raise ValueError(f"max_lanes must be at least 1, got {max_lanes}")
    first: list[int] = []
    tasks: dict[Hashable, int] = {}
    for key in task_keys:
        if key is not None and key not in tasks:
            tasks[key] = len(tasks)
    count = min(max_lanes, len(tasks))
    lanes: list[list[int]] = [[] for _ in range(count)]
    for index, key in enumerate(task_keys):
        if key is None:
            first.append(index)
        else:
            lanes[tasks[key] % count].append(index)
    return LanePlan(tuple(first), tuple(tuple(lane) for lane in lanes))


def encode(kind: str, **fields: Any) -> bytes:
    """One message of a lane: ``{"kind": ..., ...}`` on one line."""
    return (json.dumps({"kind": kind, **fields}, separators=(",", ":")) + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    """The message on ``line``; a line that is not a message is ``{"kind": "garbled"}``."""
    try:
        message = json.loads(line)
    except ValueError:
        return {"kind": "garbled", "text": line[:200].decode(errors="replace")}
    return message if isinstance(message, dict) and "kind" in message else {"kind": "garbled", "text": str(message)}
