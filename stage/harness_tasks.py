"""One-off RunTask of the harness image, played: the private-service gate's task on the stage.

moto's ``run_task`` records a task and starts nothing. A RunTask that is not a service's (no
``service:`` group, no ``ecs-svc/`` starter: the stage's scheduler starts those) is the harness
image run once, as the canary's scheduled run already plays it (``stage.canary.run_task_definition``):
the task definition's one container as a process, with RunTask's command override, the
stage's AWS endpoint and credentials (what the task role gives), its output shipped to the
task's awslogs stream. The task moves in moto as ECS moves it: PROVISIONING when RunTask
answers, RUNNING once the process is up, STOPPED with the container's exit code and
"Essential container in task exited" when it ends.

``refuse_start`` plays a task that never starts (an image ECS cannot pull, a subnet out of
addresses): STOPPED at once, ``TaskFailedToStart``, that reason, no exit code.

Each change of a task is one step under a lock, and DescribeTasks answers are made to agree
with the last step: moto builds an answer field by field while the task's thread may be moving
it, and a caller must never read STOPPED with the exit code of before.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from stage import moto_quirks
from stage.canary import CanaryRun, CanaryTask, ClientFactory, run_task_definition
from stage.seed import REGION

RUN_TASK = "ecs.RunTask"
DESCRIBE_TASKS = "ecs.DescribeTasks"
DEFAULT_TIMEOUT_S = 300.0
EXITED = "Essential container in task exited"


@dataclass(frozen=True, slots=True)
class PlayedRun:
    """A one-off harness task the stage ran: its ECS ARN, its RunTask request and how it ended."""

    task_arn: str
    request: dict[str, Any]
    run: CanaryRun | None  # None: it never started


class HarnessTasks:
    """The ``moto_quirks.OperationHook`` that runs one-off RunTask calls as harness processes."""

    def __init__(self, client: ClientFactory, *, aws_env: dict[str, str], workdir: Path,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._client = client
        self._aws_env = aws_env
        self._workdir = workdir
        self._timeout_s = timeout_s
        self.refuse_start: str | None = None  # stoppedReason of a task that cannot start (None: tasks start)
        self.runs: list[PlayedRun] = []
        self._live: list[CanaryTask] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._request = threading.local()  # answer() and rewrite() of one call run on the same server thread
        self._states: dict[str, dict[str, Any]] = {}  # task ARN -> its ECS fields as last set (lock held)

    # -- the hook ------------------------------------------------------------------------------------

    def answer(self, operation: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        one_off = not str(request.get("group") or "").startswith("service:") \
            and not str(request.get("startedBy") or "").startswith("ecs-svc/")
        self._request.pending = request if operation == RUN_TASK and one_off else None
        if self._request.pending is not None:
            try:
                moto_quirks.give_containers_memory(REGION, str(request.get("taskDefinition")))
            except Exception:  # noqa: BLE001 - no such task definition: moto answers RunTask with its own error
                pass
        return None  # moto records the task; rewrite() starts it

    def rewrite(self, operation: str, response: dict[str, Any]) -> dict[str, Any] | None:
        request = getattr(self._request, "pending", None)
        self._request.pending = None
        if operation == DESCRIBE_TASKS:
            return self._as_last_set(response)
        if operation != RUN_TASK or request is None:
            return None
        for task in response.get("tasks", []):
            self._start(task, request)
        return self._as_last_set(response)

    def _as_last_set(self, response: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            ours = [(task, self._states[task.get("taskArn")]) for task in response.get("tasks", [])
                    if task.get("taskArn") in self._states]
            for task, state in ours:
                task.update({key: value for key, value in state.items() if key != "exitCode"})
                for container in task.get("containers", []):
                    container["exitCode"] = state.get("exitCode")
                    container["lastStatus"] = state["lastStatus"]
        return response if ours else None

    def _set(self, ecs_task: Any, arn: str, *, exit_code: int | None = None, **fields: Any) -> None:
        """One step of a task's life, in moto and in what DescribeTasks answers, together."""
        names = {"last_status": "lastStatus", "desired_status": "desiredStatus", "stop_code": "stopCode",
                 "stopped_reason": "stoppedReason"}
        with self._lock:
            moto_quirks.set_container_fields(ecs_task, exit_code=exit_code,
                                             last_status=fields.get("last_status", "PENDING"))
            moto_quirks.set_task_fields(ecs_task, **fields)
            state = self._states.setdefault(arn, {})
            state.update({names[key]: value for key, value in fields.items() if key in names})
            state["exitCode"] = exit_code

    # -- one task ------------------------------------------------------------------------------------

    def _start(self, task: dict[str, Any], request: dict[str, Any]) -> None:
        arn = task["taskArn"]
        cluster = str(request.get("cluster") or "default").rsplit("/", 1)[-1]
        ecs_task = moto_quirks.find_task(REGION, cluster, arn)
        if self.refuse_start is not None:
            stamp = datetime.now(timezone.utc)
            self._set(ecs_task, arn, last_status="STOPPED", desired_status="STOPPED", stop_code="TaskFailedToStart",
                      stopped_reason=self.refuse_start, stopping_at=stamp, stopped_at=stamp)  # no exit code
            with self._lock:
                self.runs.append(PlayedRun(arn, request, None))
            return
        self._set(ecs_task, arn, last_status="PROVISIONING", desired_status="RUNNING")
        thread = threading.Thread(target=self._play, args=(arn, cluster, request), name=f"harness-{arn[-8:]}",
                                  daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _play(self, arn: str, cluster: str, request: dict[str, Any]) -> None:
        ecs_task = moto_quirks.find_task(REGION, cluster, arn)
        task_id = arn.rsplit("/", 1)[-1]
        overrides = (request.get("overrides") or {}).get("containerOverrides") or []
        command = next((o["command"] for o in overrides if "command" in o), None)
        run: CanaryRun | None = None
        try:
            launched = run_task_definition(self._client, request["taskDefinition"], aws_env=self._aws_env,
                                           report_dir=self._workdir / task_id, command=command, task_id=task_id)
            with self._lock:
                self._live.append(launched)
            self._set(ecs_task, arn, last_status="RUNNING", started_at=datetime.now(timezone.utc))
            run = launched.wait(self._timeout_s)
            reason, code = EXITED, "EssentialContainerExited"
        except Exception as error:  # noqa: BLE001 - whatever went wrong, the task must reach STOPPED
            reason, code = f"stage: the harness task could not run: {error}"[:255], "TaskFailedToStart"
        stamp = datetime.now(timezone.utc)
        self._set(ecs_task, arn, exit_code=run.exit_code if run else None, last_status="STOPPED",
                  desired_status="STOPPED", stop_code=code, stopped_reason=reason, stopping_at=stamp,
                  stopped_at=stamp)
        with self._lock:
            self.runs.append(PlayedRun(arn, request, run))

    def shutdown(self) -> None:
        """Kill what still runs, and wait for each task's thread to record its end."""
        with self._lock:
            live, threads = list(self._live), list(self._threads)
        for task in live:
            task.kill()
        for thread in threads:
            thread.join(timeout=10)
