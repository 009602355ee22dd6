"""Classify a failure into one named cause, with one line of evidence and a next step.

Pure: ``diagnose(failure, evidence)`` looks at what the harness observed (the
``Failure``) and what ``collect_evidence`` gathered (logs, stopped tasks, service
events, health check, digests) and applies rules in a fixed order, most specific
first. The categories and next steps come from the team's runbook
(``shared/deployment-lessons.md``); each runbook lesson has one category.

Rule order (first match wins):

1. ``permission_regression`` - a security check failed; never masked by anything else.
   ``no_answer`` - the check's request got no HTTP answer after its retries: nothing the
   service said, so never a contract violation (could not verify that check on that task).
2. ``arch_mismatch`` - "exec format error" in a stop reason or the logs.
3. What the failure kind already proves: ``lb_routing`` (a check that fails through the load
   balancer's listener but passes at every task's address), ``health_path_mismatch`` (health path 404 while
   another answers), ``stale_image`` (digest or task definition mismatch),
   ``task_crashed`` (a task stopped mid-run on its own: exit code, reason, last log lines) and
   ``task_stopped`` (stopped from outside and never replaced in time: could not verify); then a
   suite cause the failing check named itself (``ContractViolation.category``).
4. Every other kind (tasks stopping, rollback, deadline, unreachable...): a health
   check that calls curl/wget or probes a 404 path when ECS stopped tasks for failed
   health checks, then errors in the logs, then a curl/wget check anyway, then
   ``task_restarting``, ``deployment_rolled_back``, ``target_unreachable``, ``not_stable``.
5. Failed checks with a 5xx (or unknown status): errors in the logs, narrowed to the
   traceback of the failing request when the request is known - a suite cause whose
   ``log_pattern`` matches, then ``migrations_not_applied``, then ``db_adapter_error``, then ``db_concurrency_error``, then ``code_error``; then
   ``stale_image`` when the running digest differs from the registry's;
   else ``contract_violation``.

The suite's profile (``ecs_verdict.suite``) brings its causes and their log patterns, and which
contract violations a cause absorbs on its task (``diagnose_all``); its own next step for a
generic category is applied to the verdict (``verdict.decide``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ecs_verdict.categories import CATEGORIES, NEXT_STEPS, NO_ANSWER, Diagnosis, make_diagnosis, short_id
from ecs_verdict.evidence import Evidence, stop_texts
from ecs_verdict.kinds import Kind
from ecs_verdict.listeners import short_arn
from ecs_verdict.lint import external_tool_in, url_path_in
from ecs_verdict.log_clues import (ALARM_ROLLBACK, CURSOR_ATTRIBUTE, EXEC_FORMAT, HEALTH_STOP,
                                    MISSING_TABLE, PYTHON_ERROR, ROLLBACK_EVENT, SHARED_CONNECTION, answered_404,
                                    first_match,
                                    newest_first, request_blocks, request_path, same_request)
from ecs_verdict.suite import NO_SUITE, SuiteProfile

KINDS = frozenset(
    {
        Kind.CHECK_FAILED,
        Kind.HEALTH_PATH_404,
        Kind.TASKS_STOPPING,
        Kind.ROLLED_BACK,
        Kind.IMAGE_MISMATCH,
        Kind.DEADLINE,
        Kind.UNREACHABLE,
        Kind.NO_ANSWER,
        # Raised by ecs_verdict.stability too: the service runs another task definition.
        Kind.TASK_DEFINITION_MISMATCH,
        # A task stopped mid-run (ecs_verdict.task_fate): crashed, or stopped and never replaced in time.
        Kind.TASK_CRASHED,
        Kind.TASK_STOPPED,
        # A check that fails through the load balancer's listener only (ecs_verdict.listeners).
        Kind.LB_ROUTING,
        # A task the load balancer calls unhealthy (ecs_verdict.target_health): ELB's reason decides the category.
        Kind.LB_TARGET_UNHEALTHY,
    }
)
LAST_LOG_LINES = 3  # of a crashed task, quoted in its diagnosis
_NETWORK_KINDS = frozenset({Kind.UNREACHABLE, Kind.NO_PUBLIC_IP, Kind.NO_PRIVATE_IP})
URLSAFE_STEP = ("Call secrets.token_urlsafe(32) where the quoted log line calls secrets.urlsafe(32) (read the full "
                "traceback in CloudWatch), and redeploy.")


@dataclass(frozen=True, slots=True)
class Failure:
    """What the harness observed going wrong (built by the pytest layer).

    ``details`` by kind: health_path_404 ``{"path", "answering" (or "working_paths"): [...]}``;
    image_mismatch ``{"expected", "actual"}`` (``actual`` a digest or ``{task_id: digest}``);
    tasks_stopping may carry ``{"cause": "exec_format"}``; no_answer ``{"request": "GET http://..."}``
    with the message naming the request, its attempts and its last error; deadline: the last observed state
    (``{"state": ...}`` or any dict); check_failed may carry ``{"status": 500, "request":
    "POST /api/..."}``; any kind may carry ``{"health_path_status": {path: status}}``.
    ``category`` is the cause the failing check named itself (a suite cause, from its
    ``ContractViolation``), or None. ``kind`` is a ``Kind`` (text is parsed, an unknown kind refused);
    a kind no rule names (e.g. a ``CouldNotVerify`` kind) is diagnosed like a task lifecycle failure.
    """

    kind: Kind
    check: str = ""
    task_id: str | None = None
    message: str = ""
    security: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    category: str | None = None
    # When the failing check ran (first, last): the task's log lines are read around it, so a later,
    # unrelated traceback cannot push the one that explains this failure out of the evidence.
    window: tuple[datetime, datetime] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind.parse(self.kind))  # a kind diagnosis does not know is refused


def failure_windows(failures: Iterable[Failure]) -> dict[str, tuple[datetime, datetime]]:
    """Per task, from the first failing check's start to the last one's end (what its logs are read around)."""
    windows: dict[str, tuple[datetime, datetime]] = {}
    for failure in failures:
        if failure.task_id is None or failure.window is None:
            continue
        first, last = failure.window
        known = windows.get(failure.task_id)
        windows[failure.task_id] = (min(first, known[0]), max(last, known[1])) if known else (first, last)
    return windows


# --- finding clues in the evidence -------------------------------------------------------------


def _log_groups(failure: Failure, evidence: Evidence) -> list[list[tuple[str, str]]]:
    """Groups of (task_id, line) to search in turn, newest line first.

    First the blocks of the failing task that follow the failing request's access-log line
    (when the request is known), then every line, the failing task's first. Searching the
    narrow group first keeps one request's traceback from explaining another's failure.
    """
    failing_first = sorted(evidence.logs.items(), key=lambda item: item[0] != failure.task_id)
    everything = [(task_id, line) for task_id, lines in failing_first for line in reversed(lines)]
    request = request_path(failure.details.get("request"))
    if not request:
        return [everything]
    focused: list[tuple[str, str]] = []
    for task_id, lines in failing_first:
        if failure.task_id is not None and task_id != failure.task_id:
            continue
        for block_request, block in request_blocks(lines):
            if block_request is not None and same_request(request_path(block_request), request):
                focused.extend((task_id, line) for line in reversed(block))
    return [focused, everything] if focused else [everything]


def _health_check_text(evidence: Evidence) -> str | None:
    return evidence.health_check.shell_text() if evidence.health_check else None


def _health_stops(evidence: Evidence) -> list[tuple[str, str]]:
    return [(task_id, text) for task_id, text in stop_texts(evidence) if HEALTH_STOP.search(text)]


def _probed_path(evidence: Evidence) -> str | None:
    return url_path_in(_health_check_text(evidence) or "")


# --- the rules ---------------------------------------------------------------------------------


def _arch(failure: Failure, evidence: Evidence) -> Diagnosis | None:
    found = first_match(EXEC_FORMAT, list(stop_texts(evidence)) + newest_first(list(evidence.logs.items())))
    if found is not None:
        task_id, text, _ = found
    elif failure.details.get("cause") == "exec_format":  # ecs_verdict.stability saw it in the stop reasons
        task_id = (failure.details.get("stopped_tasks") or [failure.task_id])[0]
        text = failure.message or "exec format error"
    else:
        return None
    return make_diagnosis(
        "arch_mismatch",
        task_id,
        "containers cannot start: the image was built for another CPU architecture (Fargate runs linux/amd64)",
        f"task {short_id(task_id)}: {text}",
    )


def _lb_routing(failure: Failure) -> Diagnosis:
    """Failed through the listener, passed at every task: the listener's rule, named with its target groups."""
    details = failure.details
    listener = details.get("listener") or {}
    role = listener.get("role") or "production"
    rule = listener.get("rule") or "its rule"
    forwards = ", ".join(short_arn(arn) for arn in listener.get("forwards_to") or []) or "no target group"
    wanted = listener.get("service_target_group")
    answered = f"{details['request']} -> {details.get('status') or 'no status'}; " if details.get("request") else ""
    where = f"{role} listener {listener.get('protocol') or ''}:{listener.get('port') or ''}".replace(" :", " ")
    rule_ref = listener.get("rule_arn") or listener.get("listener_arn")
    if listener.get("problem"):  # ELB itself says no rule forwards to the service: that is the evidence
        return make_diagnosis(
            "lb_routing", failure.task_id,
            f"check {failure.check or '?'} fails through the load balancer at {listener.get('url') or '?'} but passes "
            "at every task's address: the load balancer sends this traffic somewhere else",
            f"{answered}{listener['problem']}",
            f"Find the listener rule that serves {listener.get('url') or 'this address'} (`aws elbv2 describe-rules "
            "--listener-arn ARN`) and make it forward to the service's target group"
            + (f" {short_arn(wanted)}" if wanted else "") + " (`aws elbv2 modify-rule`); then run again.")
    next_step = (f"Check the {where}'s {rule}"
                 + (f" (`aws elbv2 describe-rules --rule-arns {rule_ref}`)" if rule_ref else "")
                 + f": it forwards to {forwards}"
                 + (f"; it must forward to the service's target group {short_arn(wanted)}" if wanted else "")
                 + (" (`aws elbv2 modify-rule`), and its conditions (host, path) must match the requests users send"
                    if wanted else "; check the load balancer behind --lb-url routes to this service")
                 + "; then run again.")
    return make_diagnosis(
        "lb_routing", failure.task_id,
        f"check {failure.check or '?'} fails through the {where.strip()} but passes at every task's address: "
        "the load balancer sends this traffic somewhere else",
        f"{answered}{rule} forwards to {forwards}" + (f", the service's target group is {short_arn(wanted)}"
                                                      if wanted else ""),
        next_step)


def _from_kind(failure: Failure, evidence: Evidence) -> Diagnosis | None:
    details = failure.details
    if failure.kind == Kind.LB_ROUTING:
        return _lb_routing(failure)
    if failure.kind == Kind.HEALTH_PATH_404:
        path = details.get("path", "?")
        working = details.get("answering") or details.get("working_paths") or []
        answering = ", ".join(working) or "no other known health path"
        probed = _probed_path(evidence)
        probe_note = f"; the task definition's health check probes {probed}" if probed else ""
        return make_diagnosis(
            "health_path_mismatch",
            failure.task_id,
            f"health path {path} answers 404 while {answering} answers",
            f"GET {path} -> 404, {answering} -> 200{probe_note}",
        )
    if failure.kind == Kind.IMAGE_MISMATCH:
        expected, actual = details.get("expected", "?"), details.get("actual", "?")
        task_id = failure.task_id
        if isinstance(actual, dict) and actual:
            task_id = task_id if task_id in actual else next(iter(actual))
            actual = actual[task_id] or "an image with no reported digest"
        registry = f"; ECR tag points at {evidence.registry_digest}" if evidence.registry_digest else ""
        return make_diagnosis(
            "stale_image",
            task_id,
            f"task {short_id(task_id)} runs an image other than the one deployed",
            f"expected {expected}, running {actual}{registry}",
        )
    if failure.kind == Kind.TASK_DEFINITION_MISMATCH:
        return make_diagnosis(
            "stale_image",
            failure.task_id,
            f"the service runs {details.get('actual', 'another revision')}, not {details.get('expected', 'the new one')}",
            failure.message or f"expected {details.get('expected')}, running {details.get('actual')}",
        )
    if failure.kind == Kind.ROLLED_BACK:
        # The rollback is the finding; why the new tasks died is its evidence, not another category.
        by_alarm = _alarm_rollback(failure, evidence)
        if by_alarm is not None:
            return by_alarm
        rollback = next((d for d in evidence.deployments if "rolloutState=FAILED" in d), None) or next(
            (e for e in evidence.service_events if ROLLBACK_EVENT.search(e)), None
        )
        stops = list(stop_texts(evidence))
        why = f"; its tasks stopped: {stops[0][1]}" if stops else ""
        return make_diagnosis(
            "deployment_rolled_back",
            failure.task_id,
            "the deployment failed and ECS rolled it back to the previous task definition",
            (rollback or failure.message or "deployment rolled back") + why,
        )
    if failure.kind == Kind.TASK_CRASHED:
        return _task_crashed(failure, evidence)
    if failure.kind == Kind.LB_TARGET_UNHEALTHY:
        return _lb_target(failure)
    if failure.kind == Kind.TASK_STOPPED:
        stopped = ": ".join(str(details[k]) for k in ("stop_code", "stopped_reason") if details.get(k))
        return make_diagnosis(
            "task_stopped",
            failure.task_id,
            f"task {short_id(failure.task_id)} stopped mid-run by ECS ({stopped or 'stopped'}) and no replacement "
            "was healthy before the run's deadline: its checks could not run",
            f"last seen: {details.get('last_seen') or 'no replacement'}",
        )
    return None


def _named_by_the_check(failure: Failure, suite: SuiteProfile) -> Diagnosis | None:
    """The cause the failing check named (``ContractViolation.category``): the suite's, or one of the harness's."""
    if failure.category is None:
        return None
    cause = suite.cause(failure.category)
    evidence = failure.message or f"check {failure.check or '?'} failed"
    if cause is not None:
        return make_diagnosis(cause.category, failure.task_id, cause.title, evidence, cause.next_step)
    if failure.category in CATEGORIES:
        return make_diagnosis(failure.category, failure.task_id, CATEGORIES[failure.category], evidence)
    # A category nobody declared is a suite bug, never a silent guess: the violation stays one, and says so.
    return make_diagnosis("contract_violation", failure.task_id,
                          f"check {failure.check or '?'} failed (it names category {failure.category!r}, which "
                          f"no cause of suite {suite.name!r} declares)", evidence)


def _lb_target(failure: Failure) -> Diagnosis:
    """An unhealthy load-balancer target, named by ELB's reason code; both health paths when they differ."""
    details = failure.details
    reason, description = details.get("reason") or "no reason", details.get("description") or ""
    group = details.get("target_group") or {}
    name, group_path = group.get("name", "?"), group.get("path", "?")
    container_path = details.get("container_health_check_path")
    task = short_id(details.get("task_id") or failure.task_id)
    settings = (f"{name}: {group.get('protocol', 'HTTP')} GET {group_path} on {group.get('port', 'traffic-port')} "
                f"every {group.get('interval_s', '?')} s, timeout {group.get('timeout_s', '?')} s, healthy after "
                f"{group.get('healthy_threshold', '?')}, unhealthy after {group.get('unhealthy_threshold', '?')}, "
                f"success codes {group.get('matcher', '?')}")
    elb = f"ELB {details.get('target', '?')}: {reason}: {description}; target group {settings}"
    task_id = details.get("task_id") or failure.task_id
    if reason == "Target.ResponseCodeMismatch" and "[4" in description:
        served = (f"; the task's container health check probes {container_path}" if container_path
                  and container_path != group_path else "")
        codes = description.partition("[")[2].rstrip("]")
        return make_diagnosis(
            "lb_health_path_mismatch", task_id,
            f"target group {name} probes {group_path}, which task {task} answers with {codes}{served}", elb)
    if reason == "Target.Timeout":
        return make_diagnosis(
            "lb_target_timeout", task_id,
            f"the load balancer's health checks to task {task} time out ({details.get('target', '?')}, target group "
            f"{name}): it cannot reach the task",
            elb)
    return make_diagnosis("lb_target_unhealthy", task_id,
                          f"task {task} is unhealthy in target group {name}: {reason}: {description}".rstrip(": "), elb)


def _task_crashed(failure: Failure, evidence: Evidence) -> Diagnosis:
    """A task that stopped mid-run on its own: the container's exit code and reason, and its last log lines."""
    details = failure.details
    code, reason = details.get("exit_code"), details.get("container_reason")
    how = f"exit code {code}" if code is not None else "no exit code"
    if reason:
        how += f", {reason}"
    what = "ran out of memory" if "OutOfMemoryError" in str(reason) else "stopped on its own"
    lines = [line.strip() for line in evidence.logs.get(failure.task_id or "", []) if line.strip()]
    logged = f"; last log lines: {' | '.join(lines[-LAST_LOG_LINES:])}" if lines else "; no log lines"
    stopped = ": ".join(str(details[k]) for k in ("stop_code", "stopped_reason") if details.get(k))
    return make_diagnosis(
        "task_crashed",
        failure.task_id,
        f"task {short_id(failure.task_id)} {what} mid-run: container {details.get('container') or '?'} ({how})",
        f"{stopped or 'stopped'}{logged}",
    )


def _health_check_command(failure: Failure, evidence: Evidence, *, require_health_stop: bool) -> Diagnosis | None:
    command = _health_check_text(evidence)
    tool = external_tool_in(command or "")
    if tool is None:
        return None
    stops = _health_stops(evidence)
    if require_health_stop and not stops:
        return None
    task_id = stops[0][0] if stops else failure.task_id
    stopped = f"task {short_id(task_id)} stopped: {stops[0][1]}; " if stops else ""
    return make_diagnosis(
        "health_check_command",
        task_id,
        f"the container health check calls {tool}, which the image lacks, so ECS keeps replacing tasks",
        f"{stopped}health check: {command}",
    )


def _alarm_rollback(failure: Failure, evidence: Evidence) -> Diagnosis | None:
    """A rollback that ECS's deployment alarms caused, named by its alarm (else None)."""
    texts = [failure.message, *evidence.deployments, *evidence.service_events, *map(str, failure.details.values())]
    alarm = next((found for text in texts if (found := ALARM_ROLLBACK.search(text or ""))), None)
    if alarm is None:
        return None
    names = alarm["names"]
    return make_diagnosis(
        "deployment_rolled_back",
        failure.task_id,
        f"ECS rolled the deployment back: deployment alarm(s) {names} went into ALARM",
        alarm.string,
        f"Read why the alarm fired (`aws cloudwatch describe-alarm-history --alarm-name {names.split(',')[0]}`) "
        "and the canary's and the new tasks' logs; fix the build and redeploy.",
    )


def _health_path_stop(failure: Failure, evidence: Evidence) -> Diagnosis | None:
    stops = _health_stops(evidence)
    probed = _probed_path(evidence)
    statuses = dict(failure.details.get("health_path_status") or {})
    if probed is not None and probed not in statuses:
        # The dead tasks cannot be asked any more, but their access logs show what the check got.
        lines = (line for task_lines in evidence.logs.values() for line in task_lines)
        statuses.update({probed: 404 for line in lines if answered_404(line, probed)})
    if not stops or probed is None or statuses.get(probed) != 404:
        return None
    answering = sorted(p for p, code in statuses.items() if 200 <= int(code) < 400)
    return make_diagnosis(
        "health_path_mismatch",
        stops[0][0],
        f"the health check probes {probed}, which answers 404, so ECS keeps replacing tasks",
        f"task {short_id(stops[0][0])} stopped: {stops[0][1]}; GET {probed} -> 404"
        + (f", {', '.join(answering)} -> 200" if answering else ""),
    )


def _from_logs(failure: Failure, evidence: Evidence, suite: SuiteProfile) -> Diagnosis | None:
    for candidates in _log_groups(failure, evidence):
        found = _from_suite_patterns(candidates, suite) or _from_log_lines(candidates)
        if found:
            return found
    return None


def _from_suite_patterns(candidates: list[tuple[str, str]], suite: SuiteProfile) -> Diagnosis | None:
    """A suite cause recognised by its ``log_pattern``: the suite knows its service's words best, so it goes first."""
    for cause, pattern in suite.log_patterns():
        found = first_match(pattern, candidates)
        if found:
            task_id, line, _match = found
            return make_diagnosis(cause.category, task_id, cause.title, f"task {short_id(task_id)} log: {line}",
                                  cause.next_step)
    return None


def _from_log_lines(candidates: list[tuple[str, str]]) -> Diagnosis | None:
    found = first_match(MISSING_TABLE, candidates)
    if found:
        task_id, line, match = found
        table = match["sqlite"] or match["pg"]
        what = f"table {table} is missing" if table else "a table is missing"
        return make_diagnosis(
            "migrations_not_applied",
            task_id,
            f"database migrations did not run: {what}",
            f"task {short_id(task_id)} log: {line}",
        )
    found = first_match(CURSOR_ATTRIBUTE, candidates)
    if found:
        task_id, line, match = found
        attribute = match["attr"] or match["attr2"]
        # Say what the log shows (which object lacks what), not which database it must have been.
        holder = f"{match['type']!r} object" if match["type"] else "database adapter's cursor"
        return make_diagnosis(
            "db_adapter_error",
            task_id,
            f"the {holder} has no {attribute} attribute: the code relies on a cursor attribute this database "
            "adapter does not provide",
            f"task {short_id(task_id)} log: {line}",
        )
    found = first_match(SHARED_CONNECTION, candidates)
    if found:
        task_id, line, _match = found
        return make_diagnosis(
            "db_concurrency_error",
            task_id,
            "the database adapter failed under simultaneous requests: its threads share one connection and cursor",
            f"task {short_id(task_id)} log: {line}",
        )
    found = first_match(PYTHON_ERROR, candidates)
    if found:
        task_id, line, match = found
        step = NEXT_STEPS["code_error"]
        if "urlsafe" in line:  # runbook lesson: the fix is known, so say it instead of the general one
            step = URLSAFE_STEP
        return make_diagnosis(
            "code_error",
            task_id,
            f"the application raised {match['error']}",
            f"task {short_id(task_id)} log: {line}",
            step,
        )
    return None


def _lifecycle(failure: Failure, evidence: Evidence, suite: SuiteProfile) -> Diagnosis:
    # Log errors explain a lifecycle failure only when tasks actually died (a crash at start-up);
    # a request's traceback on a live task does not explain an unreachable or slow service.
    tasks_died = bool(evidence.stopped_tasks) or failure.kind in (Kind.TASKS_STOPPING, Kind.ROLLED_BACK)
    for rule in (
        lambda: _health_check_command(failure, evidence, require_health_stop=True),
        lambda: _health_path_stop(failure, evidence),
        lambda: _from_logs(failure, evidence, suite) if tasks_died else None,
        lambda: _health_check_command(failure, evidence, require_health_stop=False) if evidence.stopped_tasks else None,
    ):
        found = rule()
        if found:
            return found
    stops = list(stop_texts(evidence))
    health = _health_stops(evidence)
    if health or (failure.kind == Kind.TASKS_STOPPING and stops):
        task_id, reason = (health or stops)[0]
        return make_diagnosis(
            "task_restarting",
            task_id,
            f"{len(evidence.stopped_tasks)} task(s) stopped recently; ECS keeps replacing them",
            f"task {short_id(task_id)} stopped: {reason}",
        )
    rollback = next((d for d in evidence.deployments if "rolloutState=FAILED" in d), None) or next(
        (e for e in evidence.service_events if ROLLBACK_EVENT.search(e)), None
    )
    if failure.kind == Kind.ROLLED_BACK or rollback:
        by_alarm = _alarm_rollback(failure, evidence)
        if by_alarm is not None:
            return by_alarm
        return make_diagnosis(
            "deployment_rolled_back",
            failure.task_id,
            "the deployment failed and ECS rolled it back",
            rollback or failure.message or "deployment rolled back",
        )
    if failure.kind in _NETWORK_KINDS:
        return make_diagnosis(
            "target_unreachable",
            failure.task_id,
            f"task {short_id(failure.task_id)} could not be reached",
            failure.message or "connection failed",
        )
    if failure.kind == Kind.TASKS_STOPPING:
        return make_diagnosis("task_restarting", failure.task_id, "tasks keep stopping", failure.message or "tasks stopping")
    state = failure.details.get("state") or failure.message or failure.details
    latest_event = evidence.service_events[0] if evidence.service_events else ""
    return make_diagnosis(
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
    return make_diagnosis(
        "stale_image",
        task_id,
        f"task {short_id(task_id)} runs an older image than the ECR tag",
        f"running {digest}, ECR tag points at {registry}",
    )


def diagnose(failure: Failure, evidence: Evidence | None = None, suite: SuiteProfile = NO_SUITE) -> Diagnosis:
    """Name the most specific cause of ``failure`` that ``evidence`` supports (see module docstring)."""
    evidence = evidence or Evidence()
    if failure.security:
        return make_diagnosis(
            "permission_regression",
            failure.task_id,
            f"security check {failure.check or '?'} failed: access that must be denied was granted",
            failure.message or failure.check,
        )
    if failure.kind == NO_ANSWER:
        return make_diagnosis(
            NO_ANSWER,
            failure.task_id,
            failure.message or f"{failure.details.get('request', 'a request')}: no HTTP answer",
            f"check {failure.check or '?'} on task {short_id(failure.task_id)}: "
            f"{failure.message or failure.details.get('request', 'no HTTP answer')}",
        )
    found = _arch(failure, evidence) or _from_kind(failure, evidence) or _named_by_the_check(failure, suite)
    if found:
        return found
    if failure.kind != "check_failed":
        return _lifecycle(failure, evidence, suite)
    status = str(failure.details.get("status") or "")
    # A 4xx is the service answering on purpose: a traceback in the logs does not explain it.
    server_error = not status.isdigit() or int(status) >= 500
    found = (_from_logs(failure, evidence, suite) if server_error else None) or _stale_from_digests(failure, evidence)
    if found:
        return found
    return make_diagnosis(
        "contract_violation",
        failure.task_id,
        f"check {failure.check or '?'} failed",
        failure.message or "no message",
    )


def diagnose_all(failures: Iterable[Failure], evidence: Evidence | None = None,
                 suite: SuiteProfile = NO_SUITE) -> list[Diagnosis]:
    """Diagnose each failure; identical diagnoses (same category, task and evidence) are listed once,
    and a suite cause absorbs the contract violations it declares as its consequences on the same task
    (``SuiteCause.absorbs``): one cause, not a cause and its symptoms."""
    pairs = [(failure, diagnose(failure, evidence, suite)) for failure in failures]
    absorbing = [(found.task_id, cause) for _failure, found in pairs
                 if (cause := suite.cause(found.category)) is not None]
    seen: set[tuple[str, str | None, str]] = set()
    result: list[Diagnosis] = []
    for failure, found in pairs:
        consequence = found.category == "contract_violation" and any(
            task_id == found.task_id and cause.absorbs(failure.check, failure.details.get("status"))
            for task_id, cause in absorbing)
        key = (found.category, found.task_id, found.evidence)
        if key not in seen and not consequence:
            seen.add(key)
            result.append(found)
    return result
