"""A local stand-in of the CivicForge ECS deployment: moto plus a scheduler playing ECS.

    with Stage(StageOptions(scenario="rolling")) as stage:
        subprocess.run(["pytest", "smoke"], env={**os.environ, **stage.env})

The harness reaches it exactly as it reaches AWS: boto3 through
``AWS_ENDPOINT_URL``, then HTTP to each task's Elastic IP (127.0.0.N:8000), or
with ``--address private`` to its ENI's private IP (127.1.0.N:8000): every task
listens on both, and both are loopback addresses.
"""

from __future__ import annotations

import math
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3

from stage import scenarios
from stage.canary import CanaryResources, install_canary
from stage.deployment_records import DeploymentRecords
from stage.load_balancer import StageLoadBalancer, parse_lb_faults
from stage.faults import FaultError, parse_faults
from stage.harness_tasks import HarnessTasks
from stage.moto_quirks import ACCOUNT_ID, HookChain, MotoServer
from stage.errors import StageError
from stage.faultproxy import AWS, FaultProxy, NetworkFaults
from stage.processes import WarmPool
from stage.scheduler import DEFAULT_BAKE_TIME_S, PORT, Scheduler, StageTask, app_cmd_fields
from stage.scheduler import Deployment as StageDeployment
from stage.task_network import port_is_free
from stage.task_stops import task_stop
from stage.seed import (CLUSTER, CONTAINER, DESIRED_COUNT, LOG_GROUP, LOG_PREFIX, MAX_TASKS, REGION, REPOSITORY,
                        SERVICE, SMOKE_SECRET, Seeded, seed)

DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
DEFAULT_TIME_SCALE = 0.01  # 30 s health-check interval -> 0.3 s
# startPeriod is the app's time to boot, which the stage cannot shorten: real seconds by default.
DEFAULT_START_PERIOD_SCALE = 1.0
WARM_TASKS = 2  # stand-in processes kept booted: the first two tasks of any scenario start at once


def _session_credentials() -> dict[str, str]:
    return {"aws_access_key_id": DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}


@dataclass(frozen=True, slots=True)
class StageOptions:
    scenario: str = "healthy"
    tasks: int = DESIRED_COUNT  # the service's desiredCount: how many tasks each deployment runs
    faults: tuple[str, ...] = ()
    health_check_path: str = "/health"
    app_cmd: str | None = None
    app_version: str | None = None
    moto_port: int = 0
    time_scale: float = DEFAULT_TIME_SCALE  # health-check interval and timeout
    start_period_scale: float = DEFAULT_START_PERIOD_SCALE  # health-check startPeriod
    restart_delay_s: float = 0.5
    rolling_delay_s: float = 3.0  # math.inf: held until begin_roll_out()
    ready_timeout_s: float = 30.0
    bake_time_s: float = DEFAULT_BAKE_TIME_S  # a deploy whose service has deployment alarms bakes this long
    # False: an account without ECS deployment records (no currentServiceDeployment, UnknownOperation).
    deployment_records: bool = True
    # blue_green scenarios: their PAUSE hooks' timeoutConfiguration (minutes on the stage's clock, x time_scale).
    hook_timeout_minutes: int = scenarios.BLUE_GREEN_HOOK_TIMEOUT_MINUTES
    hook_timeout_action: str = "ROLLBACK"
    # A fault-injecting proxy (stage.faultproxy) between the harness and every task address, and in
    # front of stage.env's AWS_ENDPOINT_URL. None: the harness reaches tasks and moto directly.
    network_faults: NetworkFaults | None = None
    # An Application Load Balancer in front of the service (stage.load_balancer): target groups whose
    # health checks probe the tasks, listeners on loopback, registration and draining as ECS does them.
    load_balancer: bool = False
    lb_faults: tuple[str, ...] = ()  # stage.load_balancer.LB_FAULTS; they need load_balancer=True


def clock_factor(flag: str, value: str | float) -> float:
    """The one rule for ``--time-scale`` and ``--start-period-scale``: a finite number above zero."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise StageError(f"{flag} must be a positive number, e.g. 0.1 or 1 (got {value!r})")
    return number


def task_count(flag: str, value: str | int) -> int:
    """The one rule for ``--tasks``: a whole number from 1 to MAX_TASKS."""
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_TASKS:
        raise StageError(f"{flag} must be a whole number from 1 to {MAX_TASKS}, e.g. 24 (got {value!r})")
    return number


class Stage:
    """Owns everything it starts; ``stop()`` (or leaving the ``with``) removes all of it."""

    def __init__(self, options: StageOptions) -> None:
        if options.scenario not in scenarios.SCENARIOS:
            known = ", ".join(scenarios.SCENARIOS)
            raise StageError(f"unknown scenario {options.scenario!r}; known scenarios: {known}")
        try:
            self.faults = parse_faults(options.faults)
        except FaultError as error:
            raise StageError(str(error)) from None
        if options.moto_port and not port_is_free("127.0.0.1", options.moto_port):
            raise StageError(f"port {options.moto_port} on 127.0.0.1 is already in use; pick another --moto-port")
        if not options.health_check_path.startswith("/"):
            raise StageError(f"--health-check-path must start with '/' (got {options.health_check_path!r})")
        if options.app_cmd:
            app_cmd_fields(options.app_cmd)
            if options.network_faults is not None:
                raise StageError("network faults need the stand-in app (its port moves behind the proxy); "
                                 "drop --app-cmd or the network faults")
        self.lb_faults = parse_lb_faults(options.lb_faults)
        if self.lb_faults and not options.load_balancer:
            raise StageError("load balancer faults need the load balancer: add --load-balancer")
        clock_factor("--time-scale", options.time_scale)
        clock_factor("--start-period-scale", options.start_period_scale)
        task_count("--tasks", options.tasks)
        self.options = options
        self._moto: MotoServer | None = None
        self._warm: WarmPool | None = None
        self._scheduler: Scheduler | None = None
        self._workdir: Path | None = None
        self._clients: dict[str, Any] = {}
        self._proxy: FaultProxy | None = None
        self._aws_endpoint: str | None = None  # the proxy's, in front of moto (None: moto's own)
        self.seeded: Seeded | None = None
        self.canary: CanaryResources | None = None  # the canary stack, when the scenario installs it
        self.harness_tasks: HarnessTasks | None = None  # one-off RunTask of the harness image, played
        self._deferred: StageDeployment | None = None  # the roll-out a scenario begins rolling_delay_s after ready
        self._load_balancer: StageLoadBalancer | None = None

    # -- life ------------------------------------------------------------------------------------

    def __enter__(self) -> Stage:
        self.start()
        return self

    def __exit__(self, *_exc: tuple[type[BaseException], BaseException, TracebackType] | tuple[None, ...]) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        options = self.options
        self._workdir = Path(tempfile.mkdtemp(prefix="civicforge-stage-"))
        secret_key = secrets.token_urlsafe(32)
        # Warm task processes import FastAPI on the other core while moto loads and is seeded.
        self._warm = WarmPool(0 if options.app_cmd else WARM_TASKS, secret_key)
        self._moto = MotoServer(port=options.moto_port)
        self._moto.start()
        if options.network_faults is not None:
            self._proxy = FaultProxy(options.network_faults)
            moto_host, moto_port = self._moto.endpoint.removeprefix("http://").rsplit(":", 1)
            host, port = self._proxy.open("127.0.0.1", 0, upstream=(moto_host, int(moto_port)), side=AWS)
            self._aws_endpoint = f"http://{host}:{port}"
        session = boto3.session.Session(region_name=REGION, **_session_credentials())
        for name in ("ecs", "ec2", "ecr", "logs", "secretsmanager", "cloudwatch", "elbv2"):
            self._clients[name] = session.client(name, endpoint_url=self._moto.endpoint)
        self.seeded = seed(self._clients, health_check_path=options.health_check_path,
                           curl_health_check="curl_health_check" in self.faults, secret_key=secret_key,
                           no_start_period="no_start_period" in self.faults, desired_count=options.tasks)
        database = self._workdir / "civicforge.db"
        if not options.app_cmd:
            # Like the real start-up migrations, but once, before any task, so the
            # smoke accounts exist and the first Organizer is board_001's owner.
            from stage.standin.db import prepare_database

            prepare_database(database, self.seeded.smoke_accounts)
        network = {"awsvpcConfiguration": {"subnets": [self.seeded.subnet_id],
                                           "securityGroups": [self.seeded.security_group_id],
                                           "assignPublicIp": "ENABLED"}}
        self._scheduler = Scheduler(
            clients=self._clients, network=network, database=database,
            app_cmd=options.app_cmd, time_scale=options.time_scale, restart_delay_s=options.restart_delay_s,
            start_period_scale=options.start_period_scale, warm=self._warm, app_version=options.app_version,
            bake_time_s=options.bake_time_s, proxy=self._proxy,
        )
        # A one-off RunTask (the private-service gate's) runs the harness image as a process, as the canary does.
        self.harness_tasks = HarnessTasks(self.client, aws_env=self.aws_env, workdir=self._workdir / "harness-tasks")
        self._moto.hook = HookChain(self.harness_tasks, DeploymentRecords(
            self._scheduler, self.seeded, network=network, enabled=options.deployment_records))
        plan = scenarios.build(options.scenario, self.faults, self.seeded)
        if options.load_balancer:
            self._load_balancer = StageLoadBalancer(
                self._clients, self.seeded, blue_green=plan.blue_green, faults=self.lb_faults,
                time_scale=options.time_scale, health_check_path=options.health_check_path)
            self._load_balancer.create()
            self._scheduler.load_balancer = self._load_balancer
            self._moto.query_hook = self._load_balancer
        if plan.canary_alarm:
            self.canary = self._guard_with_canary()
        if plan.blue_green:
            # As a team would: update-service --deployment-configuration (create_service drops it in moto).
            self.client("ecs").update_service(cluster=CLUSTER, service=SERVICE, deploymentConfiguration=(
                scenarios.blue_green_configuration(options.hook_timeout_minutes, options.hook_timeout_action)))
        # Before the wait for readiness, which can last a whole startPeriod: say how long it counts.
        print(f"stage: {self.health_clock}", file=sys.stderr, flush=True)
        self._scheduler.start(plan.deployments, plan.events, retired=list(plan.retired))
        for index, reason, exit_code in plan.stopped_history:
            self._scheduler.add_stopped_task(plan.deployments[index], reason, exit_code)
        self._wait_ready(plan)
        if plan.deferred is not None:
            self._deferred = plan.deferred
            plan.deferred.not_before = time.monotonic() + options.rolling_delay_s

    def _wait_ready(self, plan: scenarios.ScenarioPlan) -> None:
        """The scenario's first state: every initial task healthy, or stopped as the scenario intends."""
        scheduler = self._scheduler
        assert scheduler is not None
        initial = [d for d in plan.deployments if d is not plan.deferred and d.desired > 0]

        def first_tasks() -> list[StageTask]:
            tasks = []
            for deployment in initial:
                tasks += [t for t in scheduler.tasks if t.deployment is deployment][: deployment.desired]
            return tasks

        def settled() -> bool:
            tasks = first_tasks()
            enough = len(tasks) >= sum(d.desired for d in initial)
            return enough and all(t.health == "HEALTHY" or t.status == "STOPPED" for t in tasks)

        # Booting (warmup_s) and being judged (startPeriod, then retries) bound how long a first task
        # can take to turn HEALTHY or be stopped; ready_timeout_s is the margin on a busy machine.
        checks = [scheduler.health_check(d.task_definition_arn) for d in initial]
        judged = max((c.judged_within_s for c in checks if c is not None), default=0.0)
        timeout = self.options.ready_timeout_s + self.faults.warmup_s + judged
        if not scheduler.wait_for(settled, timeout):
            states = ", ".join(f"{t.short} {t.status}/{t.health}" for t in first_tasks())
            raise StageError(f"the scenario's tasks did not settle within {timeout:.0f} s ({states or 'no tasks'})")
        for task in first_tasks():
            exited = task.stop_reason == "Essential container in task exited" and task.plan.behaviour == "serve"
            if exited and not task.ever_healthy and task.process is not None:
                what = "app command" if self.options.app_cmd else "stand-in app"
                raise StageError(f"the {what} exited at once (exit code {task.process.returncode}): "
                                 f"{self._last_log_line(task)}")

    def _last_log_line(self, task: StageTask) -> str:
        events = self._clients["logs"].get_log_events(
            logGroupName=LOG_GROUP, logStreamName=f"{LOG_PREFIX}/{CONTAINER}/{task.id}", startFromHead=False
        )["events"]
        lines = [e["message"].strip() for e in events if e["message"].strip()]
        return lines[-1] if lines else "no output"

    def stop(self) -> None:
        if self.harness_tasks is not None:
            self.harness_tasks.shutdown()
            self.harness_tasks = None
        if self._scheduler is not None:
            self._scheduler.shutdown()
            self._scheduler = None
        if self._load_balancer is not None:
            self._load_balancer.close()
            self._load_balancer = None
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
            self._aws_endpoint = None
        if self._warm is not None:
            self._warm.close()
            self._warm = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    # -- what a harness or a test needs ------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        assert self._moto is not None, "the stage is not running"
        return self._moto.endpoint

    @property
    def env(self) -> dict[str, str]:
        """Everything a harness process needs to find this deployment."""
        return {
            "AWS_ENDPOINT_URL": self._aws_endpoint or self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
            **DUMMY_CREDENTIALS,
            "ECS_CLUSTER": CLUSTER,
            "ECS_SERVICE": SERVICE,
            "SMOKE_SECRET": SMOKE_SECRET,
            # The listener's DNS name resolves nowhere here: its loopback address is what the harness
            # checks through, as --lb-url gives a custom domain (the test listener: same host, its own port).
            **({"SMOKE_LB_URL": self._load_balancer.production_url} if self._load_balancer is not None else {}),
        }

    def client(self, name: str) -> Any:
        """A boto3 client on the stage's moto (the services the stage seeds are made at start)."""
        if name not in self._clients:
            session = boto3.session.Session(region_name=REGION, **_session_credentials())
            self._clients[name] = session.client(name, endpoint_url=self.endpoint)
        return self._clients[name]

    @property
    def aws_env(self) -> dict[str, str]:
        """Only the endpoint and the credentials: what a task role gives a task, not its target."""
        return {"AWS_ENDPOINT_URL": self.endpoint, **DUMMY_CREDENTIALS}

    def _guard_with_canary(self) -> CanaryResources:
        """The canary stack, and its alarm in the service's deployment alarms with rollback on."""
        canary = self.install_canary()
        # update_service keeps deploymentConfiguration (create_service drops it); the circuit breaker stays on.
        self.client("ecs").update_service(cluster=CLUSTER, service=SERVICE, deploymentConfiguration={
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            "alarms": {"alarmNames": [canary.alarm_name], "enable": True, "rollback": True}})
        return canary

    def install_canary(self, **parameters: str) -> CanaryResources:
        """The canary stack (infra/canary.yaml) for this deployment, in this stage's moto.

        ``parameters`` override the stage's own (its cluster, service, subnet, security group,
        smoke secret); the canary runs at the private addresses, as the template's default says.
        """
        assert self.seeded is not None, "the stage is not running"
        secret_arn = self.client("secretsmanager").describe_secret(SecretId=SMOKE_SECRET)["ARN"]
        given = {
            "ClusterName": CLUSTER, "ServiceName": SERVICE, "Subnets": self.seeded.subnet_id,
            "SecurityGroups": self.seeded.security_group_id,
            "ImageUri": f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/civicforge-smoke:stage",
            "ImageRepositoryArn": f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/civicforge-smoke",
            "SmokeSecretArn": secret_arn, "ServiceLogGroupName": LOG_GROUP, "ServiceImageRepositoryName": REPOSITORY,
            **parameters,
        }
        return install_canary(self.client, given, region=REGION)

    @property
    def aws_calls(self) -> dict[str, int]:
        """AWS calls the moto server has answered, by operation (the stage's own included)."""
        assert self._moto is not None
        return dict(self._moto.calls)

    @property
    def network(self) -> FaultProxy:
        """The fault proxy between the harness and the deployment (``network_faults`` given)."""
        assert self._proxy is not None, "the stage runs without network faults"
        return self._proxy

    @property
    def load_balancer(self) -> StageLoadBalancer:
        """The service's load balancer (``load_balancer=True``): listener URLs, target group and rule ARNs,
        the service's ``loadBalancers`` and what ``DescribeTargetHealth`` answers (``stage.load_balancer``)."""
        assert self._load_balancer is not None, "the stage runs without a load balancer (load_balancer=True)"
        return self._load_balancer

    @property
    def moto(self) -> MotoServer:
        assert self._moto is not None
        return self._moto

    @property
    def scheduler(self) -> Scheduler:
        assert self._scheduler is not None, "the stage is not running"
        return self._scheduler

    @property
    def stable_at(self) -> float | None:
        return self.scheduler.stable_at

    @property
    def expected_image_digest(self) -> str:
        assert self.seeded is not None
        return self.seeded.pushed_digest

    @property
    def smoke_accounts(self) -> dict[str, dict[str, str]]:
        assert self.seeded is not None
        return self.seeded.smoke_accounts

    @property
    def health_clock(self) -> str:
        """One line: the deploy under test's health check as the stage counts it (intervals, startPeriod)."""
        assert self.seeded is not None, "the stage is not running"
        check = self.scheduler.health_check(self.seeded.current_task_definition)
        return check.describe() if check else "no container health check: a running task counts as healthy"

    def task_ips(self) -> dict[str, str]:
        """Running task id -> its Elastic IP (127.0.0.N)."""
        return {t.id: t.ip for t in self.scheduler.live_tasks() if t.status == "RUNNING"}

    def task_private_ips(self) -> dict[str, str]:
        """Running task id -> its ENI's private IP (127.1.0.N), what ``--address private`` tests."""
        return {t.id: t.private_ip for t in self.scheduler.live_tasks() if t.status == "RUNNING"}

    def stop_task(self, task_id: str, how: str = "spot", *, replacement: str | None = "serve") -> StageTask:
        """Stop a running task (its id or a prefix) while a run is under way, as ECS would (``stage.task_stops``).

        ``how``: scale_in (no replacement), scale_in_replaced, spot, user, crash (exit code 1, a
        traceback in its log stream), oom (exit code 137, OutOfMemoryError), health (failed container
        health checks). ``replacement``: "serve", "hang" (never healthy) or None (the service starts none).
        """
        return self.scheduler.stop_task(task_id, task_stop(how), replacement=replacement)

    def begin_roll_out(self) -> None:
        """Begin the scenario's deferred roll-out now (held with ``rolling_delay_s=math.inf``).

        A test that must see the state before the roll-out cannot race a delay on a loaded runner.
        """
        assert self._deferred is not None, f"scenario {self.options.scenario!r} has no deferred roll-out"
        self.scheduler.allow_start(self._deferred)

    def wait_until(self, condition: Any, timeout_s: float) -> bool:
        """Wait for a scheduler state (e.g. ``lambda: stage.stable_at``), bounded."""
        return self.scheduler.wait_for(condition, timeout_s)

    @property
    def port(self) -> int:
        return PORT
