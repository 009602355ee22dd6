"""The stage's stand-in for the ECS service scheduler.

moto stores ECS resources but runs nothing. This module runs the service's
tasks as real processes bound to their own loopback addresses (a private IP
127.1.0.N and an Elastic IP 127.0.0.N), ships their output to CloudWatch
Logs, earns health the way ECS does (the task
definition's own health check: intervals on a scaled-down clock, the
startPeriod in real seconds unless told otherwise) and keeps
deployments, task fields and service events what real ECS would show, so
the harness under test reads them through unmodified boto3 calls.

It is a reconcile loop like the real one: every change (a task became
healthy, a process exited, a timer fired) re-runs ``reconcile``, which starts
what is missing, stops what is unwanted and finishes roll-outs. What a task
needs around it lives beside this module: its addresses (``task_network``), its
log stream (``task_logs``), its health check (``task_health``) and its process
(``processes``).
"""

from __future__ import annotations

import random
import shlex
import string
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from stage import blue_green, moto_quirks
from stage.errors import StageError
from stage.faultproxy import TASKS, FaultProxy
from stage.faults import Faults
from stage.processes import WarmPool, popen, terminate
from stage.seed import CLUSTER, CONTAINER, LOG_GROUP, LOG_PREFIX, PORT, REGION, SERVICE
from stage.task_health import HealthCheck
from stage.task_logs import LogShipper
from stage.task_network import PRIVATE_NETWORK, AddressPool
from stage.task_stops import TaskStop

if TYPE_CHECKING:
    from stage.load_balancer import StageLoadBalancer

HEALTH_CHECK_FAILED = "Task failed container health checks"
EXEC_FORMAT_REASON = (
    "CannotStartContainerError: ResourceInitializationError: failed to create new container runtime task: "
    'OCI runtime create failed: runc create failed: unable to start container process: exec: "/bin/bash": '
    "exec format error: unknown"
)
APP_CMD_FIELDS = ("host", "private_host", "port")  # what --app-cmd may name: {host} is the Elastic IP
# ECS computes a deployment's bake time from its alarms and lets nobody set it; the stage's is a
# fixed span, long enough to fire the canary and evaluate its alarm by hand (StageOptions.bake_time_s).
DEFAULT_BAKE_TIME_S = 300.0
ALARM_POLL_S = 0.5  # how often the stage, playing ECS, reads a deployment's alarms
# Behind a fault proxy a task listens here, on its private IP only; the proxy holds both of its
# addresses' PORT, as the network between the harness and the container does.
INNER_PORT = PORT + 1


def app_cmd_fields(app_cmd: str) -> frozenset[str]:
    """The placeholders an ``--app-cmd`` uses; ``StageError`` for one the stage does not fill."""
    try:
        used = frozenset(name for _, name, _, _ in string.Formatter().parse(app_cmd) if name is not None)
    except ValueError as error:
        hint = "write a literal brace as {{ or }}"
        raise StageError(f"--app-cmd is not a valid template ({error}); {hint}") from None
    unknown = sorted(used - set(APP_CMD_FIELDS))
    if unknown:
        known = ", ".join("{" + name + "}" for name in APP_CMD_FIELDS)
        raise StageError(f"--app-cmd uses {{{unknown[0]}}}; the stage fills only {known}")
    return used


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class TaskPlan:
    """What the i-th task of a deployment does when it starts."""

    behaviour: str  # "serve" | "hang" (never answers) | "exec_format" (dies before the app runs)
    faults: Faults
    image_digest: str


@dataclass
class Deployment:
    id: str
    task_definition_arn: str
    status: str  # PRIMARY | ACTIVE
    rollout_state: str  # IN_PROGRESS | COMPLETED | FAILED
    desired: int
    plan: Callable[[int], TaskPlan]
    not_before: float = 0.0  # monotonic time before which no task starts (a deploy that has not begun)
    rollout_reason: str = ""
    failed_tasks: int = 0
    launched: int = 0
    # The service's deploymentConfiguration.alarms when the deployment began (None: not read yet).
    alarms: dict[str, Any] | None = None
    bake_until: float | None = None  # monotonic end of the bake time, once the old tasks are gone
    rolling_back: bool = False  # a rollback: ECS does not roll it back in turn
    # The service's deploymentConfiguration when the deployment began (None: not read yet).
    configuration: dict[str, Any] | None = None
    blue_green: blue_green.BlueGreen | None = None  # a BLUE_GREEN deployment's stage and hooks
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)

    def as_ecs(self, running: int, pending: int, network: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "taskDefinition": self.task_definition_arn,
            "desiredCount": self.desired,
            "pendingCount": pending,
            "runningCount": running,
            "failedTasks": self.failed_tasks,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "launchType": "FARGATE",
            "platformVersion": "1.4.0",
            "platformFamily": "Linux",
            "networkConfiguration": network,
            "rolloutState": self.rollout_state,
            "rolloutStateReason": self.rollout_reason,
        }


@dataclass
class StageTask:
    arn: str
    id: str
    deployment: Deployment
    plan: TaskPlan
    ip: str  # the Elastic IP (public)
    private_ip: str
    allocation_id: str
    status: str = "PENDING"
    health: str = "UNKNOWN"
    ever_healthy: bool = False
    process: subprocess.Popen[bytes] | None = None
    stopping: bool = False
    stop_reason: str = ""

    @property
    def short(self) -> str:
        return self.id[:8]


class Scheduler:
    """Runs the service's deployments; see the module docstring."""

    def __init__(
        self,
        *,
        clients: dict[str, Any],
        network: dict[str, Any],
        database: Path,
        app_cmd: str | None,
        time_scale: float,
        restart_delay_s: float,
        start_period_scale: float,
        warm: WarmPool,
        app_version: str | None = None,
        bake_time_s: float = DEFAULT_BAKE_TIME_S,
        proxy: FaultProxy | None = None,
    ) -> None:
        self._proxy = proxy
        self._ecs, self._ec2, self._logs = clients["ecs"], clients["ec2"], clients["logs"]
        self._cloudwatch = clients.get("cloudwatch")
        self._bake_time_s = bake_time_s
        self._next_alarm_check = 0.0
        self._network = network
        self._database = database
        self._app_cmd = app_cmd
        self._app_version = app_version
        self._warm = warm
        self._time_scale = time_scale
        self._restart_delay_s = restart_delay_s
        self._start_period_scale = start_period_scale
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._addresses = AddressPool(PORT)
        self._private_addresses = AddressPool(PORT, PRIVATE_NETWORK)
        self._app_cmd_fields = app_cmd_fields(app_cmd) if app_cmd else frozenset()
        self._shipper = LogShipper(self._logs)
        self.deployments: list[Deployment] = []
        # Deployments the service had before the stage began, no longer listed and with no task left.
        self.retired: list[Deployment] = []
        self.tasks: list[StageTask] = []
        self.events: list[dict[str, Any]] = []
        self.stable_at: float | None = None  # wall time the last roll-out completed
        self._health_checks: dict[str, HealthCheck | None] = {}
        self._timer = threading.Thread(target=self._tick, name="scheduler", daemon=True)
        self._next_start: dict[str, float] = {}
        # By deployment id: what every later task of it does instead of its plan (a replacement that never gets healthy).
        self._replacement_plans: dict[str, TaskPlan] = {}
        # The service's load balancer (StageOptions.load_balancer): tasks register in its target groups,
        # and a deployment rolls on only once its targets are healthy there, as on ECS.
        self.load_balancer: StageLoadBalancer | None = None

    # -- public -------------------------------------------------------------------------------

    def start(self, deployments: list[Deployment], events: list[str] = (), retired: list[Deployment] = ()) -> None:
        with self._lock:
            self.deployments = deployments
            self.retired = list(retired)
            for message in events:
                self.record_event(message)
            self.reconcile()
        self._timer.start()

    def wait_for(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Block until ``condition()`` holds (checked on every scheduler change)."""
        with self._changed:
            return self._changed.wait_for(condition, timeout=timeout_s)

    def live_tasks(self, deployment: Deployment | None = None) -> list[StageTask]:
        with self._lock:
            return [
                t for t in self.tasks if t.status != "STOPPED" and (deployment is None or t.deployment is deployment)
            ]

    def shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            tasks = [t for t in self.tasks if t.process is not None]
            for task in tasks:
                task.stopping = True
        # Signal every task first, then wait: 24 tasks stop in the time of one.
        for task in tasks:
            if task.process is not None and task.process.poll() is None:
                task.process.terminate()
        for task in tasks:
            terminate(task.process)
        self._addresses.close()
        self._private_addresses.close()
        self._warm.close()
        if self._timer.is_alive():
            self._timer.join(timeout=5)
        self._shipper.close()

    def begin_deployment(self, task_definition_arn: str, plan: Callable[[int], TaskPlan]) -> Deployment:
        """``UpdateService`` with a new task definition: a new PRIMARY deployment; the others turn ACTIVE.

        The reconcile loop then rolls it out as any deployment: its tasks start, the older ones
        are scaled to zero once they are healthy, and the older deployments leave the list.
        """
        with self._lock:
            desired = next((d.desired for d in self.deployments if d.status == "PRIMARY"), 1)
            for deployment in self.deployments:
                if deployment.status == "PRIMARY":
                    deployment.status = "ACTIVE"
                    deployment.updated_at = now()
            new = Deployment(deployment_id(), task_definition_arn, "PRIMARY", "IN_PROGRESS", desired, plan,
                             rollout_reason="ECS deployment in progress.")
            self.deployments.insert(0, new)
            self.record_event(f"(service {SERVICE}) (deployment {new.id}) deployment started with {task_definition_arn}.")
            self.reconcile()
            return new

    def allow_start(self, deployment: Deployment) -> None:
        """Let a deployment held by ``not_before`` start its tasks now."""
        with self._lock:
            deployment.not_before = 0.0
            self.reconcile()

    def add_stopped_task(self, deployment: Deployment, reason: str, exit_code: int | None) -> None:
        """A task that stopped before the stage began (for histories such as a rollback)."""
        with self._lock:
            task = self._launch(deployment, deployment.plan(deployment.launched), spawn=False)
            self._mark_stopped(task, reason=reason, stop_code="ServiceSchedulerInitiated", exit_code=exit_code)

    def stop_task(self, task_id: str, stop: TaskStop, *, replacement: str | None = "serve") -> StageTask:
        """Stop a running task (id or its prefix) the way ``stop`` says; what ECS shows follows.

        ``replacement``: what the task the service starts instead does ("serve", or "hang": never
        healthy, nor any task the deployment starts after it); None starts none (the deployment's
        desired count drops by one, as after a scale-in), nor does a stop that is not ``stop.replaced``.
        """
        with self._lock:
            task = next((t for t in self.tasks if t.id.startswith(task_id) and t.status != "STOPPED"), None)
            if task is None:
                raise StageError(f"no running task {task_id!r}")
            task.stopping = True
            stream = f"{LOG_PREFIX}/{CONTAINER}/{task.id}"
            for line in stop.log_lines:
                self._shipper.line(stream, line)
            if task.process is not None and task.process.poll() is None:
                if stop.kill:
                    task.process.kill()
                terminate(task.process)
            reason = stop.reason.format(deployment=self._primary().id)
            self._mark_stopped(task, reason=reason, stop_code=stop.stop_code, exit_code=stop.exit_code,
                               container_reason=stop.container_reason)
            self.record_event(f"(service {SERVICE}) has stopped 1 running tasks: (task {task.id}).")
            deployment = task.deployment
            if replacement is None or not stop.replaced:
                # A scale-in: the service and its deployment want one task fewer, so none is started.
                deployment.desired -= 1
                service = moto_quirks.find_service(REGION, CLUSTER, SERVICE)
                service.desired_count = max(0, service.desired_count - 1)
            elif replacement != "serve":
                self._replacement_plans[deployment.id] = TaskPlan(replacement, task.plan.faults,
                                                                  task.plan.image_digest)
            if stop.crashed:
                deployment.failed_tasks += 1
                self._next_start[deployment.id] = time.monotonic() + self._restart_delay_s
            self.reconcile()
            return task

    def _plan_for(self, deployment: Deployment) -> TaskPlan:
        return self._replacement_plans.get(deployment.id) or deployment.plan(deployment.launched)

    # -- the reconcile loop ----------------------------------------------------------------------

    def _tick(self) -> None:
        # A timer, not synchronisation: deployments that wait for their start time,
        # and restart back-off, need the loop to run without an outside change.
        while not self._stop.wait(0.05):
            with self._lock:
                self.reconcile()

    def reconcile(self) -> None:
        """Start what is missing, stop what is unwanted, finish roll-outs. Call with the scheduler's lock held."""
        if self._stop.is_set():
            return
        clock = time.monotonic()
        for deployment in list(self.deployments):
            live = self.live_tasks(deployment)
            missing = deployment.desired - len(live)
            ready_at = max(deployment.not_before, self._next_start.get(deployment.id, 0.0))
            if missing > 0 and clock >= ready_at:
                started = [self._launch(deployment, self._plan_for(deployment)) for _ in range(missing)]
                ids = " ".join(f"(task {t.id})" for t in started)
                self.record_event(f"(service {SERVICE}) has started {len(started)} tasks: {ids}.")
            elif missing < 0:
                self.scale_down(live[:-missing])
        self._advance_rollout()
        self._publish()

    def _primary(self) -> Deployment:
        return next(d for d in self.deployments if d.status == "PRIMARY")

    def _advance_rollout(self) -> None:
        primary = self._primary()
        if primary.rollout_state != "IN_PROGRESS":
            return
        if self._blue_green(primary) is not None:
            blue_green.advance(self, primary)
            return
        alarms = self._deployment_alarms(primary)
        if alarms and self._roll_back_on_alarm(primary, alarms):
            return
        healthy = [t for t in self.live_tasks(primary) if t.health == "HEALTHY" or self._health_check(t) is None]
        running = [t for t in healthy if t.status == "RUNNING" and self.in_service(t)]
        if len(running) < primary.desired:
            return
        old = [d for d in self.deployments if d is not primary and d.rollout_state != "FAILED"]
        for deployment in old:
            deployment.desired = 0
        if any(self.live_tasks(d) for d in old):
            self.scale_down([task for d in old for task in self.live_tasks(d)])
            return
        if alarms:
            # ECS watches the alarms for a bake time after the old tasks are gone; until it ends
            # the rollout stays IN_PROGRESS and the old deployment stays listed.
            if primary.bake_until is None:
                primary.bake_until = time.monotonic() + self._bake_time_s
            if time.monotonic() < primary.bake_until:
                return
        self.finish_rollout(primary, retired=old)

    def in_service(self, task: StageTask) -> bool:
        """Healthy in its target group, where the service has a load balancer (ECS waits for that too)."""
        return self.load_balancer is None or self.load_balancer.healthy(task.id)

    def _green(self, deployment: Deployment) -> bool:
        """A blue/green deployment still rolling out: its tasks join the alternate target group."""
        return (self._configuration(deployment).get("strategy") == blue_green.BLUE_GREEN
                and deployment.status == "PRIMARY" and deployment.rollout_state == "IN_PROGRESS"
                and not deployment.rolling_back)

    def finish_rollout(self, primary: Deployment, *, retired: list[Deployment]) -> None:
        """The roll-out is done: the retired deployments leave the list and the PRIMARY is COMPLETED."""
        self.deployments = [d for d in self.deployments if d not in retired]
        primary.rollout_state = "COMPLETED"
        primary.rollout_reason = f"ECS deployment {primary.id} completed."
        primary.updated_at = now()
        self.record_event(f"(service {SERVICE}) (deployment {primary.id}) deployment completed.")
        self.record_event(f"(service {SERVICE}) has reached a steady state.")
        self.stable_at = time.time()

    def _configuration(self, deployment: Deployment) -> dict[str, Any]:
        """The service's deploymentConfiguration as it was when ``deployment`` began (read once).

        update_service keeps deploymentConfiguration on moto's service (create_service drops
        it); read from there, not through describe_services, so the stage's own calls do not
        show in the harness's call counts.
        """
        if deployment.configuration is None:
            service = moto_quirks.find_service(REGION, CLUSTER, SERVICE)
            deployment.configuration = dict(getattr(service, "deployment_configuration", None) or {})
        return deployment.configuration

    def _blue_green(self, deployment: Deployment) -> blue_green.BlueGreen | None:
        """The deployment's blue/green state, set up when it is first seen (None: the service deploys ROLLING)."""
        if deployment.blue_green is None and not deployment.rolling_back:
            deployment.blue_green = blue_green.from_configuration(self._configuration(deployment), self._time_scale)
        return deployment.blue_green

    def _deployment_alarms(self, deployment: Deployment) -> list[str]:
        """The alarm names ECS watches for this deployment: none for a rollback or when not enabled."""
        if deployment.alarms is None:
            deployment.alarms = dict(self._configuration(deployment).get("alarms") or {})
        if deployment.rolling_back or not deployment.alarms.get("enable"):
            return []
        return list(deployment.alarms.get("alarmNames") or [])

    def _roll_back_on_alarm(self, deployment: Deployment, names: list[str]) -> bool:
        """A watched alarm in ALARM fails the deployment and, with rollback on, rolls it back (True)."""
        clock = time.monotonic()
        if self._cloudwatch is None or clock < self._next_alarm_check:
            return False
        self._next_alarm_check = clock + ALARM_POLL_S
        alarms = self._cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
        firing = [alarm["AlarmName"] for alarm in alarms if alarm["StateValue"] == "ALARM"]
        if not firing:
            return False
        listed = ", ".join(firing)
        deployment.rollout_state = "FAILED"
        deployment.rollout_reason = f"ECS deployment failed: alarm(s) {listed} are in ALARM state."
        deployment.updated_at = now()
        self.record_event(f"(service {SERVICE}) (deployment {deployment.id}) deployment failed: "
                    f"alarm(s) {listed} are in ALARM state.")
        # As ECS: back to the most recent COMPLETED deployment, which turns IN_PROGRESS again.
        target = next((d for d in self.deployments if d is not deployment and d.rollout_state == "COMPLETED"), None)
        if not deployment.alarms or not deployment.alarms.get("rollback") or target is None:
            return True  # FAILED: it launches no new tasks, nothing is rolled back
        desired = deployment.desired
        deployment.status, deployment.desired = "ACTIVE", 0
        target.status, target.rollout_state, target.desired = "PRIMARY", "IN_PROGRESS", desired
        target.rolling_back = True
        target.rollout_reason = f"ECS deployment {target.id} in progress."
        target.updated_at = now()
        self.deployments = [target, deployment] + [d for d in self.deployments if d not in (target, deployment)]
        self.record_event(f"(service {SERVICE}) (deployment {deployment.id}) deployment failed: rolling back to "
                    f"deployment {target.id}.")
        return True

    def scale_down(self, tasks: list[StageTask]) -> None:
        """Stop ``tasks`` as ECS does when a deployment scales in (lock held)."""
        for task in tasks:
            self._stop_task(task, f"Scaling activity initiated by (deployment {self._primary().id})")

    # -- task life ---------------------------------------------------------------------------------

    def _launch(self, deployment: Deployment, plan: TaskPlan, spawn: bool = True) -> StageTask:
        deployment.launched += 1
        response = self._ecs.run_task(
            cluster=CLUSTER,
            taskDefinition=deployment.task_definition_arn,
            launchType="FARGATE",
            startedBy=deployment.id,
            group=f"service:{SERVICE}",
            networkConfiguration=self._network,
        )
        arn = response["tasks"][0]["taskArn"]
        eni = next(
            d["value"]
            for d in response["tasks"][0]["attachments"][0]["details"]
            if d["name"] == "networkInterfaceId"
        )
        private_ip = self._private_addresses.take()
        moto_quirks.set_private_ip(REGION, CLUSTER, arn, eni, private_ip)
        ip = self._addresses.take()
        allocation = self._ec2.allocate_address(Domain="vpc", Address=ip)["AllocationId"]
        self._ec2.associate_address(AllocationId=allocation, NetworkInterfaceId=eni)
        task = StageTask(arn=arn, id=arn.rsplit("/", 1)[1], deployment=deployment, plan=plan, ip=ip,
                         private_ip=private_ip, allocation_id=allocation)
        self.tasks.append(task)
        ecs_task = moto_quirks.find_task(REGION, CLUSTER, arn)
        stamp = now()
        moto_quirks.set_task_fields(
            ecs_task, last_status="PENDING", health_status="UNKNOWN", created_at=stamp,
            launch_type="FARGATE", platform_version="1.4.0", cpu="256", memory="512",
        )
        moto_quirks.set_container_fields(
            ecs_task, last_status="PENDING", health_status="UNKNOWN", image_digest=plan.image_digest
        )
        stream = f"{LOG_PREFIX}/{CONTAINER}/{task.id}"
        self._logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        if not spawn:
            return task
        if plan.behaviour == "exec_format":
            self._shipper.line(stream, "exec /bin/bash: exec format error")
            self._mark_stopped(task, reason="Essential container in task exited", stop_code="EssentialContainerExited",
                               exit_code=255, container_reason=EXEC_FORMAT_REASON)
            return task
        task.process = self._spawn(task, stream)
        task.status = "RUNNING"
        moto_quirks.set_task_fields(
            ecs_task, last_status="RUNNING", started_at=now(), pull_started_at=stamp, pull_stopped_at=stamp,
            connectivity="CONNECTED", connectivity_at=stamp,
        )
        moto_quirks.set_container_fields(ecs_task, last_status="RUNNING")
        if self.load_balancer is not None:
            # ECS registers a Fargate task's private IP and container port (target type ip).
            self.load_balancer.register(deployment.id, task.id, task.private_ip, green=self._green(deployment))
        threading.Thread(target=self._watch_health, args=(task,), name=f"health-{task.short}", daemon=True).start()
        return task

    def _spawn(self, task: StageTask, stream: str) -> subprocess.Popen[bytes]:
        if self._app_cmd:
            argv = shlex.split(self._app_cmd.format(host=task.ip, private_host=task.private_ip, port=PORT))
            process = popen(argv)
        else:
            faults = task.plan.faults
            hosts = ["--host", task.private_ip] if self._proxy else ["--host", task.private_ip, "--host", task.ip]
            args = [*hosts, "--port", str(self._app_port), "--db", str(self._database), *faults.app_args()]
            if self._app_version:
                args += ["--version", self._app_version]
            if task.plan.behaviour == "hang":
                args += ["--fault", "warmup_s=86400"]
            process = self._warm.take(args)
        if self._proxy is not None:
            for address in (task.ip, task.private_ip):
                self._proxy.open(address, PORT, upstream=(task.private_ip, INNER_PORT), side=TASKS, target=task.id)
        readers = [self._shipper.follow(stream, process.stdout), self._shipper.follow(stream, process.stderr)]
        threading.Thread(target=self._watch_exit, args=(task, process, readers), name=f"exit-{task.short}",
                         daemon=True).start()
        return process

    def health_check(self, task_definition_arn: str) -> HealthCheck | None:
        """The container health check of a task definition, on the stage's clock (None: it has none)."""
        with self._lock:
            if task_definition_arn not in self._health_checks:
                definition = self._ecs.describe_task_definition(taskDefinition=task_definition_arn)["taskDefinition"]
                container = next(c for c in definition["containerDefinitions"] if c["name"] == CONTAINER)
                self._health_checks[task_definition_arn] = HealthCheck.from_task_definition(
                    container, self._time_scale, self._start_period_scale
                )
            return self._health_checks[task_definition_arn]

    def _health_check(self, task: StageTask) -> HealthCheck | None:
        return self.health_check(task.deployment.task_definition_arn)

    @property
    def _app_port(self) -> int:
        """The port a task's app binds: PORT, or INNER_PORT behind the fault proxy."""
        return INNER_PORT if self._proxy is not None else PORT

    def _health_check_address(self, task: StageTask) -> str:
        """Where the stage runs a task's health check: an address the task listens on.

        ECS runs the check inside the container, against whatever the app binds. The stand-in
        binds both addresses; an ``--app-cmd`` binds the ones it names (``{host}`` alone: the
        Elastic IP, as before ``{private_host}`` existed).
        """
        if self._app_cmd and "private_host" not in self._app_cmd_fields:
            return task.ip
        return task.private_ip

    def _watch_health(self, task: StageTask) -> None:
        with self._lock:
            check = self._health_check(task)
        if check is None:
            return
        address = self._health_check_address(task)
        started = time.monotonic()
        failures = 0
        while not self._stop.is_set() and not task.stopping:
            passed = check.passes(address, self._app_port)  # inside the container: never through the proxy
            in_start_period = time.monotonic() - started < check.start_period_s
            with self._lock:
                if task.stopping or task.status == "STOPPED":
                    return
                if passed:
                    failures = 0
                    if task.health != "HEALTHY":
                        self._set_health(task, "HEALTHY")
                # As on ECS: a failure inside startPeriod does not count, unless a check has passed already.
                elif not in_start_period or task.ever_healthy:
                    failures += 1
                    if failures >= check.retries:
                        self._set_health(task, "UNHEALTHY")
                        self.record_event(f"(service {SERVICE}) (task {task.id}) failed container health checks.")
                        self._stop_task(task, HEALTH_CHECK_FAILED, exit_code=137)
                        task.deployment.failed_tasks += 1
                        self._next_start[task.deployment.id] = time.monotonic() + self._restart_delay_s
                        self.reconcile()
                        return
            if self._stop.wait(check.interval_s):
                return

    def _watch_exit(self, task: StageTask, process: subprocess.Popen[bytes], readers: list[threading.Thread]) -> None:
        code = process.wait()
        for reader in readers:
            reader.join(timeout=2)
        with self._lock:
            if task.stopping or task.status == "STOPPED":
                return
            self._mark_stopped(task, reason="Essential container in task exited",
                               stop_code="EssentialContainerExited", exit_code=code)
            task.deployment.failed_tasks += 1
            self._next_start[task.deployment.id] = time.monotonic() + self._restart_delay_s
            self.record_event(f"(service {SERVICE}) has stopped 1 running tasks: (task {task.id}).")
            self.reconcile()

    def _set_health(self, task: StageTask, health: str) -> None:
        task.health = health
        task.ever_healthy = task.ever_healthy or health == "HEALTHY"
        ecs_task = moto_quirks.find_task(REGION, CLUSTER, task.arn)
        moto_quirks.set_task_fields(ecs_task, health_status=health)
        moto_quirks.set_container_fields(ecs_task, health_status=health)
        self.reconcile()

    def _stop_task(self, task: StageTask, reason: str, exit_code: int = 0) -> None:
        task.stopping = True
        process = task.process
        if process is not None:
            # Terminating outside the lock would let the exit watcher see a half-stopped task.
            terminate(process)
        self._mark_stopped(task, reason=reason, stop_code="ServiceSchedulerInitiated", exit_code=exit_code)
        if not reason.startswith(HEALTH_CHECK_FAILED):
            self.record_event(f"(service {SERVICE}) has stopped 1 running tasks: (task {task.id}).")

    def _mark_stopped(self, task: StageTask, *, reason: str, stop_code: str, exit_code: int | None,
                      container_reason: str | None = None) -> None:
        task.status = "STOPPED"
        task.stop_reason = reason
        if self.load_balancer is not None:
            self.load_balancer.deregister(task.id)
        stamp = now()
        ecs_task = moto_quirks.find_task(REGION, CLUSTER, task.arn)
        moto_quirks.set_task_fields(
            ecs_task, last_status="STOPPED", desired_status="STOPPED", stopped_reason=reason, stop_code=stop_code,
            stopping_at=stamp, stopped_at=stamp, execution_stopped_at=stamp,
        )
        fields: dict[str, Any] = {"last_status": "STOPPED", "exit_code": exit_code}
        if container_reason:
            fields["reason"] = container_reason
        moto_quirks.set_container_fields(ecs_task, **fields)
        try:
            self._ec2.disassociate_address(AssociationId=self._association_of(task))
        except Exception:  # noqa: BLE001 - already gone is fine
            pass
        if self._proxy is not None:
            for address in (task.ip, task.private_ip):
                self._proxy.close(address, PORT)
        self._addresses.release(task.ip)
        self._private_addresses.release(task.private_ip)
        self._changed.notify_all()

    def _association_of(self, task: StageTask) -> str:
        address = self._ec2.describe_addresses(AllocationIds=[task.allocation_id])["Addresses"][0]
        return address["AssociationId"]

    # -- what describe-services shows ----------------------------------------------------------------

    def record_event(self, message: str) -> None:
        """Add a service event, newest first, as describe_services shows them (lock held)."""
        self.events.insert(0, {"id": str(uuid.uuid4()), "createdAt": now(), "message": message})
        del self.events[100:]

    def _publish(self) -> None:
        running_total = pending_total = 0
        shown = []
        for deployment in self.deployments:
            live = self.live_tasks(deployment)
            running = sum(1 for t in live if t.status == "RUNNING")
            pending = len(live) - running
            running_total += running
            pending_total += pending
            shown.append(deployment.as_ecs(running, pending, self._network))
        moto_quirks.publish_service_state(
            REGION, CLUSTER, SERVICE, deployments=shown, events=list(self.events), running=running_total,
            pending=pending_total, task_definition_arn=self._primary().task_definition_arn,
        )
        self._changed.notify_all()


def deployment_id() -> str:
    return f"ecs-svc/{random.randrange(10**18, 10**19)}"

