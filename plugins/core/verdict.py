"""The machine verdict (``verdict.json``) and the human summary (markdown) of one run.

verdict.json fields
-------------------
- ``verdict``: ``"pass"`` (every check passed), ``"fail"`` (a check failed or the deployment
  failed), or ``"error"`` (the harness could not verify the deployment, or was misused).
- ``exit_code``: the process exit code that goes with it: ``0`` pass; ``1`` a check or the
  deploy failed; ``6`` could not verify (target unreachable, AWS errors, checks that errored,
  nothing ran); ``4`` usage error (bad options or configuration).
- ``started_at``: when the run started, UTC ISO-8601 with ``Z`` (``2025-01-31T12:00:00Z``).
- ``duration_s``: wall-clock seconds of the run, rounded to 0.01.
- ``target``: what was verified: ``region``, ``cluster``, ``service``, ``deployment_id`` (the
  ECS PRIMARY deployment id), ``task_definition`` (ARN or family:revision), ``image_digest``
  (the digest the deployment was expected to run). Unknown values are ``null``.
- ``tasks``: the tasks checked: ``task_id``, ``ip`` (the address the checks used),
  ``image_digest`` (what the task runs), ``started_at`` (UTC ISO with ``Z`` or ``null``).
- ``checks``: one entry per check and task: ``name``, ``task_id`` (``null`` for a check of the
  whole service), ``outcome`` (``"passed"``, ``"failed"``, ``"error"`` or ``"skipped"``),
  ``duration_s``, ``message`` (why it failed; empty when it passed).
- ``diagnoses``: one entry per named cause: ``category`` (see ``categories.CATEGORIES``),
  ``task_id``, ``summary``, ``evidence`` (one line), ``next_step``.
- ``warnings``: sentences about things that did not fail the run (task definition lint...).
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
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from plugins.core.categories import NEXT_STEPS, NOT_VERIFIED_CATEGORIES, Diagnosis, diagnose_not_verified
from plugins.core.redact import SecretRegistry, scrub_patterns

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
    outcome: Mapping[str, Any] | None = None,
    diagnoses: Iterable[DiagnosisRecord | Any] = (),
    lint_warnings: Iterable[str] = (),
    strict_lint: bool = False,
    interrupted: int | None = None,
    internal_error: str | None = None,
    usage_error: bool = False,
    deployment_action_refused: str | None = None,
) -> Decision:
    """The one verdict of a run, from everything it saw (pure).

    ``outcome`` is the preflight's ``HarnessOutcome.to_dict()`` (None when the deploy
    settled); ``diagnoses`` the evidence-based ones for failures. In order: a harness
    error, a usage error, an interruption (its own exit code), could-not-verify (each
    cause its own category), any failure (deploy or check), strict lint, checks that
    errored or nothing that passed, else pass. A failed check outranks an errored one:
    one proven breakage is enough to fail the deploy.
    """
    found = [_record(d) for d in diagnoses]
    outcomes = [check["outcome"] for check in checks]
    if internal_error is not None:
        harness = diagnose_not_verified("harness_error", internal_error)
        return Decision("error", EXIT_NOT_VERIFIED, (*found, _record(harness)))
    if usage_error:
        return Decision("error", EXIT_USAGE, tuple(found))
    if interrupted is not None:
        return Decision("error", interrupted, tuple(found))
    if outcome is not None and outcome.get("exit_code") == EXIT_NOT_VERIFIED:
        if outcome.get("kind") == "deadline" and found:  # the evidence says why it never settled
            return Decision("error", EXIT_NOT_VERIFIED, tuple(found))
        cause = diagnose_not_verified(str(outcome.get("kind")), str(outcome.get("message", "")),
                                      outcome.get("evidence") or ())
        return Decision("error", EXIT_NOT_VERIFIED, (_record(cause),))
    if outcome is not None or "failed" in outcomes:
        return Decision("fail", EXIT_FAILED, tuple(found))
    warnings = list(lint_warnings)
    if strict_lint and warnings:
        lint = Diagnosis("task_definition_lint", None, f"--strict-lint: {len(warnings)} task definition warning(s)",
                         warnings[0], NEXT_STEPS["task_definition_lint"])
        return Decision("fail", EXIT_FAILED, (*found, _record(lint)))
    if "error" in outcomes and any(d["category"] in NOT_VERIFIED_CATEGORIES for d in found):
        return Decision("error", EXIT_NOT_VERIFIED, tuple(found))  # e.g. task_stopped: it names the cause
    if "error" in outcomes or "passed" not in outcomes:
        errored = next((check for check in checks if check["outcome"] == "error"), None)
        evidence = f"{errored['name']}: {errored['message']}" if errored else "no check passed or failed"
        summary = (f"{outcomes.count('error')} check(s) could not run" if errored
                   else "no check ran (all skipped or deselected)")
        cause = Diagnosis("checks_errored", errored["task_id"] if errored else None, summary, evidence,
                          NEXT_STEPS["checks_errored"])
        return Decision("error", EXIT_NOT_VERIFIED, (*found, _record(cause)))
    if deployment_action_refused is not None:
        refused = diagnose_not_verified("hook_action_failed", deployment_action_refused)
        return Decision("error", EXIT_NOT_VERIFIED, (*found, _record(refused)))
    return Decision("pass", EXIT_PASS, tuple(found))


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
) -> Verdict:
    """Assemble a ``Verdict`` from a ``Decision`` (by default ``decide(checks, diagnoses=diagnoses)``)."""
    decision = decision or decide(checks, diagnoses=diagnoses)
    return Verdict(
        verdict=decision.verdict,
        exit_code=decision.exit_code,
        started_at=utc_iso(started_at),
        duration_s=round(float(duration_s), 2),
        target=target,
        tasks=list(tasks),
        checks=list(checks),
        diagnoses=list(decision.diagnoses),
        warnings=[str(w) for w in warnings],
    )


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


def render_summary(verdict: Verdict) -> str:
    """Markdown for people: headline, task x check grid, failures, diagnoses, warnings."""
    target = verdict["target"]
    name = verdict["verdict"]
    headline = (
        f"## {_ICON[name]} {_HEADLINE[name]}: {_md(target.get('service') or '?')}, "
        f"deployment {_md(target.get('deployment_id') or '?')} ({verdict['duration_s']:.1f} s)"
    )
    lines = [headline, ""]
    checks = verdict["checks"]
    counts = {o: sum(1 for c in checks if c["outcome"] == o) for o in ("passed", "failed", "error", "skipped")}
    lines.append(
        f"Cluster {_code(target.get('cluster') or '?')}, "
        f"task definition {_code(target.get('task_definition') or '?')}, "
        f"image {_code(target.get('image_digest') or '?')}; {len(verdict['tasks'])} task(s), "
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
        f"{counts['skipped']} skipped; exit code {verdict['exit_code']}."
    )
    lines += ["", *_grid(verdict)]
    if verdict["tasks"]:
        lines += ["", "| task | ip | image | started |", "|---|---|---|---|"]
        for task in verdict["tasks"]:
            lines.append(
                f"| {_code(task['task_id'])} | {_md(task.get('ip') or '?')} | {_code(task.get('image_digest') or '?')} "
                f"| {_md(task.get('started_at') or '?')} |"
            )
    problems = [c for c in checks if c["outcome"] in ("failed", "error")]
    if problems:
        lines += ["", "### Failures", ""]
        for check in problems:
            lines.append(
                f"- {_CELL[check['outcome']]} **{_md(check['name'])}** ({_short(check['task_id'])}): "
                f"{_md(check['message'])}"
            )
    if verdict["diagnoses"]:
        lines += ["", "### Diagnosis", ""]
        for found in verdict["diagnoses"]:
            lines += [
                f"- **[{found['category']}]** {_md(found['summary'])} (task {_short(found['task_id'])})",
                f"  - evidence: {_code(found['evidence'])}",
                f"  - next step: {_md(found['next_step'])}",
            ]
    gate = verdict.get("deployment_gate")
    if gate:
        hook = gate["paused_hook"]
        lines += ["", "### Deployment gate (blue/green)", "",
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
    rollback = verdict.get("rollback")
    if rollback:
        failed, to = rollback["failed"], rollback["to"]
        lines += ["", "### Rollback (--on-fail rollback)", "",
                  f"- **{_md(rollback['status'])}**: {_md(rollback['message'])}",
                  f"- failed: deployment {_code(failed.get('deployment_id') or '?')}, "
                  f"{_code(failed.get('task_definition') or '?')}",
                  f"- back to: deployment {_code(to.get('deployment_id') or '?')}, "
                  f"{_code(to.get('task_definition') or '?')}"]
    if verdict["warnings"]:
        lines += ["", "### Warnings", ""]
        lines += [f"- ⚠️ {_md(w)}" for w in verdict["warnings"]]
    return "\n".join(lines) + "\n"


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
    if path is not None:
        _write_atomically(Path(path), text)
    if github_step_summary:
        with open(github_step_summary, "a", encoding="utf-8") as out:
            out.write(text)
    return text
