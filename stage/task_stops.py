"""The ways ECS stops a running task, as DescribeTasks shows them afterwards.

Each entry is what real ECS records: the task's ``stopCode`` and ``stoppedReason``, the
essential container's ``exitCode`` and ``reason``, whether the service starts a
replacement, and what the task wrote last (a crash leaves its traceback in the log
stream; an interruption leaves nothing of its own). ``Stage.stop_task`` plays them
while a run is under way.
"""

from __future__ import annotations

from dataclasses import dataclass

from stage.errors import StageError


@dataclass(frozen=True, slots=True)
class TaskStop:
    """How one task is stopped and what ECS says about it afterwards."""

    stop_code: str
    reason: str  # ``{deployment}`` is filled with the PRIMARY deployment's id
    exit_code: int | None
    container_reason: str | None = None
    replaced: bool = True  # the service starts a replacement (not after a scale-in: it wants fewer tasks)
    kill: bool = False  # SIGKILL (the kernel's OOM killer), not SIGTERM
    crashed: bool = False  # counts as a failed task of the deployment (restart back-off applies)
    log_lines: tuple[str, ...] = ()


OUT_OF_MEMORY_REASON = "OutOfMemoryError: Container killed due to memory usage"
ESSENTIAL_EXITED = "Essential container in task exited"

TASK_STOPS: dict[str, TaskStop] = {
    # A scale-in stops the task and starts none; ECS also uses this code when a new deployment
    # or an AZ rebalancing replaces a task ("scale_in_replaced").
    "scale_in": TaskStop("ServiceSchedulerInitiated", "Scaling activity initiated by (deployment {deployment})",
                         exit_code=0, replaced=False),
    "scale_in_replaced": TaskStop("ServiceSchedulerInitiated",
                                  "Scaling activity initiated by (deployment {deployment})", exit_code=0),
    "spot": TaskStop("SpotInterruption", "Your Spot Task was interrupted.", exit_code=0),
    "user": TaskStop("UserInitiated", "Task stopped by user", exit_code=0),
    "crash": TaskStop("EssentialContainerExited", ESSENTIAL_EXITED, exit_code=1, crashed=True, kill=True,
                      log_lines=("Traceback (most recent call last):",
                                 '  File "/app/src/board_mvp/web.py", line 88, in lifespan',
                                 "RuntimeError: background worker died: database pool exhausted")),
    "oom": TaskStop("EssentialContainerExited", ESSENTIAL_EXITED, exit_code=137,
                    container_reason=OUT_OF_MEMORY_REASON, crashed=True, kill=True),
    "health": TaskStop("ServiceSchedulerInitiated", "Task failed container health checks", exit_code=137,
                       crashed=True, kill=True),
}


def task_stop(how: str) -> TaskStop:
    """The stop named ``how``; ``StageError`` listing the known ones otherwise."""
    try:
        return TASK_STOPS[how]
    except KeyError:
        raise StageError(f"unknown task stop {how!r}; known: {', '.join(TASK_STOPS)}") from None
