"""Stability waiting: settles on the new tasks only, ends at once on a deploy that cannot succeed.

Rules are tested with data shaped like boto3 responses; the wait itself against
the stage (moto + the scheduler playing ECS + real stand-in processes).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from tenacity import Retrying, stop_after_delay, wait_fixed

from ecs_verdict.aws import AwsClients, make_clients
from ecs_verdict.deployment import parse_task_definition_ref
from ecs_verdict.discovery import ServiceObserver, resolve_targets
from ecs_verdict.rollout_checks import check_rollback
from ecs_verdict.errors import CouldNotVerify, DeployFailed
from ecs_verdict.observation import Observation, parse_deployment, parse_event, parse_task
from ecs_verdict.rollout_checks import check_tasks_stopping, parse_image_digest
from ecs_verdict.stability import Progress, StableResult, aws_not_settled, poll_gap, wait_until_stable
from stage import Stage
from stage.seed import PORT
from stage.task_network import port_is_free
from tests.conftest import StagePlan, on_shared_stage

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=timezone.utc)
TD_NEW = "arn:aws:ecs:us-east-1:123456789012:task-definition/civicforge-board-mvp:8"
TD_OLD = "arn:aws:ecs:us-east-1:123456789012:task-definition/civicforge-board-mvp:7"
DEP_NEW, DEP_OLD = "ecs-svc/1111111111111111111", "ecs-svc/2222222222222222222"


# -- boto3-shaped data ------------------------------------------------------------------------------


def deployment(dep_id: str, status: str, td: str, rollout: str, *, created: datetime = NOW, failed: int = 0) -> dict[str, Any]:
    return {"id": dep_id, "status": status, "taskDefinition": td, "desiredCount": 2, "runningCount": 2,
            "pendingCount": 0, "failedTasks": failed, "createdAt": created, "rolloutState": rollout,
            "rolloutStateReason": "ECS deployment circuit breaker: tasks failed to start." if rollout == "FAILED" else ""}


def stopped_task(task_id: str, reason: str, container_reason: str | None = None, exit_code: int = 137) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "civicforge-app", "lastStatus": "STOPPED", "exitCode": exit_code}
    if container_reason:
        container["reason"] = container_reason
    return {"taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/c/{task_id}", "taskDefinitionArn": TD_NEW,
            "startedBy": DEP_NEW, "group": "service:board", "lastStatus": "STOPPED", "desiredStatus": "STOPPED",
            "stoppedReason": reason, "stopCode": "EssentialContainerExited", "stoppedAt": NOW,
            "containers": [container], "attachments": []}


def running_task(task_id: str, health: str = "HEALTHY") -> dict[str, Any]:
    return {"taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/c/{task_id}", "taskDefinitionArn": TD_NEW,
            "startedBy": DEP_NEW, "group": "service:board", "lastStatus": "RUNNING", "desiredStatus": "RUNNING",
            "healthStatus": health, "containers": [{"name": "civicforge-app"}], "attachments": []}


def observation(deployments: list[dict[str, Any]], tasks: list[dict[str, Any]] = (), events: list[dict[str, Any]] = (),
                running: int = 2) -> Observation:  # fmt: skip
    return Observation(
        cluster="c", service="board", region="us-east-1", status="ACTIVE", desired=2, running=running, pending=0,
        deployments=tuple(parse_deployment(d) for d in deployments), events=tuple(parse_event(e) for e in events),
        tasks=tuple(parse_task(t) for t in tasks), observed_at=NOW,
    )  # fmt: skip


# -- pure rules -------------------------------------------------------------------------------------------


def test_task_definition_expectation_accepts_family_revision_or_arn() -> None:
    assert str(parse_task_definition_ref("civicforge-board-mvp:8")) == "civicforge-board-mvp:8"
    assert parse_task_definition_ref(TD_NEW).matches(TD_NEW)
    assert not parse_task_definition_ref("civicforge-board-mvp:7").matches(TD_NEW)
    with pytest.raises(ValueError, match="family:revision"):
        parse_task_definition_ref("civicforge-board-mvp")


def test_image_digest_expectation_is_normalised() -> None:
    assert parse_image_digest("A" * 64) == "sha256:" + "a" * 64
    with pytest.raises(ValueError, match="sha256:<64 hex"):
        parse_image_digest("sha256:abc")


def test_poll_gaps_start_small_and_stay_bounded() -> None:
    rng = random.Random(7)
    gaps = [poll_gap(attempt, rng) for attempt in range(1, 12)]
    # 0.25 s, 0.5 s, then 0.75 s for good, each shortened by up to 20 % of jitter.
    assert 0.2 <= gaps[0] <= 0.25 and 0.4 <= gaps[1] <= 0.5, gaps[:2]
    assert all(0.6 <= gap <= 0.75 for gap in gaps[2:]), gaps[2:]


def test_progress_line_names_counts_and_note() -> None:
    line = Progress(4.25, 1, 2, "IN_PROGRESS", 1, 2, "old deployment still listed").describe()
    assert line == "[   4.2s] rollout IN_PROGRESS, running 1/2, healthy 1/2: old deployment still listed"


def test_active_failed_deployment_is_a_rollback() -> None:
    seen = observation([deployment(DEP_OLD, "PRIMARY", TD_OLD, "IN_PROGRESS"),
                        deployment(DEP_NEW, "ACTIVE", TD_NEW, "FAILED", failed=3)])  # fmt: skip
    with pytest.raises(DeployFailed, match=r"deploy of civicforge-board-mvp:8 was rolled back: .* runs civicforge-board-mvp:7"):
        check_rollback(seen, seen.primary, None)  # type: ignore[arg-type]


def test_rollback_events_count_only_for_the_current_deployment() -> None:
    event = {"createdAt": NOW - timedelta(days=1), "message": "(service board) deployment circuit breaker: rolling back"}
    seen = observation([deployment(DEP_NEW, "PRIMARY", TD_NEW, "COMPLETED")], events=[event])
    check_rollback(seen, seen.primary, None)  # type: ignore[arg-type]  # yesterday's rollback: no raise
    fresh = observation([deployment(DEP_NEW, "PRIMARY", TD_NEW, "COMPLETED")], events=[{**event, "createdAt": NOW}])
    with pytest.raises(DeployFailed) as caught:
        check_rollback(fresh, fresh.primary, None)  # type: ignore[arg-type]
    assert caught.value.kind == "rolled_back"


def test_one_exec_format_error_ends_the_wait() -> None:
    seen = observation([deployment(DEP_NEW, "PRIMARY", TD_NEW, "IN_PROGRESS")],
                       [stopped_task("aaaaaaaa01", "Essential container in task exited",
                                     'exec: "/bin/bash": exec format error: unknown', 255)])  # fmt: skip
    with pytest.raises(DeployFailed, match="exec format error") as caught:
        check_tasks_stopping(seen, seen.primary, frozenset(), NOW)  # type: ignore[arg-type]
    assert "(exit code 255)" in caught.value.evidence[0]


def test_tasks_keep_stopping_from_two_stops() -> None:
    one = observation([deployment(DEP_NEW, "PRIMARY", TD_NEW, "IN_PROGRESS")],
                      [stopped_task("aaaaaaaa01", "Task failed container health checks")])  # fmt: skip
    check_tasks_stopping(one, one.primary, frozenset(), NOW)  # type: ignore[arg-type]
    two = observation([deployment(DEP_NEW, "PRIMARY", TD_NEW, "IN_PROGRESS")],
                      [stopped_task("aaaaaaaa01", "Task failed container health checks"),
                       stopped_task("bbbbbbbb02", "Task failed container health checks")])  # fmt: skip
    with pytest.raises(DeployFailed) as caught:
        check_tasks_stopping(two, two.primary, frozenset(), NOW)  # type: ignore[arg-type]
    assert caught.value.kind == "tasks_stopping"
    assert caught.value.evidence[0].endswith("container civicforge-app: exited (exit code 137)")


def test_aws_side_waits_for_old_deployment_and_health() -> None:
    rolling = observation([deployment(DEP_NEW, "PRIMARY", TD_NEW, "IN_PROGRESS"),
                           deployment(DEP_OLD, "ACTIVE", TD_OLD, "COMPLETED")])  # fmt: skip
    assert aws_not_settled(rolling, rolling.primary, needs_health=True).startswith("old deployment still listed")  # type: ignore[arg-type]
    unhealthy = observation([deployment(DEP_NEW, "PRIMARY", TD_NEW, "COMPLETED")],
                            [running_task("aaaaaaaa01"), running_task("bbbbbbbb02", "UNKNOWN")])  # fmt: skip
    assert aws_not_settled(unhealthy, unhealthy.primary, needs_health=True) == (  # type: ignore[arg-type]
        "1 of 2 tasks RUNNING and HEALTHY (aaaaaaaa RUNNING/HEALTHY, bbbbbbbb RUNNING)"
    )
    assert aws_not_settled(unhealthy, unhealthy.primary, needs_health=False) == ""  # type: ignore[arg-type]


# -- against the stage ---------------------------------------------------------------------------------------

HEALTHY = StagePlan("healthy")
ROLLING = StagePlan("rolling")  # the new deployment starts only after the tests (SHARED_ROLLING_DELAY_S)
API_HEALTH_ONLY = StagePlan("healthy", ("no_root_health",), "/api/health")  # task definition probes /api/health
PROBES_MISSING_PATH = StagePlan("healthy", ("no_root_health",))  # task definition probes /health: 404


def clients_for(stage: Any, **kwargs: Any) -> AwsClients:
    return make_clients(stage.env["AWS_DEFAULT_REGION"], stage.env["AWS_ENDPOINT_URL"], **kwargs)


def scheduler_state(stage: Stage) -> tuple[object, ...]:
    scheduler = stage.scheduler
    return (tuple((t.id, t.status, t.health) for t in list(scheduler.tasks)),
            tuple((d.id, d.status, d.rollout_state) for d in list(scheduler.deployments)))


def until_the_stage_moves(stage: Stage) -> Callable[[float], None]:
    """A sleep for the wait: the poll gap, cut short when the stage's tasks or deployments change.

    The wait's own gaps bound how often it asks moto (never a tight loop), while a change
    it has to see is seen at once rather than a whole gap later.
    """
    def sleep(seconds: float) -> None:
        before = scheduler_state(stage)
        stage.wait_until(lambda: scheduler_state(stage) != before, seconds)

    return sleep


def wait(stage: Stage, clients: AwsClients | None = None, **kwargs: Any) -> StableResult:
    options: dict[str, Any] = {"timeout_s": 60, "sleep": until_the_stage_moves(stage)}
    options.update(kwargs)
    return wait_until_stable(clients or clients_for(stage), cluster=stage.env["ECS_CLUSTER"],
                             service=stage.env["ECS_SERVICE"], **options)  # fmt: skip


@on_shared_stage(HEALTHY)
def test_healthy_settles_on_both_tasks(shared_stage: Stage, aws_env: Any) -> None:
    stage = shared_stage
    expected = stage.client("ecs").describe_services(cluster="civicforge-cluster",
                                                     services=["civicforge-board-service"])["services"][0]["taskDefinition"]  # fmt: skip
    health_requests: list[str] = []
    with httpx.Client(event_hooks={"request": [lambda request: health_requests.append(request.url.host)]}) as http:
        result = wait(stage, expect_task_definition=parse_task_definition_ref(expected),
                      expect_image_digest=stage.expected_image_digest, http=http)
    assert {t.ip for t in result.deployment.targets} == set(stage.task_ips().values())
    assert sorted(health_requests) == sorted(list(stage.task_ips().values()) * 2)  # two consecutive 200s each
    assert result.deployment.rollout_state == "COMPLETED"
    assert result.notes == ()


class WaitClock:
    """The wait's clock counting its own gaps only (each also slept for real), so how long AWS calls take,
    on a quiet or a loaded runner, never decides which polls are light."""

    def __init__(self) -> None:
        self.elapsed = 0.0

    def now(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
        self.elapsed += seconds


def test_rolling_waits_then_yields_only_the_new_tasks(stage_factory: Any, aws_env: Any) -> None:
    stage = stage_factory("rolling", rolling_delay_s=math.inf)  # held until the wait has seen the old state
    old_ips = set(stage.task_ips().values())
    clients, clock = clients_for(stage), WaitClock()
    observer = ServiceObserver(clients, stage.env["ECS_CLUSTER"], stage.env["ECS_SERVICE"], clock=clock.now)
    lines: list[str] = []
    begun: list[bool] = []

    def on_progress(progress: Progress) -> None:
        lines.append(progress.describe())
        if observer.light_polls and not begun:
            stage.begin_roll_out()  # once a light poll has shown the service unchanged
            begun.append(True)

    result = wait(stage, clients, sleep=clock.sleep, clock=clock.now, observer=observer, on_progress=on_progress)
    new_tasks = {t.task_id for t in result.deployment.targets}
    assert stage.stable_at is not None
    assert new_tasks == set(stage.task_ips())
    assert not old_ips & {t.ip for t in result.deployment.targets}
    assert {t.task_definition_arn for t in result.deployment.targets} == {stage.seeded.current_task_definition}
    assert any("old deployment still listed" in line for line in lines)
    # The call budget: about 3 per full poll, 1 per light poll, ENIs looked up once.
    assert result.aws_calls <= 4 * result.polls + result.light_polls + 3
    assert result.light_polls > 0


@on_shared_stage(ROLLING)
def test_rolling_before_the_new_tasks_start_never_yields_an_old_task(shared_stage: Stage, aws_env: Any) -> None:
    stage = shared_stage
    with pytest.raises(CouldNotVerify) as caught:
        resolve_targets(clients_for(stage), cluster=stage.env["ECS_CLUSTER"], service=stage.env["ECS_SERVICE"])
    assert caught.value.kind == "no_running_task"
    assert "2 task(s) of older deployments still run" in str(caught.value)


@on_shared_stage(ROLLING)
def test_deadline_carries_the_last_observed_state(shared_stage: Stage, aws_env: Any) -> None:
    stage = shared_stage
    ticks = iter(range(10_000))  # a fake clock (one second per reading) and no real sleep: 20 s pass at once
    with pytest.raises(CouldNotVerify) as caught:
        wait(stage, timeout_s=20, clock=lambda: float(next(ticks)), sleep=lambda _s: None)
    error = caught.value
    assert (error.kind, error.exit_code) == ("deadline", 6)
    assert str(error).startswith("deploy not stable after 20 s (deadline): old deployment still listed")
    assert any(line.startswith("last seen: running 2/2, rollout IN_PROGRESS") for line in error.evidence)


@pytest.mark.parametrize(
    ("shared_stage", "kind", "headline", "evidence"),
    [
        (StagePlan("restart_loop"), "tasks_stopping", "keep stopping", "Task failed container health checks"),
        (StagePlan("exec_format"), "tasks_stopping", "exec format error", "(exit code 255)"),
        (StagePlan("rolled_back"), "rolled_back", "was rolled back", "circuit breaker"),
    ],
    indirect=["shared_stage"],
    ids=["restart_loop", "exec_format", "rolled_back"],
)
def test_failing_deploys_end_at_once(
    shared_stage: Stage, aws_env: Any, kind: str, headline: str, evidence: str
) -> None:
    stage = shared_stage
    clients = clients_for(stage)
    with pytest.raises(DeployFailed) as caught:
        wait(stage, clients, timeout_s=600)
    error = caught.value
    assert (error.kind, error.exit_code) == (kind, 1)
    assert headline in str(error) and "\n" not in str(error)
    assert any(evidence in line for line in error.evidence)
    assert clients.calls.total() <= 8  # ended on the first poll or two, not at the deadline


@on_shared_stage(StagePlan("stale_image"))
def test_stale_image_names_both_digests(shared_stage: Stage, aws_env: Any) -> None:
    stage = shared_stage
    with pytest.raises(DeployFailed) as caught:
        wait(stage, expect_image_digest=stage.expected_image_digest)
    error = caught.value
    assert error.kind == "image_mismatch"
    running = stage.seeded.previous_digest
    assert f"runs {running[:19]}…, expected {stage.expected_image_digest[:19]}…" in str(error)
    assert all(f"runs {running}, expected {stage.expected_image_digest}" in line for line in error.evidence)


@on_shared_stage(HEALTHY)
def test_expected_task_definition_never_deployed(shared_stage: Stage, aws_env: Any) -> None:
    stage = shared_stage
    with pytest.raises(DeployFailed, match="service runs civicforge-board-mvp:2, expected civicforge-board-mvp:9") as caught:
        wait(stage, expect_task_definition=parse_task_definition_ref("civicforge-board-mvp:9"))
    assert caught.value.kind == "task_definition_mismatch"


@on_shared_stage(API_HEALTH_ONLY)
def test_health_path_404_names_the_path_that_answers(shared_stage: Stage, aws_env: Any) -> None:
    stage = shared_stage
    with pytest.raises(DeployFailed) as caught:
        wait(stage, health_path="/health")
    error = caught.value
    assert error.kind == "health_path_404"
    assert "health path /health answered 404" in str(error)
    assert str(error).endswith("/api/health answers 200: use --health-path /api/health")


@on_shared_stage(API_HEALTH_ONLY)
def test_without_a_health_path_the_task_definitions_is_taken(shared_stage: Stage, aws_env: Any) -> None:
    stage = shared_stage
    result = wait(stage)
    assert (result.health_path, result.health_path_source) == ("/api/health", "task definition")
    assert len(result.deployment.targets) == 2


@on_shared_stage(PROBES_MISSING_PATH)
def test_a_task_definition_probing_a_path_the_build_lacks_fails_while_tasks_still_start(
        shared_stage: Stage, aws_env: Any) -> None:
    # The check probes /health, the build serves /api/health only: ECS would replace the tasks
    # forever; the wait asks the starting tasks itself and names both paths at once.
    stage = shared_stage
    # The stage is "ready" once ECS replaced the first tasks; catch a replacement while it serves.
    for attempt in Retrying(stop=stop_after_delay(30), wait=wait_fixed(0.05), reraise=True):
        with attempt:
            assert any(task.status == "RUNNING" and not port_is_free(task.ip, PORT)
                       for task in stage.scheduler.live_tasks())
    with pytest.raises(DeployFailed) as caught:
        wait(stage)
    error = caught.value
    assert error.kind == "health_path_404"
    assert "health path /health answered 404" in str(error)
    assert str(error).endswith("/api/health answers 200: make the task definition's health check probe /api/health")
    assert "the task definition's container health check probes the same path (/health)" in error.evidence


@on_shared_stage(HEALTHY)
def test_throttling_is_retried_within_the_deadline(shared_stage: Stage, aws_env: Any) -> None:
    stage = shared_stage  # throttled for this test only: the fault is taken away again at the end
    throttled: list[str] = []

    def throttle(operation: str) -> tuple[int, dict[str, str]] | None:
        if operation == "ecs.DescribeServices" and len(throttled) < 3:
            throttled.append(operation)
            return 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
        return None

    stage.moto.fault = throttle
    notes: list[str] = []
    try:
        result = wait(stage, clients_for(stage, max_attempts=2), on_progress=lambda p: notes.append(p.note))
    finally:
        stage.moto.fault = None
    assert len(result.deployment.targets) == 2
    assert len(throttled) == 3
    assert any("ThrottlingException" in note for note in notes)

