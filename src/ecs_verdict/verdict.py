"""The machine verdict (``verdict.json``) and the human summary (markdown) of one run.

verdict.json fields
-------------------
- ``verdict``: ``"pass"`` (every check passed), ``"fail"`` (a check failed or the deployment
  failed), or ``"error"`` (the harness could not verify the deployment, or was misused).
- ``exit_code``: the process exit code that goes with it: ``0`` pass; ``1`` a check or the
  deploy failed; ``6`` could not verify (target unreachable, a request with no HTTP answer after
  its retries, AWS errors, checks that errored, nothing ran); ``4`` usage error (bad options or configuration).
- ``started_at``: when the run started, UTC ISO-8601 with ``Z`` (``2025-01-31T12:00:00Z``).
- ``duration_s``: wall-clock seconds of the run, rounded to 0.01.
- ``target``: what was verified: ``region``, ``cluster``, ``service``, ``deployment_id`` (the
  ECS PRIMARY deployment id), ``task_definition`` (ARN or family:revision), ``image_digest``
  (the digest the deployment was expected to run). Unknown values are ``null``.
- ``tasks``: the tasks checked: ``task_id``, ``ip`` (the address the checks used),
  ``image_digest`` (what the task runs), ``started_at`` (UTC ISO with ``Z`` or ``null``).
- ``checks``: one entry per check and task: ``name``, ``task_id`` (``null`` for a check of the
  whole service), ``outcome`` (``"passed"``, ``"failed"``, ``"error"`` or ``"skipped"``),
  ``duration_s``, ``message`` (why it failed; empty when it passed), and for a check that
  could not be verified for a known reason its ``category`` (``"no_answer"``: a request got no
  HTTP answer after its retries; the row's outcome is then ``"error"``).
- ``listeners`` (only for a service behind a load balancer, or with ``--lb-url``): each listener
  the read-only checks also went through, a target of its own in ``checks`` (``task_id`` ``"lb"``
  for production, ``"lb-test"`` for the blue/green test listener): ``target_id``, ``kind`` (``"load
  balancer"``), ``role`` (``production`` or ``test``), ``url`` and ``url_from`` (its DNS name or
  ``--lb-url``), ``protocol``, ``port``, ``listener_arn``, ``load_balancer_arn``, ``dns_name``,
  ``rule_arn``, ``rule`` (``"default rule"``, ``"rule 10 (path-pattern /api/*)"``), ``forwards_to``
  (target group ARNs) and ``service_target_group`` (where it should forward). ``null`` where unknown.
- ``diagnoses``: one entry per named cause and task: ``category`` (see ``categories.CATEGORIES``),
  ``task_id``, ``summary``, ``evidence`` (one line), ``next_step``.
- ``causes``: the diagnoses merged, one entry per cause (``causes.cause_key``: same category,
  summary and evidence once task ids are taken out): ``category``, ``summary``, ``evidence``
  and ``next_step`` (of the first task it was found on), ``task_ids`` (every task it was seen
  on; empty for a cause of the whole service) and ``links`` (``kind``, ``title``, ``url``: the
  tasks' CloudWatch log streams, stopped tasks' ECS pages, the ECS service and its service
  deployment; see ``console_links``).
- ``links``: the run's own console links (the ECS service, its service deployment).
- ``warnings``: sentences about things that did not fail the run (task definition lint...).
- ``http_retries`` (written by the pytest layer): the run's HTTP retries, every task lane's and
  xdist worker's together: ``retries``, ``requests_retried``, ``unanswered``, ``limit`` (the budget).
- ``deployment_gate`` (``--continue-deployment`` only): the service deployment, the PAUSE hook
  found (``paused_hook``: ``hook_id``, ``stage``, ``expires_at``, ``timeout_action``), each
  ``actions`` entry (``hook_id``, ``stage``, ``action`` CONTINUE or ROLLBACK, ``at``, ``accepted``,
  ``error``), and ``final_status`` / ``final_stage`` of the deployment when the run stopped following it.
- ``rollback`` (``--on-fail rollback`` only): ``status`` (stable, not_stable, refused, not_started),
  ``message``, the ``failed`` and the ``to`` deployment (``deployment_id``, ``task_definition``),
  ``found_in`` (where the previous revision was found), ``started_at`` and ``finished_at``.

Every string is redacted through the run's ``SecretRegistry`` (and credential-shaped text
masked) before it is written; files are replaced atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from dataclasses import dataclass, replace
from typing import Any, Literal, NotRequired, TypedDict

from ecs_verdict.categories import (NEXT_STEPS, NO_ANSWER, NOT_VERIFIED_CATEGORIES, Diagnosis, diagnose_not_verified,
                                     make_diagnosis)
from ecs_verdict.causes import CauseRecord, merge_causes, tasks_phrase
from ecs_verdict.console_links import ConsoleContext, LinkRecord, service_links
from ecs_verdict.errors import HarnessOutcome
from ecs_verdict.coverage import LeftOut, unchecked_tasks
from ecs_verdict.kinds import Kind
from ecs_verdict.redact import SecretRegistry, scrub_patterns
from ecs_verdict.suite import NO_SUITE, SuiteProfile

VerdictName = Literal["pass", "fail", "error"]
Outcome = Literal["passed", "failed", "error", "skipped"]

EXIT_PASS = 0
EXIT_FAILED = 1
EXIT_USAGE = 4
EXIT_NOT_VERIFIED = 6

_CELL = {"passed": "✅", "failed": "❌", "error": "⚠️", "skipped": "–"}
_HEADLINE = {"pass": "PASS", "fail": "FAIL", "error": "COULD NOT VERIFY"}
_ICON = {"pass": "✅", "fail": "❌", "error": "⚠️"}
SHORT_TASK_ID = 8
# GitHub takes 1 MiB of step summary per step; stay well under, so other steps' summaries fit too.
SUMMARY_LIMIT_BYTES = 512 * 1024


class TargetRecord(TypedDict):
    region: str | None
    cluster: str | None
    service: str | None
    deployment_id: str | None
    task_definition: str | None
    image_digest: str | None


class TaskRecord(TypedDict):
    task_id: str
    ip: str | None
    image_digest: str | None
    started_at: str | None


class CheckRecord(TypedDict):
    name: str
    task_id: str | None
    outcome: Outcome
    duration_s: float
    message: str
    category: NotRequired[str]  # why an "error" row could not be verified, e.g. NO_ANSWER


class DiagnosisRecord(TypedDict):
    category: str
    task_id: str | None
    summary: str
    evidence: str
    next_step: str


class Verdict(TypedDict):
    verdict: VerdictName
    exit_code: int
    started_at: str
    duration_s: float
    target: TargetRecord
    tasks: list[TaskRecord]
    checks: list[CheckRecord]
    diagnoses: list[DiagnosisRecord]
    causes: list[CauseRecord]
    links: list[LinkRecord]
    warnings: list[str]
    deployment_gate: NotRequired[dict[str, Any]]  # blue_green.GateRecord.to_dict()
    rollback: NotRequired[dict[str, Any]]  # rollback.RollbackRecord.to_dict()


def utc_iso(moment: datetime) -> str:
    """``2025-01-31T12:00:00Z`` (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Decision:
    """What a run proved: the verdict, the exit code that goes with it, and why."""

    verdict: VerdictName
    exit_code: int
    diagnoses: tuple[DiagnosisRecord, ...] = ()


def decide(
    checks: Iterable[CheckRecord],
    *,
    outcome: HarnessOutcome | None = None,
    diagnoses: Iterable[DiagnosisRecord | Any] = (),
    lint_warnings: Iterable[str] = (),
    strict_lint: bool = False,
    interrupted: int | None = None,
    internal_error: str | None = None,
    usage_error: bool = False,
    deployment_action_refused: str | None = None,
    task_ids: Iterable[str] = (),
    left_out: Iterable[LeftOut] = (),
    suite: SuiteProfile = NO_SUITE,
) -> Decision:
    """The one verdict of a run, from everything it saw (pure).

    ``outcome`` is the preflight's ``HarnessOutcome`` (None when the deploy
    settled); ``diagnoses`` the evidence-based ones for failures. In order: a harness
    error, a usage error, an interruption (its own exit code), could-not-verify (each
    cause its own category), any failure (deploy or check), strict lint, checks that
    errored, a task of ``task_ids`` no check passed on or no check passed at all
    (``no_checks_ran``: ``left_out`` says why), else pass. A failed check outranks an
    errored one: one proven breakage is enough to fail the deploy. A check whose request got
    no HTTP answer (category ``no_answer``) is could-not-verify for that check on that task,
    named as such (from ``diagnoses``, else from its row), never a failure. ``suite``: its causes that mean
    could-not-verify count like the harness's own, and its own next step for a generic category replaces the
    generic one.
    """
    decision = _decide(checks, outcome=outcome, diagnoses=diagnoses, lint_warnings=lint_warnings,
                       strict_lint=strict_lint, interrupted=interrupted, internal_error=internal_error,
                       usage_error=usage_error, deployment_action_refused=deployment_action_refused,
                       task_ids=task_ids, left_out=left_out,
                       not_verified=NOT_VERIFIED_CATEGORIES | suite.not_verified_categories)
    return replace(decision, diagnoses=tuple(_with_suite_step(d, suite) for d in decision.diagnoses))


def _with_suite_step(diagnosis: DiagnosisRecord, suite: SuiteProfile) -> DiagnosisRecord:
    """The suite's own next step for a generic category, where the diagnosis gives the generic one."""
    own = suite.next_steps.get(diagnosis["category"])
    if own is None or diagnosis["next_step"] != NEXT_STEPS.get(diagnosis["category"]):
        return diagnosis
    return DiagnosisRecord(**{**diagnosis, "next_step": own})


def _decide(
    checks: Iterable[CheckRecord],
    *,
    outcome: Mapping[str, Any] | None,
    diagnoses: Iterable[DiagnosisRecord | Any],
    lint_warnings: Iterable[str],
    strict_lint: bool,
    interrupted: int | None,
    internal_error: str | None,
    usage_error: bool,
    deployment_action_refused: str | None,
    task_ids: Iterable[str],
    left_out: Iterable[LeftOut],
    not_verified: frozenset[str],
) -> Decision:
    checks = list(checks)
    found = [_record(d) for d in diagnoses]
    found += _unanswered(checks, found)
    outcomes = [check["outcome"] for check in checks]
    if internal_error is not None:
        harness = diagnose_not_verified(Kind.HARNESS_ERROR, internal_error)
        return Decision("error", EXIT_NOT_VERIFIED, (*found, _record(harness)))
    if usage_error:
        return Decision("error", EXIT_USAGE, tuple(found))
    if interrupted is not None:
        return Decision("error", interrupted, tuple(found))
    if outcome is not None and outcome.could_not_verify:
        if outcome.kind is Kind.DEADLINE and found:  # the evidence says why it never settled
            return Decision("error", EXIT_NOT_VERIFIED, tuple(found))
        cause = diagnose_not_verified(outcome.kind, outcome.message, outcome.evidence)
        return Decision("error", EXIT_NOT_VERIFIED, (_record(cause),))
    if outcome is not None or "failed" in outcomes:
        return Decision("fail", EXIT_FAILED, tuple(found))
    warnings = list(lint_warnings)
    if strict_lint and warnings:
        lint = Diagnosis("task_definition_lint", None, f"--strict-lint: {len(warnings)} task definition warning(s)",
                         warnings[0], NEXT_STEPS["task_definition_lint"])
        return Decision("fail", EXIT_FAILED, (*found, _record(lint)))
    unproven = _not_proven(checks, list(task_ids), list(left_out), found, not_verified)
    if unproven or any(check.get("category") == NO_ANSWER for check in checks):
        return Decision("error", EXIT_NOT_VERIFIED, (*found, *(_record(cause) for cause in unproven)))
    if any(d["category"] in not_verified for d in found):
        return Decision("error", EXIT_NOT_VERIFIED, tuple(found))  # e.g. task_stopped: it names the cause
    if deployment_action_refused is not None:
        refused = diagnose_not_verified(Kind.HOOK_ACTION_FAILED, deployment_action_refused)
        return Decision("error", EXIT_NOT_VERIFIED, (*found, _record(refused)))
    return Decision("pass", EXIT_PASS, tuple(found))


def _unanswered(checks: list[CheckRecord], found: list[DiagnosisRecord]) -> list[DiagnosisRecord]:
    """A ``no_answer`` diagnosis for each task whose unanswered check no diagnosis names yet."""
    named = {d["task_id"] for d in found if d["category"] == NO_ANSWER}
    added: list[DiagnosisRecord] = []
    for check in checks:
        if check.get("category") == NO_ANSWER and check["task_id"] not in named:
            named.add(check["task_id"])
            summary = check["message"] or f"{check['name']}: a request got no HTTP answer"
            added.append(_record(make_diagnosis(NO_ANSWER, check["task_id"], summary, f"{check['name']}: {summary}")))
    return added


def _not_proven(checks: list[CheckRecord], task_ids: list[str], left_out: list[LeftOut],
                found: list[DiagnosisRecord], not_verified: frozenset[str] = NOT_VERIFIED_CATEGORIES) -> list[Diagnosis]:
    """Why a run without a failure still proves nothing: checks that errored, tasks no check ran on."""
    causes = []
    errored = [check for check in checks if check["outcome"] == "error"]
    # An unanswered request is named by its own no_answer diagnosis, a task ECS stopped by task_stopped;
    # other errors are the set-up's.
    named = {d["task_id"] for d in found if d["category"] in not_verified}
    set_up = [check for check in errored if check.get("category") != NO_ANSWER and check["task_id"] not in named]
    if set_up:
        first = set_up[0]
        causes.append(Diagnosis("checks_errored", first["task_id"], f"{len(set_up)} check(s) could not run",
                                f"{first['name']}: {first['message']}", NEXT_STEPS["checks_errored"]))
    # A task whose checks errored is named by checks_errored (or no_answer) already.
    unchecked = [task for task in unchecked_tasks(task_ids, checks, left_out)
                 if task.task_id not in {check["task_id"] for check in errored}]
    if unchecked:
        only = unchecked[0].task_id if len(unchecked) == 1 else None
        names = ", ".join(task_id[:SHORT_TASK_ID] for task_id in (u.task_id for u in unchecked))
        causes.append(make_diagnosis("no_checks_ran", only, f"no check ran on {len(unchecked)} of {len(task_ids)} "
                                     f"task(s) ({names}): not verified", "; ".join(u.describe() for u in unchecked)))
    elif not any(check["outcome"] == "passed" for check in checks) and not errored:
        reasons = sorted({item.reason for item in left_out}) or sorted(
            {f"skipped ({c['message']})" for c in checks if c["outcome"] == "skipped"})
        causes.append(make_diagnosis("no_checks_ran", None, "no check ran: everything was deselected or skipped, or "
                                     "the suite has no test", "; ".join(reasons) or "no test was collected"))
    return causes


def _record(diagnosis: DiagnosisRecord | Any) -> DiagnosisRecord:
    return diagnosis.as_dict() if hasattr(diagnosis, "as_dict") else DiagnosisRecord(**diagnosis)  # type: ignore


def build_verdict(
    *,
    started_at: datetime,
    duration_s: float,
    target: TargetRecord,
    tasks: list[TaskRecord],
    checks: list[CheckRecord],
    decision: Decision | None = None,
    diagnoses: Iterable[DiagnosisRecord | Any] = (),
    warnings: Iterable[str] = (),
    console: ConsoleContext | None = None,
) -> Verdict:
    """Assemble a ``Verdict`` from a ``Decision`` (by default ``decide(checks, diagnoses=diagnoses)``).

    ``console``: what the AWS console links need (none without it).
    """
    decision = decision or decide(checks, diagnoses=diagnoses)
    task_ids = [task["task_id"] for task in tasks]
    return Verdict(
        verdict=decision.verdict,
        exit_code=decision.exit_code,
        started_at=utc_iso(started_at),
        duration_s=round(float(duration_s), 2),
        target=target,
        tasks=list(tasks),
        checks=list(checks),
        diagnoses=list(decision.diagnoses),
        causes=merge_causes(decision.diagnoses, task_ids, console, _addresses(tasks)),
        links=service_links(console) if console is not None else [],
        warnings=[str(w) for w in warnings],
    )


def with_decision(verdict: Verdict, decision: Decision, console: ConsoleContext | None = None) -> Verdict:
    """``verdict`` under another decision (a harness error after it was built): diagnoses and causes follow."""
    task_ids = [task["task_id"] for task in verdict["tasks"]]
    return Verdict(**{**verdict, "verdict": decision.verdict, "exit_code": decision.exit_code,  # type: ignore[typeddict-item]
                      "diagnoses": list(decision.diagnoses),
                      "causes": merge_causes(decision.diagnoses, task_ids, console, _addresses(verdict["tasks"]))})


def _addresses(tasks: Iterable[TaskRecord]) -> list[str]:
    return [task["ip"] for task in tasks if task.get("ip")]


def _clean(registry: SecretRegistry, obj: Any) -> Any:
    redacted = registry.redact_obj(obj)
    return _scrub(redacted)


def _scrub(obj: Any) -> Any:
    if isinstance(obj, str):
        return scrub_patterns(obj)
    if isinstance(obj, Mapping):
        return {key: _scrub(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_scrub(item) for item in obj]
    return obj


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory, so os.replace is a rename on one filesystem: readers never see half a file.
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_verdict(path: str | os.PathLike[str], verdict: Verdict, registry: SecretRegistry) -> Path:
    """Redact ``verdict`` and write it as JSON to ``path`` atomically; returns the path."""
    target = Path(path)
    clean = _clean(registry, verdict)
    _write_atomically(target, json.dumps(clean, indent=2, ensure_ascii=False) + "\n")
    return target


def read_verdict(path: str | os.PathLike[str]) -> Verdict:
    """Load a verdict.json written by ``write_verdict``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --- the human summary -------------------------------------------------------------------------


def _md(text: object) -> str:
    """Text safe inside a markdown table cell or list item (one line, no stray pipes)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: object) -> str:
    return "`" + _md(text).replace("`", "'") + "`"


def _short(task_id: str | None) -> str:
    return task_id[:SHORT_TASK_ID] if task_id else "service"


def _row_name(check: CheckRecord) -> str:
    """The check's name without a ``[task-id]`` parameter, so one row holds every task."""
    name, task_id = check["name"], check["task_id"]
    if task_id and name.endswith("]") and "[" in name:
        base, _, param = name[:-1].rpartition("[")
        if param and (task_id.startswith(param) or param.startswith(task_id[:SHORT_TASK_ID]) or task_id in param):
            return base
    return name


def _grid(verdict: Verdict) -> list[str]:
    checks = verdict["checks"]
    if not checks:
        return ["_No checks ran._"]
    columns: list[str | None] = [t["task_id"] for t in verdict["tasks"]]
    for check in checks:
        if check["task_id"] not in columns:
            columns.append(check["task_id"])
    rows: dict[str, dict[str | None, str]] = {}
    for check in checks:
        cells = rows.setdefault(_row_name(check), {})
        previous = cells.get(check["task_id"])
        # Two results in one cell (a rerun): the worse one shows.
        if previous is None or _rank(check["outcome"]) > _rank(previous):
            cells[check["task_id"]] = check["outcome"]
    header = "| check | " + " | ".join(_code(_short(c)) for c in columns) + " |"
    lines = [header, "|---|" + "---|" * len(columns)]
    for name, cells in rows.items():
        marks = [_CELL.get(cells.get(column, "skipped"), "–") for column in columns]
        lines.append(f"| {_md(name)} | " + " | ".join(marks) + " |")
    return lines


def _rank(outcome: str) -> int:
    return {"skipped": 0, "passed": 1, "error": 2, "failed": 3}.get(outcome, 0)


def render_summary(verdict: Verdict, limit_bytes: int = SUMMARY_LIMIT_BYTES) -> str:
    """Markdown for a person at 2 a.m., top-down: what was decided, why, then the detail.

    The verdict and the deployment (with its console links); each cause once, with its
    tasks, evidence, next step and links; the blue/green gate and the rollback, if any; the
    task x check grid; the tasks; warnings; and last the failures' full text, collapsed.
    Within ``limit_bytes`` (UTF-8): failures are left out from the end first, with a note.
    """
    head = [*_deployment_section(verdict), *_causes_section(verdict), *_gate_section(verdict),
            *_rollback_section(verdict), "", "### Checks", "", *_grid(verdict), *_listeners_section(verdict),
            *_tasks_section(verdict)]
    if verdict["warnings"]:
        head += ["", "### Warnings", ""]
        head += [f"- ⚠️ {_md(w)}" for w in verdict["warnings"]]
    text = "\n".join(head) + "\n"
    failures = [check for check in verdict["checks"] if check["outcome"] in ("failed", "error")]
    if not failures:
        return text if _size(text) <= limit_bytes else _cut(text, limit_bytes)
    opening = f"\n<details><summary>{len(failures)} failed or errored check(s): the full text</summary>\n\n"
    closing = "</details>\n"
    budget = limit_bytes - _size(text + opening + closing) - _size(_left_out_note(len(failures), limit_bytes))
    blocks: list[str] = []
    for check in failures:
        block = _failure_block(check)
        if _size(block) > budget:
            break
        budget -= _size(block)
        blocks.append(block)
    if budget < 0:  # not even the heading and the note fit: the summary's top is what counts
        return _cut(text, limit_bytes)
    left_out = len(failures) - len(blocks)
    note = _left_out_note(left_out, limit_bytes) if left_out else ""
    return text + opening + "".join(blocks) + note + closing


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _failure_block(check: CheckRecord) -> str:
    text = str(check["message"]).replace("```", "'''").replace(" | ", "\n")
    lines = [f"- {_CELL[check['outcome']]} **{_md(check['name'])}** ({_short(check['task_id'])})", "",
             "  ```", *(f"  {line}" for line in text.splitlines() or [""]), "  ```", ""]
    return "\n".join(lines) + "\n"


def _left_out_note(left_out: int, limit_bytes: int) -> str:
    return (f"_{left_out} more left out to keep summary.md under {limit_bytes // 1024} KiB (GitHub shows 1 MiB "
            "per step); every one is in verdict.json and junit.xml._\n\n")


def _cut(text: str, limit_bytes: int) -> str:
    """The first lines of ``text`` that fit in ``limit_bytes`` with a note saying the rest is in verdict.json."""
    note = f"\n_summary.md cut at {limit_bytes // 1024} KiB (GitHub shows 1 MiB per step); verdict.json has it all._\n"
    room = limit_bytes - len(note.encode("utf-8"))
    kept = text.encode("utf-8")[:max(room, 0)].decode("utf-8", errors="ignore")
    return kept[: kept.rfind("\n") + 1] + note


def _deployment_section(verdict: Verdict) -> list[str]:
    target = verdict["target"]
    name = verdict["verdict"]
    checks = verdict["checks"]
    counts = {o: sum(1 for c in checks if c["outcome"] == o) for o in ("passed", "failed", "error", "skipped")}
    lines = [
        f"## {_ICON[name]} {_HEADLINE[name]}: {_md(target.get('service') or '?')}, "
        f"deployment {_md(target.get('deployment_id') or '?')} ({verdict['duration_s']:.1f} s)",
        "",
        f"Cluster {_code(target.get('cluster') or '?')}, "
        f"task definition {_code(target.get('task_definition') or '?')}, "
        f"image {_code(target.get('image_digest') or '?')}; {len(verdict['tasks'])} task(s), "
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
        f"{counts['skipped']} skipped; exit code {verdict['exit_code']}.",
    ]
    if verdict.get("links"):
        lines += ["", "In the AWS console: " + _links(verdict["links"])]
    return lines


def _links(links: list[LinkRecord]) -> str:
    return " · ".join(f"[{_md(link['title']).replace(']', ')').replace('[', '(')}]({link['url']})" for link in links)


def _causes_section(verdict: Verdict) -> list[str]:
    causes = verdict.get("causes") or []
    if not causes:
        return []
    run_tasks = [task["task_id"] for task in verdict["tasks"]]
    shown_above = {link["url"] for link in verdict.get("links") or []}
    lines = ["", f"### Why: {len(causes)} cause{'s' if len(causes) != 1 else ''}", ""]
    said: dict[str, int] = {}  # next step -> the cause that said it first: each step is said once
    for number, cause in enumerate(causes, 1):
        where = tasks_phrase(cause["task_ids"], run_tasks)
        step = cause["next_step"]
        lines += [f"{number}. **[{cause['category']}]** {_md(cause['summary'])}" + (f" ({_md(where)})" if where else ""),
                  f"   - evidence: {_code(cause['evidence'])}",
                  f"   - next step: {_md(step) if step not in said else f'as for {said[step]}. above'}"]
        said.setdefault(step, number)
        # The service's own links are in the heading; a cause of the whole service shows them anyway.
        links = [link for link in cause["links"] if link["url"] not in shown_above] or cause["links"]
        if links:
            lines.append(f"   - links: {_links(links)}")
    return lines


def _gate_section(verdict: Verdict) -> list[str]:
    gate = verdict.get("deployment_gate")
    if not gate:
        return []
    hook = gate["paused_hook"]
    lines = ["", "### Deployment gate (blue/green)", "",
             f"Service deployment {_code(gate['service_deployment_arn'])} paused at {_md(hook.get('stage') or '?')} "
             f"(hook {_code(hook['hook_id'])}, timeout action {_md(hook.get('timeout_action') or '?')}).", ""]
    for action in gate["actions"]:
        done = "done" if action["accepted"] else f"refused: {_md(action.get('error') or '')}"
        lines.append(f"- {action['action']} hook {_code(action['hook_id'])} at {_md(action.get('stage') or '?')}, "
                     f"{_md(action['at'])}: {done}")
    if not gate["actions"]:
        lines.append("- no action: the hook was left paused")
    if gate.get("final_status"):
        lines.append(f"- then: {_md(gate['final_status'])} at {_md(gate.get('final_stage') or '-')}")
    return lines


def _rollback_section(verdict: Verdict) -> list[str]:
    rollback = verdict.get("rollback")
    if not rollback:
        return []
    failed, to = rollback["failed"], rollback["to"]
    return ["", "### Rollback (--on-fail rollback)", "",
            f"- **{_md(rollback['status'])}**: {_md(rollback['message'])}",
            f"- failed: deployment {_code(failed.get('deployment_id') or '?')}, "
            f"{_code(failed.get('task_definition') or '?')}",
            f"- back to: deployment {_code(to.get('deployment_id') or '?')}, "
            f"{_code(to.get('task_definition') or '?')}"]


def _listeners_section(verdict: Verdict) -> list[str]:
    """Which grid columns are a load balancer's listeners, and where each one forwards."""
    listeners = verdict.get("listeners") or []  # type: ignore[typeddict-item]
    lines = [""] if listeners else []
    for item in listeners:
        where = f" {item.get('protocol')}:{item.get('port')}" if item.get("protocol") else ""
        forwards = ", ".join(_code(arn.split(":", 5)[-1]) for arn in item.get("forwards_to") or [])
        rule = f", {_md(item['rule'])} forwarding to {forwards or 'nothing'}" if item.get("rule") else ""
        problem = f"; ⚠️ {_md(item['problem'])}" if item.get("problem") else ""
        lines.append(f"- {_code(item['target_id'])}: through the load balancer's {item['role']} listener"
                     f"{_md(where)} at {_md(item['url'])} ({_md(item.get('url_from') or '')}){rule}{problem}; "
                     "read-only checks only")
    return lines


def _tasks_section(verdict: Verdict) -> list[str]:
    if not verdict["tasks"]:
        return []
    lines = ["", f"<details><summary>The {len(verdict['tasks'])} task(s): address, image, start</summary>", "",
             "| task | ip | image | started |", "|---|---|---|---|"]
    for task in verdict["tasks"]:
        lines.append(
            f"| {_code(task['task_id'])} | {_md(task.get('ip') or '?')} | {_code(task.get('image_digest') or '?')} "
            f"| {_md(task.get('started_at') or '?')} |"
        )
    return [*lines, "", "</details>"]


def write_summary(
    path: str | os.PathLike[str] | None,
    verdict: Verdict,
    registry: SecretRegistry,
    github_step_summary: str | None = None,
) -> str:
    """Render, redact and write the summary to ``path`` (atomic) and append it to ``github_step_summary``.

    Pass ``os.environ.get("GITHUB_STEP_SUMMARY")`` as the last argument to publish it on GitHub Actions.
    Returns the redacted markdown.
    """
    text = scrub_patterns(registry.redact(render_summary(verdict)))
    if len(text.encode("utf-8")) > SUMMARY_LIMIT_BYTES:  # a redaction made it longer: cut, never overflow
        text = _cut(text, SUMMARY_LIMIT_BYTES)
    if path is not None:
        _write_atomically(Path(path), text)
    if github_step_summary:
        with open(github_step_summary, "a", encoding="utf-8") as out:
            out.write(text)
    return text
