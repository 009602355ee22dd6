"""diagnose(): every category from realistic inputs, and the more specific cause winning."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest

from ecs_verdict.categories import CATEGORIES, NEXT_STEPS
from ecs_verdict.diagnosis import Failure, diagnose, diagnose_all
from ecs_verdict.log_clues import logged_as
from ecs_verdict.evidence import ContainerExit, Evidence, HealthCheck, StoppedTask
from ecs_verdict.suite import SuiteCause, SuiteProfile

TASK = "3f2a9c0d1e8b4f6a9c7d5e3b1a0f2c4d"
OTHER = "9b8a7c6d5e4f30211a2b3c4d5e6f7a8b"
STOPPED = "c0ffee00deadbeef0123456789abcdef"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)

CURL = HealthCheck(("CMD-SHELL", "curl -f http://localhost:8000/health || exit 1"), 30, 3, 60, 5)
URLLIB = HealthCheck(
    (
        "CMD-SHELL",
        "python -c \"import urllib.request; urllib.request.urlopen('http://localhost:8000/health')\" || exit 1",
    ),
    30,
    3,
    60,
    5,
)


def traceback(request: str, *frames_and_error: str) -> tuple[str, ...]:
    """Log lines as uvicorn prints a failing request: access line, then the traceback."""
    return (
        f'INFO:     10.0.1.23:51234 - "{request} HTTP/1.1" 500 Internal Server Error',
        "ERROR:    Exception in ASGI application",
        "Traceback (most recent call last):",
        '  File "/usr/local/lib/python3.11/site-packages/uvicorn/protocols/http/httptools_impl.py", line 409, in run_asgi',
        "    result = await app(  # type: ignore[func-returns-value]",
        *frames_and_error,
    )


STARTUP = (
    "Running database migrations...",
    "INFO:     Started server process [1]",
    "INFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)",
)
NO_SUCH_TABLE = traceback(
    "POST /api/auth/register",
    '  File "/app/src/board_mvp/database.py", line 88, in execute',
    "    cursor.execute(query, params)",
    "sqlite3.OperationalError: no such table: users",
)
PG_NO_RELATION = traceback(
    "POST /api/boards/board_001/invites",
    '  File "/usr/local/lib/python3.11/site-packages/psycopg2/extras.py", line 236, in execute',
    "    return super().execute(query, vars)",
    'psycopg2.errors.UndefinedTable: relation "board_invites" does not exist',
    "LINE 1: INSERT INTO board_invites (board_id, token, role, created_by...",
)
ROWCOUNT = traceback(
    "DELETE /api/boards/board_001/members/999999",
    '  File "/app/src/board_mvp/web.py", line 530, in remove_member',
    "    if result.rowcount == 0:",
    "       ^^^^^^^^^^^^^^^",
    "AttributeError: 'PGCursor' object has no attribute 'rowcount'",
)
# What the real service on PostgreSQL printed when two logins reached one task at once (civicforge-api.md).
PG_SHARED_CURSOR = traceback(
    "POST /api/auth/login",
    '  File "/app/src/board_mvp/database.py", line 61, in fetchone',
    "    return self.cursor.fetchone()",
    "psycopg2.ProgrammingError: no results to fetch",
)
URLSAFE = traceback(
    "POST /api/boards/board_001/invites",
    '  File "/app/src/board_mvp/web.py", line 412, in create_invite',
    "    token = secrets.urlsafe(32)",
    "            ^^^^^^^^^^^^^^^",
    "AttributeError: module 'secrets' has no attribute 'urlsafe'",
)
NAME_ERROR = traceback(
    "GET /api/me",
    '  File "/app/src/board_mvp/web.py", line 120, in me',
    "    return serialize_user(usr)",
    "NameError: name 'usr' is not defined",
)


def stopped(reason: str, container_reason: str = "", exit_code: int | None = None, task: str = STOPPED) -> StoppedTask:
    return StoppedTask(
        task_id=task,
        stopped_reason=reason,
        stop_code="EssentialContainerExited" if "exited" in reason else "TaskFailedToStart",
        stopped_at=NOW,
        containers=(ContainerExit("civicforge-app", container_reason, exit_code),),
    )


HEALTH_STOP = stopped("Task failed container health checks")


@dataclass(frozen=True)
class Case:
    id: str
    failure: Failure
    evidence: Evidence
    category: str
    evidence_has: str
    task_id: str | None = TASK
    # Required, and never empty: "" is in every string, so an empty fragment would pin nothing.
    summary_has: str = field(kw_only=True)
    step_has: str = field(kw_only=True)

    def __post_init__(self) -> None:
        assert self.summary_has and self.step_has, f"case {self.id!r}: pin a fragment of the summary and next step"


def logs(*lines: str, task: str = TASK) -> dict[str, tuple[str, ...]]:
    return {task: STARTUP + tuple(lines)}


def failed_500(check: str, request: str = "", **details: object) -> Failure:
    extra = {"request": request} if request else {}
    return Failure(
        "check_failed",
        check,
        TASK,
        f"{request} -> 500 Internal Server Error",
        details={"status": 500, **extra, **details},
    )


def lb_unhealthy(reason: str, description: str) -> Failure:
    """An unhealthy load-balancer target as ecs_verdict.target_health reports it."""
    group = {"name": "web-tg", "protocol": "HTTP", "path": "/healthz", "port": "traffic-port", "interval_s": 30,
             "timeout_s": 5, "healthy_threshold": 5, "unhealthy_threshold": 2, "matcher": "200"}
    return Failure("lb_target_unhealthy", "deployment", None, f"task {TASK[:8]} is unhealthy in target group web-tg",
                   details={"task_id": TASK, "target": "10.0.1.23:8000", "reason": reason, "description": description,
                            "target_group": group, "container_health_check_path": "/health"})


CASES = [
    Case(
        "the target group probes a path the task answers 404",
        lb_unhealthy("Target.ResponseCodeMismatch", "Health checks failed with these codes: [404]"),
        Evidence(),
        "lb_health_path_mismatch",
        "ELB 10.0.1.23:8000: Target.ResponseCodeMismatch: Health checks failed with these codes: [404]; target group "
        "web-tg: HTTP GET /healthz on traffic-port every 30 s",
        summary_has="target group web-tg probes /healthz, which task 3f2a9c0d answers with 404; the task's container "
                    "health check probes /health",
        step_has="--health-check-path",
    ),
    Case(
        "the load balancer's health checks time out",
        lb_unhealthy("Target.Timeout", "Request timed out"),
        Evidence(),
        "lb_target_timeout",
        "Target.Timeout: Request timed out; target group web-tg",
        summary_has="the load balancer's health checks to task 3f2a9c0d time out",
        step_has="--source-group ALB_SG",
    ),
    Case(
        "a target fails the load balancer's health checks",
        lb_unhealthy("Target.FailedHealthChecks", "Health checks failed"),
        Evidence(),
        "lb_target_unhealthy",
        "Target.FailedHealthChecks: Health checks failed",
        summary_has="is unhealthy in target group web-tg: Target.FailedHealthChecks",
        step_has="describe-target-health",
    ),
    Case(
        "health path 404 while /api/health answers",
        Failure(
            "health_path_404",
            "health",
            TASK,
            "GET /health -> 404",
            details={"path": "/health", "answering": ["/api/health"]},
        ),
        Evidence(health_check=URLLIB),
        "health_path_mismatch",
        "GET /health -> 404, /api/health -> 200; the task definition's health check probes /health",
        summary_has="health path /health answers 404 while /api/health answers",
        step_has="(/health vs /api/health)",
    ),
    Case(
        "tasks stop because the health check probes a 404 path",
        Failure(
            "tasks_stopping",
            "stability",
            None,
            "2 tasks stopped",
            details={"health_path_status": {"/health": 404, "/api/health": 200}},
        ),
        Evidence(stopped_tasks=(HEALTH_STOP,), health_check=URLLIB),
        "health_path_mismatch",
        "stopped: Task failed container health checks; GET /health -> 404, /api/health -> 200",
        task_id=STOPPED,
        summary_has="probes /health, which answers 404",
        step_has="health check probe the path the app serves",
    ),
    Case(
        "tasks stopping + curl health check",
        Failure("tasks_stopping", "stability", None, "tasks keep stopping"),
        Evidence(stopped_tasks=(HEALTH_STOP,), health_check=CURL, logs=logs(task=STOPPED)),
        "health_check_command",
        "Task failed container health checks; health check: CMD-SHELL curl -f http://localhost:8000/health",
        task_id=STOPPED,
        summary_has="calls curl, which the image lacks",
        step_has="urllib.request.urlopen",
    ),
    Case(
        "tasks stopping + curl + exec format error in the container reason",
        Failure("tasks_stopping", "stability", None, "tasks keep stopping"),
        Evidence(
            stopped_tasks=(
                stopped(
                    "Essential container in task exited",
                    "CannotStartContainerError: Error response from daemon: failed to create shim task: "
                    "OCI runtime create failed: runc create failed: unable to start container process: "
                    "exec /bin/bash: exec format error: unknown",
                    255,
                ),
            ),
            health_check=CURL,
        ),
        "arch_mismatch",
        "exec /bin/bash: exec format error",
        task_id=STOPPED,
        summary_has="built for another CPU architecture",
        step_has="--platform linux/amd64",
    ),
    Case(
        "exec format error only in the logs of a rolled back deployment",
        Failure("rolled_back", "deployment", None, "deployment rolled back"),
        Evidence(logs={STOPPED: ("exec /bin/bash: exec format error",)}),
        "arch_mismatch",
        f"task {STOPPED[:8]}: exec /bin/bash: exec format error",
        task_id=STOPPED,
        summary_has="built for another CPU architecture",
        step_has="--platform linux/amd64",
    ),
    Case(
        "500 + sqlite no such table",
        failed_500("test_register", "POST /api/auth/register"),
        Evidence(logs=logs(*NO_SUCH_TABLE), health_check=CURL),
        "migrations_not_applied",
        "sqlite3.OperationalError: no such table: users",
        summary_has="table users is missing",
        step_has="ENTRYPOINT script",
    ),
    Case(
        "500 + PostgreSQL relation does not exist",
        failed_500("test_owner_creates_invite", "POST /api/boards/board_001/invites"),
        Evidence(logs=logs(*PG_NO_RELATION)),
        "migrations_not_applied",
        'relation "board_invites" does not exist',
        summary_has="table board_invites is missing",
        step_has="ENTRYPOINT script",
    ),
    Case(
        "500 + rowcount AttributeError",
        failed_500("test_remove_unknown_member_is_404", "DELETE /api/boards/board_001/members/999999"),
        Evidence(logs=logs(*ROWCOUNT)),
        "db_adapter_error",
        "AttributeError: 'PGCursor' object has no attribute 'rowcount'",
        summary_has="no rowcount attribute",
        step_has="SELECT before",
    ),
    Case(
        "500 + PostgreSQL cursor shared by simultaneous requests",
        failed_500("test_owner_can_invite_and_manage_members", "POST /api/auth/login"),
        Evidence(logs=logs(*PG_SHARED_CURSOR)),
        "db_concurrency_error",
        "psycopg2.ProgrammingError: no results to fetch",
        summary_has="simultaneous requests",
        step_has="its own database connection",
    ),
    Case(
        "the shared cursor's 500 does not explain another request's traceback",
        failed_500("test_owner_creates_invite", "POST /api/boards/board_001/invites"),
        Evidence(logs=logs(*PG_SHARED_CURSOR, *URLSAFE)),
        "code_error",
        "module 'secrets' has no attribute 'urlsafe'",
        summary_has="raised AttributeError",
        step_has="secrets.token_urlsafe(32)",
    ),
    Case(
        "500 + secrets.urlsafe AttributeError",
        failed_500("test_owner_creates_invite", "POST /api/boards/board_001/invites"),
        Evidence(logs=logs(*URLSAFE)),
        "code_error",
        "AttributeError: module 'secrets' has no attribute 'urlsafe'",
        summary_has="raised AttributeError",
        step_has="secrets.token_urlsafe(32)",
    ),
    Case(
        "500 + NameError, request unknown",
        Failure("check_failed", "test_me", TASK, "GET /api/me -> 500"),
        Evidence(logs=logs(*NAME_ERROR)),
        "code_error",
        "NameError: name 'usr' is not defined",
        summary_has="raised NameError",
        step_has="Fix the call named in the quoted log line",
    ),
    Case(
        "stability's health_path_404 details (working_paths)",
        Failure(
            "health_path_404",
            "stability",
            TASK,
            "health path /health answered 404",
            details={"path": "/health", "working_paths": ["/api/health"], "url": "http://127.0.0.11:8000/health"},
        ),
        Evidence(health_check=CURL),
        "health_path_mismatch",
        "GET /health -> 404, /api/health -> 200",
        summary_has="/health answers 404 while /api/health answers",
        step_has="(/health vs /api/health)",
    ),
    Case(
        "stability's exec format cause without gathered evidence",
        Failure(
            "tasks_stopping",
            "stability",
            None,
            "task c0ffee00 cannot start: exec format error",
            details={"stopped_tasks": [STOPPED], "cause": "exec_format"},
        ),
        Evidence(),
        "arch_mismatch",
        "cannot start: exec format error",
        task_id=STOPPED,
        summary_has="built for another CPU architecture",
        step_has="--platform linux/amd64",
    ),
    Case(
        "stability's image_mismatch with digests per task",
        Failure(
            "image_mismatch",
            "stability",
            None,
            "digest mismatch",
            details={"expected": "sha256:" + "a" * 64, "actual": {OTHER: "sha256:" + "d" * 64}},
        ),
        Evidence(),
        "stale_image",
        f"expected sha256:{'a' * 64}, running sha256:{'d' * 64}",
        task_id=OTHER,
        summary_has=f"task {OTHER[:8]} runs an image other than the one deployed",
        step_has="--no-cache",
    ),
    Case(
        "the service runs another task definition",
        Failure(
            "task_definition_mismatch",
            "stability",
            None,
            "service runs civicforge-board-mvp:6, expected civicforge-board-mvp:7",
            details={"expected": "civicforge-board-mvp:7", "actual": "civicforge-board-mvp:6"},
        ),
        Evidence(),
        "stale_image",
        "service runs civicforge-board-mvp:6, expected civicforge-board-mvp:7",
        task_id=None,
        summary_has="runs civicforge-board-mvp:6, not civicforge-board-mvp:7",
        step_has="--force-new-deployment",
    ),
    Case(
        "running digest differs from the deployed one",
        Failure(
            "image_mismatch",
            "image",
            TASK,
            "digest mismatch",
            details={"expected": "sha256:" + "a" * 64, "actual": "sha256:" + "b" * 64},
        ),
        Evidence(registry_digest="sha256:" + "a" * 64),
        "stale_image",
        f"expected sha256:{'a' * 64}, running sha256:{'b' * 64}",
        summary_has=f"task {TASK[:8]} runs an image other than the one deployed",
        step_has="--no-cache",
    ),
    Case(
        "a failing check on a task running an older image than the ECR tag",
        Failure("check_failed", "test_invite_shape", OTHER, "missing field expires_at", details={"status": 200}),
        Evidence(
            running_digests={TASK: "sha256:" + "a" * 64, OTHER: "sha256:" + "c" * 64},
            registry_digest="sha256:" + "a" * 64,
        ),
        "stale_image",
        f"running sha256:{'c' * 64}, ECR tag points at sha256:{'a' * 64}",
        task_id=OTHER,
        summary_has=f"task {OTHER[:8]} runs an older image than the ECR tag",
        step_has="--no-cache",
    ),
    Case(
        "tasks fail health checks with a sound check and quiet logs",
        Failure("tasks_stopping", "stability", None, "3 tasks stopped"),
        Evidence(stopped_tasks=(HEALTH_STOP,), health_check=URLLIB, logs=logs(task=STOPPED)),
        "task_restarting",
        f"task {STOPPED[:8]} stopped: Task failed container health checks",
        task_id=STOPPED,
        summary_has="1 task(s) stopped recently; ECS keeps replacing them",
        step_has="startPeriod covers migrations",
    ),
    Case(
        "deployment rolled back with nothing more specific",
        Failure("rolled_back", "deployment", None, "rolloutState FAILED"),
        Evidence(
            deployments=(
                "PRIMARY civicforge-board-mvp:6 rolloutState=COMPLETED running=2/2",
                "ACTIVE civicforge-board-mvp:7 rolloutState=FAILED running=0/2",
            ),
            service_events=(
                "2025-03-01T11:58:00Z (service civicforge-board-service) rolling back to deployment ecs-svc/123",
            ),
        ),
        "deployment_rolled_back",
        "civicforge-board-mvp:7 rolloutState=FAILED",
        task_id=None,
        summary_has="ECS rolled it back to the previous task definition",
        step_has="Read the service events",
    ),
    Case(
        "participant may create invites (security), even with tracebacks in the logs",
        Failure(
            "check_failed",
            "test_participant_cannot_invite",
            TASK,
            "POST invites as participant -> 200, expected 403",
            security=True,
        ),
        Evidence(logs=logs(*URLSAFE)),
        "permission_regression",
        "POST invites as participant -> 200, expected 403",
        summary_has="security check test_participant_cannot_invite failed",
        step_has="Do not ship",
    ),
    Case(
        "task IP not answering",
        Failure("unreachable", "connect", TASK, "connect to 54.1.2.3:8000 refused"),
        Evidence(),
        "target_unreachable",
        "connect to 54.1.2.3:8000 refused",
        summary_has=f"task {TASK[:8]} could not be reached",
        step_has="public IP",
    ),
    Case(
        # A traceback in the logs does not turn a request nobody answered into the service's failure.
        "a check whose request got no HTTP answer after its retries",
        Failure("no_answer", "test_me", TASK, "GET http://54.1.2.3:8000/api/me: no HTTP answer after 3 attempts "
                "(ReadError: [Errno 104] Connection reset by peer)", details={"request": "GET http://54.1.2.3:8000/api/me"}),
        Evidence(logs=logs(*NO_SUCH_TABLE)),
        "no_answer",
        f"check test_me on task {TASK[:8]}: GET http://54.1.2.3:8000/api/me: no HTTP answer after 3 attempts",
        summary_has="GET http://54.1.2.3:8000/api/me: no HTTP answer after 3 attempts (ReadError: [Errno 104] "
                    "Connection reset by peer)",
        step_has="Nothing is known about what the service would answer",
    ),
    Case(
        "service not stable before the deadline",
        Failure("deadline", "stability", None, "not stable", details={"state": "running=1/2 pending=1 deployments=2"}),
        Evidence(service_events=("2025-03-01T11:59:00Z (service civicforge-board-service) has started 1 tasks",)),
        "not_stable",
        "last state: running=1/2 pending=1 deployments=2; latest event: 2025-03-01T11:59:00Z",
        task_id=None,
        summary_has="did not become stable before the deadline",
        step_has="raise the deadline",
    ),
    Case(
        "a 4xx contract mismatch is not explained by an unrelated traceback",
        Failure(
            "check_failed",
            "test_join_unknown_token",
            TASK,
            "expected 404 'Invalid invite', got 400",
            details={"status": 400},
        ),
        Evidence(logs=logs(*NO_SUCH_TABLE)),
        "contract_violation",
        "expected 404 'Invalid invite', got 400",
        summary_has="check test_join_unknown_token failed",
        step_has="Compare the response with the API contract",
    ),
    Case(
        "a 500 with a curl health check is still the missing table",
        failed_500("test_register", "POST /api/auth/register"),
        Evidence(logs=logs(*NO_SUCH_TABLE), health_check=CURL, stopped_tasks=(HEALTH_STOP,)),
        "migrations_not_applied",
        "no such table: users",
        summary_has="table users is missing",
        step_has="ENTRYPOINT script",
    ),
    Case(
        "tasks exiting at start-up: the log error beats a curl check",
        Failure("tasks_stopping", "stability", None, "tasks keep stopping"),
        Evidence(
            stopped_tasks=(stopped("Essential container in task exited", "", 1),),
            health_check=CURL,
            logs={
                STOPPED: (
                    "Running database migrations...",
                    'psycopg2.errors.UndefinedTable: relation "users" does not exist',
                )
            },
        ),
        "migrations_not_applied",
        'relation "users" does not exist',
        task_id=STOPPED,
        summary_has="table users is missing",
        step_has="ENTRYPOINT script",
    ),
    Case(
        "the failing request's own traceback wins over another request's",
        failed_500("test_owner_creates_invite", "POST /api/boards/board_001/invites?x=1"),
        Evidence(logs=logs(*ROWCOUNT, *URLSAFE, *ROWCOUNT)),
        "code_error",
        "module 'secrets' has no attribute 'urlsafe'",
        summary_has="raised AttributeError",
        step_has="secrets.token_urlsafe(32)",
    ),
    Case(
        "same logs, the DELETE's failure is the adapter",
        failed_500("test_remove_unknown_member_is_404", "DELETE /api/boards/board_001/members/999999"),
        Evidence(logs=logs(*URLSAFE, *ROWCOUNT, *URLSAFE)),
        "db_adapter_error",
        "'PGCursor' object has no attribute 'rowcount'",
        summary_has="no rowcount attribute",
        step_has="SELECT before",
    ),
    Case(
        "a task ran out of memory mid-run: its exit code, reason and last log lines, over a code error in them",
        Failure("task_crashed", "test_health_answers_healthy", TASK, "ConnectError", details={
            "stop_code": "EssentialContainerExited", "stopped_reason": "Essential container in task exited",
            "container": "board", "exit_code": 137,
            "container_reason": "OutOfMemoryError: Container killed due to memory usage"}),
        Evidence(logs=logs(*URLSAFE, "INFO: GET /api/boards/board_001/members 200")),
        "task_crashed",
        "EssentialContainerExited: Essential container in task exited; last log lines:",
        summary_has="ran out of memory mid-run: container board (exit code 137, OutOfMemoryError",
        step_has="raise the task's memory",
    ),
    Case(
        "a task stopped by a Spot interruption and never replaced in time",
        Failure("task_stopped", "test_health_answers_healthy", TASK, "ConnectError", details={
            "stop_code": "SpotInterruption", "stopped_reason": "Your Spot Task was interrupted.",
            "last_seen": "no new task of the PRIMARY deployment is RUNNING and HEALTHY yet"}),
        Evidence(),
        "task_stopped",
        "last seen: no new task of the PRIMARY deployment is RUNNING and HEALTHY yet",
        summary_has="stopped mid-run by ECS (SpotInterruption: Your Spot Task was interrupted.) and no replacement",
        step_has="raise --stable-timeout",
    ),
    Case(
        "a check fails through the load balancer's listener only (ecs_verdict.listeners)",
        Failure("lb_routing", "test_health_answers_healthy", "lb", "404", details={
            "status": 404, "request": "GET http://127.0.0.60:80/health", "listener": {
                "role": "production", "protocol": "HTTP", "port": 80, "rule": "default rule",
                "rule_arn": "arn:aws:elasticloadbalancing:r:1:listener-rule/app/lb/1/2/3",
                "forwards_to": ["arn:aws:elasticloadbalancing:r:1:targetgroup/other/9"],
                "service_target_group": "arn:aws:elasticloadbalancing:r:1:targetgroup/board/8"}}),
        Evidence(),
        "lb_routing",
        "GET http://127.0.0.60:80/health -> 404; default rule forwards to targetgroup/other/9, the service's target "
        "group is targetgroup/board/8",
        task_id="lb",
        summary_has="fails through the production listener HTTP:80 but passes at every task's address",
        step_has="it must forward to the service's target group targetgroup/board/8",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_diagnose(case: Case) -> None:
    found = diagnose(case.failure, case.evidence)
    assert (found.category, found.task_id) == (case.category, case.task_id), found
    assert case.evidence_has in found.evidence
    assert "\n" not in found.evidence and "\n" not in found.summary
    assert case.summary_has in found.summary, found.summary
    assert case.step_has in found.next_step, found.next_step


def test_the_table_covers_every_category() -> None:
    # The rest are named by ecs_verdict.verdict.decide, from the outcome alone (tests/test_verdict.py).
    decided_by_the_verdict = {"no_credentials", "aws_access_denied", "aws_unreachable", "aws_error", "unknown_region",
                              "service_not_found", "container_not_found", "no_running_task", "smoke_accounts",
                              "checks_errored", "no_checks_ran", "harness_error", "task_definition_lint",
                              "no_paused_hook", "hook_action_failed"}  # the gate's (tests/test_blue_green.py)
    assert {c.category for c in CASES} | decided_by_the_verdict == set(CATEGORIES) == set(NEXT_STEPS)
    assert not {c.category for c in CASES} & decided_by_the_verdict


def test_evidence_quoting_a_log_line_masks_credentials_and_stays_short() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl"
    line = f"AttributeError: 'NoneType' object has no attribute 'id' (Authorization: Bearer {token}) " + "x" * 500
    found = diagnose(Failure("check_failed", "test_me", TASK, "500"), Evidence(logs={TASK: (line,)}))
    assert found.category == "code_error"
    assert token not in found.evidence and "Bearer ***" in found.evidence
    assert len(found.evidence) <= 300


def test_an_unexpected_kind_is_diagnosed_not_refused() -> None:
    quiet = diagnose(Failure("no_running_task", "discovery", None, "0 of 2 tasks RUNNING"), Evidence())
    assert (quiet.category, quiet.evidence) == ("not_stable", "last state: 0 of 2 tasks RUNNING")
    crashed = diagnose(Failure("no_running_task", "discovery", None, "0 of 2"), Evidence(stopped_tasks=(HEALTH_STOP,)))
    assert crashed.category == "task_restarting"


def test_diagnose_all_lists_each_cause_once() -> None:
    evidence = Evidence(logs=logs(*NO_SUCH_TABLE))
    failures = [failed_500("test_register"), failed_500("test_login"), Failure("unreachable", "c", OTHER, "refused")]
    found = diagnose_all(failures, evidence)
    assert [d.category for d in found] == ["migrations_not_applied", "target_unreachable"]


def test_without_evidence_a_failure_is_still_named() -> None:
    assert diagnose(Failure("check_failed", "t", TASK, "boom")).category == "contract_violation"


def test_diagnosis_as_dict_has_the_verdict_fields() -> None:
    found = diagnose(CASES[0].failure, CASES[0].evidence)
    assert set(found.as_dict()) == {"category", "task_id", "summary", "evidence", "next_step"}


def test_a_health_check_path_that_404s_is_read_from_the_stopped_tasks_access_log() -> None:
    """The dead tasks cannot be probed any more; their own access lines say what the check got."""
    evidence = Evidence(
        logs=logs(*STARTUP, 'INFO:     127.0.0.1:40000 - "GET /health HTTP/1.1" 404 Not Found', task=STOPPED),
        stopped_tasks=(stopped("Task failed container health checks"),),
        health_check=URLLIB,
    )
    found = diagnose(Failure(kind="tasks_stopping", check="deployment"), evidence)
    assert found.category == "health_path_mismatch"
    assert "GET /health -> 404" in found.evidence


# A suite of the tests' own: the harness knows no suite's causes but those it is given.
NO_STOCK = SuiteCause("out_of_stock_fixture", "The fixture product has no stock: the seed did not run",
                      "Run the seed job, then the gate again.", absorbs_statuses=(409,), absorbs_checks=r"^test_order")
SHOP = SuiteProfile("Shop", "Shop/Smoke", causes=(
    NO_STOCK,
    SuiteCause("cache_down", "The cache is unreachable", "Restart the cache.", not_verified=True,
               log_pattern=r"redis\.exceptions\.ConnectionError"),
))


def test_a_check_names_its_suite_cause_and_gets_its_title_and_next_step() -> None:
    failure = Failure("check_failed", "test_stock", TASK, "GET /api/stock [task 3f2a]: expected stock > 0, got 0",
                      details={"status": 200}, category="out_of_stock_fixture")
    found = diagnose(failure, Evidence(), SHOP)
    assert (found.category, found.task_id) == ("out_of_stock_fixture", TASK)
    assert found.summary == NO_STOCK.title and found.next_step == NO_STOCK.next_step
    assert found.evidence == failure.message


def test_a_category_no_cause_declares_stays_a_violation_that_says_so() -> None:
    found = diagnose(Failure("check_failed", "test_stock", TASK, "boom", category="typo_cause"), Evidence(), SHOP)
    assert found.category == "contract_violation"
    assert "typo_cause" in found.summary and "'Shop'" in found.summary


def test_a_security_failure_is_never_masked_by_a_suite_cause() -> None:
    failure = Failure("check_failed", "test_stock", TASK, "granted", security=True, category="out_of_stock_fixture")
    assert diagnose(failure, Evidence(), SHOP).category == "permission_regression"


def test_a_suite_cause_is_recognised_from_the_failing_tasks_log_lines() -> None:
    evidence = Evidence(logs=logs("redis.exceptions.ConnectionError: Error 111 connecting to cache:6379", task=TASK))
    found = diagnose(failed_500("test_cart"), evidence, SHOP)
    assert (found.category, found.task_id, found.next_step) == ("cache_down", TASK, "Restart the cache.")
    assert "redis.exceptions.ConnectionError" in found.evidence
    assert diagnose(failed_500("test_cart"), evidence).category == "contract_violation"  # without the suite


def test_a_suite_cause_absorbs_the_violations_it_declares_on_its_own_task_only() -> None:
    no_stock = Failure(kind="check_failed", check="test_stock", task_id=TASK, message="no stock",
                       category="out_of_stock_fixture")
    refused = Failure(kind="check_failed", check="test_cart_add", task_id=TASK, message="expected 200, got 409",
                      details={"status": 409})
    by_name = Failure(kind="check_failed", check="test_order_total", task_id=TASK, message="expected 10, got 0",
                      details={"status": 200})
    unrelated = Failure(kind="check_failed", check="test_profile", task_id=TASK, message="expected 200, got 500",
                        details={"status": 500})
    elsewhere = Failure(kind="check_failed", check="test_cart_add", task_id=OTHER, message="expected 200, got 409",
                        details={"status": 409})
    found = diagnose_all([no_stock, refused, by_name, unrelated, elsewhere], Evidence(), SHOP)
    assert [(d.category, d.task_id) for d in found] == [
        ("out_of_stock_fixture", TASK), ("contract_violation", TASK), ("contract_violation", OTHER)
    ]
    assert "test_profile" in found[1].summary
    # Without the suite nothing is absorbed: every violation stands.
    assert len(diagnose_all([no_stock, refused, by_name, unrelated, elsewhere], Evidence())) == 5


@pytest.mark.parametrize(("logged", "asked", "same"), [
    ("/health", "/api/health", True),  # the real service logs its /api mount's paths without the prefix
    ("/boards/board_001/invites", "/api/boards/board_001/invites", True),
    ("/health", "/health", True),
    ("/api/health", "/health", False),
    ("/ealth", "/api/health", False),
    ("/members/7", "/api/boards/board_001/members/17", False),
])
def test_an_access_line_path_is_matched_with_or_without_the_mount_prefix(logged: str, asked: str, same: bool) -> None:
    assert logged_as(logged, asked) is same
