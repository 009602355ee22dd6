"""Classify a failure into one named cause, with one line of evidence and a next step.

Pure: ``diagnose(failure, evidence)`` looks at what the harness observed (the
``Failure``) and what ``collect_evidence`` gathered (logs, stopped tasks, service
events, health check, digests) and applies rules in a fixed order, most specific
first. The categories and next steps come from the team's runbook
(``shared/deployment-lessons.md``); each runbook lesson has one category.

Rule order (first match wins):

1. ``permission_regression`` - a security check failed; never masked by anything else.
2. ``arch_mismatch`` - "exec format error" in a stop reason or the logs.
3. What the failure kind already proves: ``health_path_mismatch`` (health path 404 while
   another answers), ``stale_image`` (digest or task definition mismatch), ``missing_board_owner``.
4. Every other kind (tasks stopping, rollback, deadline, unreachable...): a health
   check that calls curl/wget or probes a 404 path when ECS stopped tasks for failed
   health checks, then errors in the logs, then a curl/wget check anyway, then
   ``task_restarting``, ``deployment_rolled_back``, ``target_unreachable``, ``not_stable``.
5. Failed checks with a 5xx (or unknown status): errors in the logs, narrowed to the
   traceback of the failing request when the request is known -
   ``migrations_not_applied``, then ``db_adapter_error``, then ``code_error``; then
   ``stale_image`` when the running digest differs from the registry's;
   else ``contract_violation``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from plugins.core.evidence import Evidence, stop_texts
from plugins.core.lint import FIXED_HEALTH_CHECK_EXAMPLE, external_tool_in, url_path_in
from plugins.core.redact import scrub_patterns

KINDS = frozenset(
    {
        "check_failed",
        "health_path_404",
        "tasks_stopping",
        "rolled_back",
        "image_mismatch",
        "deadline",
        "unreachable",
        "missing_owner",
        # Raised by plugins.core.stability too: the service runs another task definition.
        "task_definition_mismatch",
    }
)
_NETWORK_KINDS = frozenset({"unreachable", "no_public_ip", "no_private_ip"})

CATEGORIES: dict[str, str] = {
    "permission_regression": "Security: a permission that must be denied was granted, "
    "or a request without credentials was accepted",
    "arch_mismatch": "The image was built for the wrong CPU architecture (exec format error)",
    "health_path_mismatch": "The health check path answers 404 while another health path answers",
    "health_check_command": "The container health check calls curl/wget, which the image lacks",
    "stale_image": "The running image is not the one expected (stale build or old deployment)",
    "missing_board_owner": "No board owner exists: the owner bootstrap in migrations did not run",
    "migrations_not_applied": "Database tables are missing: migrations did not run before the app started",
    "db_adapter_error": "Database adapter incompatibility (cursor attribute such as rowcount missing)",
    "code_error": "The application raised a Python error (AttributeError, NameError, TypeError...)",
    "task_restarting": "Tasks keep stopping (failed container health checks) with no more specific cause",
    "deployment_rolled_back": "The deployment failed and ECS rolled it back",
    "target_unreachable": "The task could not be reached over the network",
    "not_stable": "The service did not become stable before the deadline",
    "contract_violation": "A response broke the API contract",
    # Could not verify: nothing is known about the release; each cause has its own fix.
    "no_credentials": "The harness found no usable AWS credentials",
    "aws_access_denied": "AWS refused a call the harness needs (IAM)",
    "aws_unreachable": "The AWS endpoint could not be reached",
    "aws_error": "AWS kept answering with an error (throttling, 5xx) the harness could not wait out",
    "unknown_region": "No AWS region, or one that does not exist",
    "service_not_found": "The ECS cluster or service does not exist (or is not active)",
    "container_not_found": "The task definition has no such container, or it maps no port",
    "no_running_task": "The service has no running task of its PRIMARY deployment to test",
    "smoke_accounts": "The smoke accounts are missing, unreadable, malformed, or refused at login",
    "checks_errored": "Checks could not run (errors, not failures): nothing was proven",
    "harness_error": "The harness itself failed; nothing is known about the release",
    "no_paused_hook": "--continue-deployment found no service deployment paused at a PAUSE lifecycle hook",
    "hook_action_failed": "The gate passed but ECS refused to continue the paused deployment",
    "task_definition_lint": "--strict-lint: the task definition has warnings",
}

NEXT_STEPS: dict[str, str] = {
    "permission_regression": "Do not ship: check the role permission table (ROLE_PERMISSIONS) and the auth dependency "
    "of the route, then redeploy the previous task definition until it is fixed.",
    "arch_mismatch": "Rebuild for Fargate's architecture: `docker buildx build --platform linux/amd64 -t $ECR_REPO:latest "
    "--push .`; check with `docker image inspect $IMAGE | grep Architecture`.",
    "health_path_mismatch": "Make the task definition's health check probe the path the app serves (/health vs "
    "/api/health), register the task definition and redeploy.",
    "health_check_command": "Use Python's urllib in the health check instead of curl/wget: "
    f'["CMD-SHELL", "{FIXED_HEALTH_CHECK_EXAMPLE}"], then register and redeploy.',
    "stale_image": "Rebuild without cache (`docker build --no-cache --platform linux/amd64`), push to ECR, then "
    "`aws ecs update-service --force-new-deployment`; verify the ECR digest matches.",
    "missing_board_owner": "Re-run migrations (`python -m src.board_mvp.migrations_pg`) after an Organizer exists so the "
    "earliest one becomes owner of board_001; look for 'Added user <id> as board owner' in the logs.",
    "migrations_not_applied": "Run migrations before the app starts: ENTRYPOINT a docker-entrypoint.sh (chmod +x) "
    "running `python -m src.board_mvp.migrations_pg` then `exec uvicorn ...`; look for 'Migrations complete!' in the "
    "start-up logs.",
    "db_adapter_error": "Do not rely on cursor.rowcount (the PostgreSQL adapter lacks it): check existence with a "
    "SELECT before the UPDATE/DELETE, and test database operations against PostgreSQL locally.",
    "code_error": "Fix the call named in the quoted log line (read the full traceback in CloudWatch), verify the Python "
    "API exists, and redeploy.",
    "task_restarting": "Read the stopped tasks' CloudWatch logs for start-up errors; verify the health endpoint "
    "answers 200 inside the container and startPeriod covers migrations.",
    "deployment_rolled_back": "Read the service events and the stopped tasks' logs for the new task definition, fix "
    "the cause and redeploy.",
    "target_unreachable": "Fetch the task's current public IP (it changes on every restart), check that the task is "
    "RUNNING and that its security group allows the port from this runner.",
    "not_stable": "Wait for the service to settle (`aws ecs wait services-stable`; a deployment takes 5-7 minutes) or "
    "raise the deadline; if it never settles, read the service events and stopped tasks.",
    "contract_violation": "Compare the response with the API contract; fix the service, or update the contract if the "
    "change was intended.",
    "no_credentials": "Give the job AWS credentials: OIDC (aws-actions/configure-aws-credentials), AWS_PROFILE, or "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; check with `aws sts get-caller-identity`.",
    "aws_access_denied": "Grant the identity the harness runs as the ECS, EC2 and logs read calls it needs "
    "(ecs:DescribeServices, ecs:ListTasks, ecs:DescribeTasks, ecs:DescribeTaskDefinition, ec2:DescribeNetworkInterfaces, "
    "logs:GetLogEvents, secretsmanager:GetSecretValue on the smoke secret).",
    "aws_unreachable": "Check the runner's network, proxy and AWS_ENDPOINT_URL; then run again.",
    "aws_error": "Run again later or with fewer parallel jobs; if it persists, check the AWS Health Dashboard.",
    "unknown_region": "Pass --aws-region (or AWS_REGION) naming the region where the service runs, e.g. us-east-1.",
    "service_not_found": "Check --ecs-cluster and --ecs-service (`aws ecs list-clusters`, `aws ecs list-services "
    "--cluster NAME`) and the region.",
    "container_not_found": "Pass --ecs-container naming the container that serves the API (and --target-port if it "
    "maps several ports).",
    "no_running_task": "Scale the service up or wait for ECS to start its tasks (`aws ecs describe-services`), then run "
    "again.",
    "smoke_accounts": "Fix the smoke accounts: set SMOKE_OWNER_*/SMOKE_PARTICIPANT_* or --smoke-secret holding "
    '{"owner": {"username", "password"}, "participant": {...}}, and check the passwords still log in.',
    "checks_errored": "Read the errors in summary.md or junit.xml; they are the harness or its set-up failing, "
    "not the service.",
    "harness_error": "Read harness-error.txt in the report folder and file it with the harness's maintainers; "
    "run again.",
    "no_paused_hook": "Run the gate while the blue/green deployment waits at its PAUSE hook: give the service "
    "deploymentConfiguration strategy BLUE_GREEN with a lifecycleHooks entry of targetType PAUSE (e.g. at "
    "POST_SCALE_UP), start the deploy, then run the gate; `aws ecs describe-service-deployments` shows "
    "lifecycleHookDetails AWAITING_ACTION. Drop --continue-deployment for a rolling service.",
    "hook_action_failed": "Give the gate's role ecs:ContinueServiceDeployment on the service's service deployments "
    "(infra/iam-gate-policy.json; the read-only role does not grant it), or continue by hand before the hook times "
    "out: `aws ecs continue-service-deployment --service-deployment-arn ARN --hook-id ID --action CONTINUE`.",
    "task_definition_lint": "Fix the task definition warnings listed in the report (health check command, path, "
    "startPeriod), register it and redeploy; or drop --strict-lint.",
}

# What each could-not-verify outcome kind is, for a person: its category and what the summary says.
NOT_VERIFIED_KINDS: dict[str, str] = {
    "no_credentials": "no_credentials",
    "bad_credentials": "no_credentials",
    "access_denied": "aws_access_denied",
    "aws_unreachable": "aws_unreachable",
    "throttled": "aws_error",
    "aws_error": "aws_error",
    "no_region": "unknown_region",
    "unknown_region": "unknown_region",
    "cluster_not_found": "service_not_found",
    "service_not_found": "service_not_found",
    "container_not_found": "container_not_found",
    "no_port": "container_not_found",
    "desired_zero": "no_running_task",
    "no_running_task": "no_running_task",
    "no_primary_deployment": "no_running_task",
    "no_public_ip": "target_unreachable",
    "no_private_ip": "target_unreachable",
    "target_unreachable": "target_unreachable",
    "accounts": "smoke_accounts",
    "deadline": "not_stable",
    "harness_error": "harness_error",
    "no_paused_hook": "no_paused_hook",
    "hook_action_failed": "hook_action_failed",
}


def diagnose_not_verified(kind: str, message: str, evidence: Iterable[str] = ()) -> Diagnosis:
    """The diagnosis of a could-not-verify outcome: its own category, the outcome's line, its next step.

    Only ``deadline`` needs the gathered evidence (``diagnose``); every other kind says
    exactly what is wrong already. An unknown kind is a harness error, never a guess.
    """
    category = NOT_VERIFIED_KINDS.get(kind, "harness_error")
    first = next(iter(evidence), "")
    return _make(category, None, message, first or message)

_EXEC_FORMAT = re.compile(r"exec format error", re.IGNORECASE)
_MISSING_TABLE = re.compile(
    r"no such table: ?(?P<sqlite>[\w.]+)|relation \"(?P<pg>[^\"]+)\" does not exist", re.IGNORECASE
)
_CURSOR_ATTRIBUTE = re.compile(
    r"AttributeError: '(?P<type>\w*(?:Cursor|Result|Connection)\w*)' object has no attribute '(?P<attr>\w+)'"
    r"|has no attribute '(?P<attr2>rowcount|lastrowid)'",
    re.IGNORECASE,
)
_PYTHON_ERROR = re.compile(
    r"(?:^|[\s:])(?:[\w.]+\.)?(?P<error>AttributeError|NameError|TypeError|KeyError|ImportError|ModuleNotFoundError|"
    r"UnboundLocalError|IndexError|ValueError|ZeroDivisionError|SyntaxError|RecursionError)(?::|$)"
)
_HEALTH_STOP = re.compile(r"failed (?:container|ELB) health checks", re.IGNORECASE)
_ROLLBACK_EVENT = re.compile(r"roll(?:ing|ed)? ?back|circuit breaker", re.IGNORECASE)
# ECS's words when deployment alarms fail a rollout: "... alarm(s) smoke-alarm are in ALARM state."
_ALARM_ROLLBACK = re.compile(r"alarm\(s\) (?P<names>[^\s]+(?:, ?[^\s]+)*) (?:are|is) in ALARM state", re.IGNORECASE)
# uvicorn's access log line: '... - "POST /api/boards/board_001/invites HTTP/1.1" 500 Internal Server Error'
_ACCESS_LINE = re.compile(r"\"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+\" (?P<status>\d{3})")
MAX_EVIDENCE_CHARS = 300


@dataclass(frozen=True, slots=True)
class Failure:
    """What the harness observed going wrong (built by the pytest layer).

    ``details`` by kind: health_path_404 ``{"path", "answering" (or "working_paths"): [...]}``;
    image_mismatch ``{"expected", "actual"}`` (``actual`` a digest or ``{task_id: digest}``);
    tasks_stopping may carry ``{"cause": "exec_format"}``; deadline: the last observed state
    (``{"state": ...}`` or any dict); check_failed may carry ``{"status": 500, "request":
    "POST /api/..."}``; any kind may carry ``{"health_path_status": {path: status}}``.
    ``kind`` should be one of ``KINDS``; another kind (e.g. a ``CouldNotVerify`` kind) is
    diagnosed like a task lifecycle failure rather than refused, because diagnosis must never
    crash a run that already failed.
    """

    kind: str
    check: str = ""
    task_id: str | None = None
    message: str = ""
    security: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """One named cause: ``[category] summary``, one line of evidence, and what to do next."""

    category: str
    task_id: str | None
    summary: str
    evidence: str
    next_step: str

    def message(self) -> str:
        """The failure message form Allure's categories match on: ``[category] summary``."""
        return f"[{self.category}] {self.summary}"

    def as_dict(self) -> dict[str, str | None]:
        """The verdict.json ``diagnoses`` entry."""
        return {
            "category": self.category,
            "task_id": self.task_id,
            "summary": self.summary,
            "evidence": self.evidence,
            "next_step": self.next_step,
        }


def one_line(text: str, limit: int = MAX_EVIDENCE_CHARS) -> str:
    """Collapse whitespace, mask credential-shaped text, and cut to ``limit`` characters."""
    flat = scrub_patterns(" ".join(str(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _short(task_id: str | None) -> str:
    return (task_id or "?")[:8]


def _make(category: str, task_id: str | None, summary: str, evidence: str, next_step: str | None = None) -> Diagnosis:
    return Diagnosis(category, task_id, one_line(summary), one_line(evidence), next_step or NEXT_STEPS[category])


# --- finding clues in the evidence -------------------------------------------------------------


def _request_blocks(lines: tuple[str, ...]) -> list[tuple[str | None, list[str]]]:
    """Split a task's log into (request, lines) blocks: a traceback belongs to the request before it."""
    blocks: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in lines:
        access = _ACCESS_LINE.search(line)
        if access:
            blocks.append((f"{access['method']} {access['path']}", [line]))
        else:
            blocks[-1][1].append(line)
    return blocks


def _request_path(request: object) -> str:
    """``"POST /api/x?y=1"`` -> ``"POST /api/x"``: query strings vary, the route does not."""
    return str(request or "").split("?", 1)[0].strip()


def _log_groups(failure: Failure, evidence: Evidence) -> list[list[tuple[str, str]]]:
    """Groups of (task_id, line) to search in turn, newest line first.

    First the blocks of the failing task that follow the failing request's access-log line
    (when the request is known), then every line, the failing task's first. Searching the
    narrow group first keeps one request's traceback from explaining another's failure.
    """
    failing_first = sorted(evidence.logs.items(), key=lambda item: item[0] != failure.task_id)
    everything = [(task_id, line) for task_id, lines in failing_first for line in reversed(lines)]
    request = _request_path(failure.details.get("request"))
    if not request:
        return [everything]
    focused: list[tuple[str, str]] = []
    for task_id, lines in failing_first:
        if failure.task_id is not None and task_id != failure.task_id:
            continue
        for block_request, block in _request_blocks(lines):
            if block_request is not None and _same_request(_request_path(block_request), request):
                focused.extend((task_id, line) for line in reversed(block))
    return [focused, everything] if focused else [everything]


def _same_request(logged: str, asked: str) -> bool:
    logged_method, _, logged_path = logged.partition(" ")
    asked_method, _, asked_path = asked.partition(" ")
    return logged_method == asked_method and logged_as(logged_path, asked_path)


def _newest_first(ordered: list[tuple[str, tuple[str, ...]]]) -> list[tuple[str, str]]:
    return [(task_id, line) for task_id, lines in ordered for line in reversed(lines)]


def _first(pattern: re.Pattern[str], clues: Iterable[tuple[str, str]]) -> tuple[str, str, re.Match[str]] | None:
    for task_id, text in clues:
        match = pattern.search(text)
        if match:
            return task_id, text, match
    return None


def _health_check_text(evidence: Evidence) -> str | None:
    return evidence.health_check.shell_text() if evidence.health_check else None


def _health_stops(evidence: Evidence) -> list[tuple[str, str]]:
    return [(task_id, text) for task_id, text in stop_texts(evidence) if _HEALTH_STOP.search(text)]


def _probed_path(evidence: Evidence) -> str | None:
    return url_path_in(_health_check_text(evidence) or "")


# --- the rules ---------------------------------------------------------------------------------


def _arch(failure: Failure, evidence: Evidence) -> Diagnosis | None:
    found = _first(_EXEC_FORMAT, list(stop_texts(evidence)) + _newest_first(list(evidence.logs.items())))
    if found is not None:
        task_id, text, _ = found
    elif failure.details.get("cause") == "exec_format":  # plugins.core.stability saw it in the stop reasons
        task_id = (failure.details.get("stopped_tasks") or [failure.task_id])[0]
        text = failure.message or "exec format error"
    else:
        return None
    return _make(
        "arch_mismatch",
        task_id,
        "containers cannot start: the image was built for another CPU architecture (Fargate runs linux/amd64)",
        f"task {_short(task_id)}: {text}",
    )


def _from_kind(failure: Failure, evidence: Evidence) -> Diagnosis | None:
    details = failure.details
    if failure.kind == "health_path_404":
        path = details.get("path", "?")
        working = details.get("answering") or details.get("working_paths") or []
        answering = ", ".join(working) or "no other known health path"
        probed = _probed_path(evidence)
        probe_note = f"; the task definition's health check probes {probed}" if probed else ""
        return _make(
            "health_path_mismatch",
            failure.task_id,
            f"health path {path} answers 404 while {answering} answers",
            f"GET {path} -> 404, {answering} -> 200{probe_note}",
        )
    if failure.kind == "image_mismatch":
        expected, actual = details.get("expected", "?"), details.get("actual", "?")
        task_id = failure.task_id
        if isinstance(actual, dict) and actual:
            task_id = task_id if task_id in actual else next(iter(actual))
            actual = actual[task_id] or "an image with no reported digest"
        registry = f"; ECR tag points at {evidence.registry_digest}" if evidence.registry_digest else ""
        return _make(
            "stale_image",
            task_id,
            f"task {_short(task_id)} runs an image other than the one deployed",
            f"expected {expected}, running {actual}{registry}",
        )
    if failure.kind == "task_definition_mismatch":
        return _make(
            "stale_image",
            failure.task_id,
            f"the service runs {details.get('actual', 'another revision')}, not {details.get('expected', 'the new one')}",
            failure.message or f"expected {details.get('expected')}, running {details.get('actual')}",
        )
    if failure.kind == "rolled_back":
        # The rollback is the finding; why the new tasks died is its evidence, not another category.
        by_alarm = _alarm_rollback(failure, evidence)
        if by_alarm is not None:
            return by_alarm
        rollback = next((d for d in evidence.deployments if "rolloutState=FAILED" in d), None) or next(
            (e for e in evidence.service_events if _ROLLBACK_EVENT.search(e)), None
        )
        stops = list(stop_texts(evidence))
        why = f"; its tasks stopped: {stops[0][1]}" if stops else ""
        return _make(
            "deployment_rolled_back",
            failure.task_id,
            "the deployment failed and ECS rolled it back to the previous task definition",
            (rollback or failure.message or "deployment rolled back") + why,
        )
    if failure.kind == "missing_owner":
        return _make(
            "missing_board_owner",
            failure.task_id,
            "no user owns the board, so nobody can create invites",
            failure.message or "no membership with role owner",
        )
    return None


def _health_check_command(failure: Failure, evidence: Evidence, *, require_health_stop: bool) -> Diagnosis | None:
    command = _health_check_text(evidence)
    tool = external_tool_in(command or "")
    if tool is None:
        return None
    stops = _health_stops(evidence)
    if require_health_stop and not stops:
        return None
    task_id = stops[0][0] if stops else failure.task_id
    stopped = f"task {_short(task_id)} stopped: {stops[0][1]}; " if stops else ""
    return _make(
        "health_check_command",
        task_id,
        f"the container health check calls {tool}, which the image lacks, so ECS keeps replacing tasks",
        f"{stopped}health check: {command}",
    )


def _alarm_rollback(failure: Failure, evidence: Evidence) -> Diagnosis | None:
    """A rollback that ECS's deployment alarms caused, named by its alarm (else None)."""
    texts = [failure.message, *evidence.deployments, *evidence.service_events, *map(str, failure.details.values())]
    alarm = next((found for text in texts if (found := _ALARM_ROLLBACK.search(text or ""))), None)
    if alarm is None:
        return None
    names = alarm["names"]
    return _make(
        "deployment_rolled_back",
        failure.task_id,
        f"ECS rolled the deployment back: deployment alarm(s) {names} went into ALARM",
        alarm.string,
        f"Read why the alarm fired (`aws cloudwatch describe-alarm-history --alarm-name {names.split(',')[0]}`) "
        "and the canary's and the new tasks' logs; fix the build and redeploy.",
    )


def _answered_404(line: str, path: str) -> bool:
    access = _ACCESS_LINE.search(line)
    return access is not None and logged_as(access["path"], path) and access["status"] == "404"


def logged_as(logged: str, asked: str) -> bool:
    """Whether an access line's path can be the request for ``asked``.

    An app that mounts its API as a sub-application logs the path inside the mount:
    the real CivicForge service logs ``/api/health`` as ``/health``. So a logged path
    matches the asked one, or the asked one with a leading mount prefix left out.
    """
    logged, asked = logged.split("?", 1)[0], asked.split("?", 1)[0]
    if logged == asked:
        return True
    prefix = asked[: -len(logged)] if logged and asked.endswith(logged) else ""
    return prefix.startswith("/") and not prefix.endswith("/") and logged.startswith("/")


def _health_path_stop(failure: Failure, evidence: Evidence) -> Diagnosis | None:
    stops = _health_stops(evidence)
    probed = _probed_path(evidence)
    statuses = dict(failure.details.get("health_path_status") or {})
    if probed is not None and probed not in statuses:
        # The dead tasks cannot be asked any more, but their access logs show what the check got.
        lines = (line for task_lines in evidence.logs.values() for line in task_lines)
        statuses.update({probed: 404 for line in lines if _answered_404(line, probed)})
    if not stops or probed is None or statuses.get(probed) != 404:
        return None
    answering = sorted(p for p, code in statuses.items() if 200 <= int(code) < 400)
    return _make(
        "health_path_mismatch",
        stops[0][0],
        f"the health check probes {probed}, which answers 404, so ECS keeps replacing tasks",
        f"task {_short(stops[0][0])} stopped: {stops[0][1]}; GET {probed} -> 404"
        + (f", {', '.join(answering)} -> 200" if answering else ""),
    )


def _from_logs(failure: Failure, evidence: Evidence) -> Diagnosis | None:
    for candidates in _log_groups(failure, evidence):
        found = _from_log_lines(candidates)
        if found:
            return found
    return None


def _from_log_lines(candidates: list[tuple[str, str]]) -> Diagnosis | None:
    found = _first(_MISSING_TABLE, candidates)
    if found:
        task_id, line, match = found
        table = match["sqlite"] or match["pg"]
        what = f"table {table} is missing" if table else "a table is missing"
        return _make(
            "migrations_not_applied",
            task_id,
            f"database migrations did not run: {what}",
            f"task {_short(task_id)} log: {line}",
        )
    found = _first(_CURSOR_ATTRIBUTE, candidates)
    if found:
        task_id, line, match = found
        attribute = match["attr"] or match["attr2"]
        return _make(
            "db_adapter_error",
            task_id,
            f"the database adapter's cursor has no {attribute} attribute (works on SQLite, fails on PostgreSQL)",
            f"task {_short(task_id)} log: {line}",
        )
    found = _first(_PYTHON_ERROR, candidates)
    if found:
        task_id, line, match = found
        step = NEXT_STEPS["code_error"]
        if "urlsafe" in line:
            step = "Use secrets.token_urlsafe(32), not secrets.urlsafe(32); " + step
        return _make(
            "code_error",
            task_id,
            f"the application raised {match['error']}",
            f"task {_short(task_id)} log: {line}",
            step,
        )
    return None


def _lifecycle(failure: Failure, evidence: Evidence) -> Diagnosis:
    # Log errors explain a lifecycle failure only when tasks actually died (a crash at start-up);
    # a request's traceback on a live task does not explain an unreachable or slow service.
    tasks_died = bool(evidence.stopped_tasks) or failure.kind in ("tasks_stopping", "rolled_back")
    for rule in (
        lambda: _health_check_command(failure, evidence, require_health_stop=True),
        lambda: _health_path_stop(failure, evidence),
        lambda: _from_logs(failure, evidence) if tasks_died else None,
        lambda: _health_check_command(failure, evidence, require_health_stop=False) if evidence.stopped_tasks else None,
    ):
        found = rule()
        if found:
            return found
    stops = list(stop_texts(evidence))
    health = _health_stops(evidence)
    if health or (failure.kind == "tasks_stopping" and stops):
        task_id, reason = (health or stops)[0]
        return _make(
            "task_restarting",
            task_id,
            f"{len(evidence.stopped_tasks)} task(s) stopped recently; ECS keeps replacing them",
            f"task {_short(task_id)} stopped: {reason}",
        )
    rollback = next((d for d in evidence.deployments if "rolloutState=FAILED" in d), None) or next(
        (e for e in evidence.service_events if _ROLLBACK_EVENT.search(e)), None
    )
    if failure.kind == "rolled_back" or rollback:
        by_alarm = _alarm_rollback(failure, evidence)
        if by_alarm is not None:
            return by_alarm
        return _make(
            "deployment_rolled_back",
            failure.task_id,
            "the deployment failed and ECS rolled it back",
            rollback or failure.message or "deployment rolled back",
        )
    if failure.kind in _NETWORK_KINDS:
        return _make(
            "target_unreachable",
            failure.task_id,
            f"task {_short(failure.task_id)} could not be reached",
            failure.message or "connection failed",
        )
    if failure.kind == "tasks_stopping":
        return _make("task_restarting", failure.task_id, "tasks keep stopping", failure.message or "tasks stopping")
    state = failure.details.get("state") or failure.message or failure.details
    latest_event = evidence.service_events[0] if evidence.service_events else ""
    return _make(
        "not_stable",
        failure.task_id,
        "the service did not become stable before the deadline",
        f"last state: {state}" + (f"; latest event: {latest_event}" if latest_event else ""),
    )


def _stale_from_digests(failure: Failure, evidence: Evidence) -> Diagnosis | None:
    registry = evidence.registry_digest
    if not registry:
        return None
    stale = [(t, d) for t, d in evidence.running_digests.items() if d != registry]
    stale.sort(key=lambda item: item[0] != failure.task_id)
    if not stale:
        return None
    task_id, digest = stale[0]
    return _make(
        "stale_image",
        task_id,
        f"task {_short(task_id)} runs an older image than the ECR tag",
        f"running {digest}, ECR tag points at {registry}",
    )


def diagnose(failure: Failure, evidence: Evidence | None = None) -> Diagnosis:
    """Name the most specific cause of ``failure`` that ``evidence`` supports (see module docstring)."""
    evidence = evidence or Evidence()
    if failure.security:
        return _make(
            "permission_regression",
            failure.task_id,
            f"security check {failure.check or '?'} failed: access that must be denied was granted",
            failure.message or failure.check,
        )
    found = _arch(failure, evidence) or _from_kind(failure, evidence)
    if found:
        return found
    if failure.kind != "check_failed":
        return _lifecycle(failure, evidence)
    status = str(failure.details.get("status") or "")
    # A 4xx is the service answering on purpose: a traceback in the logs does not explain it.
    server_error = not status.isdigit() or int(status) >= 500
    found = (_from_logs(failure, evidence) if server_error else None) or _stale_from_digests(failure, evidence)
    if found:
        return found
    return _make(
        "contract_violation",
        failure.task_id,
        f"check {failure.check or '?'} failed",
        failure.message or "no message",
    )


def diagnose_all(failures: Iterable[Failure], evidence: Evidence | None = None) -> list[Diagnosis]:
    """Diagnose each failure; identical diagnoses (same category, task and evidence) are listed once,
    and a missing board owner absorbs the 403s it causes on the same task."""
    pairs = [(failure, diagnose(failure, evidence)) for failure in failures]
    # Without a board owner the owner account is refused everywhere: its 403s and the owner
    # checks are that one cause, not separate contract violations (runbook lesson 3).
    ownerless = {found.task_id for _failure, found in pairs if found.category == "missing_board_owner"}
    seen: set[tuple[str, str | None, str]] = set()
    result: list[Diagnosis] = []
    for failure, found in pairs:
        consequence = (found.category == "contract_violation" and found.task_id in ownerless
                       and (failure.details.get("status") == 403 or "owner" in failure.check))
        key = (found.category, found.task_id, found.evidence)
        if key not in seen and not consequence:
            seen.add(key)
            result.append(found)
    return result


def allure_categories() -> list[dict[str, Any]]:
    """Entries for Allure's ``categories.json``, one per category, matching ``[category]`` in messages."""
    return [
        {
            "name": f"{category}: {description}",
            "matchedStatuses": ["failed", "broken"],
            # (?s): failure messages span lines and Allure matches the whole message.
            "messageRegex": rf"(?s).*\[{category}\].*",
        }
        for category, description in CATEGORIES.items()
    ]
