"""The GitHub Action's gate (``action.yml``): run the smoke suite, then publish its verdict to the job.

``python -m ecs_verdict.github_action`` reads the action's inputs from ``INPUT_*`` environment
variables (``action.yml`` maps each ``${{ inputs.x }}`` there, never into a script), runs
the suite with them as the harness's options (with ``run-in-vpc: true``,
``python -m ecs_verdict.remote``, which runs the image's suite as a one-off Fargate task in the
service's VPC and brings its reports back: docs/private-gate.md), and then, whatever happened:

- writes the outputs ``verdict``, ``exit-code``, ``deployment-id`` and ``report-dir`` to
  ``$GITHUB_OUTPUT``;
- appends ``summary.md`` to ``$GITHUB_STEP_SUMMARY`` once: the harness appends it itself when
  that variable is set, so the harness runs without it;
- prints ``::error`` annotations for the verdict's causes (each once, with the tasks it was
  seen on and its first console links) and ``::warning`` ones for its warnings, the most important first, at most :data:`MAX_ANNOTATIONS` of each (all GitHub
  shows per step) and one ``::notice`` saying how many were left out;
- exits with the harness's exit code, so the job fails on 1, 4 and 6.

The suite is the ``suite`` input: empty, the action's own (``pytest smoke`` in the action's
checkout, with its membership ledger under ``$RUNNER_TEMP``); otherwise a path in the caller's
checkout, relative to ``$GITHUB_WORKSPACE`` (a suite folder or the project holding it), run as
``pytest <path>`` from the workspace, so the caller's own ``pytest.ini`` (``smoke_suites``) and
``conftest.py`` apply. Its requirements are the install step's business (``suite-requirements``).

Standard library only, and nothing of the harness imported: it runs before anything could
tell why the harness would not start. Everything it prints comes from ``verdict.json`` and
``summary.md`` (which the harness has scrubbed of secrets) or from the action's inputs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# GitHub shows at most 10 error and 10 warning annotations of a step (and 50 of a job).
MAX_ANNOTATIONS = 10
MAX_MESSAGE_CHARS = 2000
DEFAULT_REPORT_DIR = "smoke-reports"
DEFAULT_SUITE = "smoke"  # the suite of the action's own checkout
# The harness's exit codes (README, "Exit codes"); restated so this module imports none of it.
EXIT_PASS, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_VERIFIED = 0, 1, 4, 6
EXIT_MEANING = {
    EXIT_PASS: "pass: promote",
    EXIT_FAILED: "the service or the deploy failed: block promotion, roll back",
    EXIT_USAGE: "usage error: fix the job (the harness's line above says how)",
    EXIT_NOT_VERIFIED: "could not verify: block promotion and ask a person; nothing is known about the release",
}
# Causes that concern the deployment as a whole (and every could-not-verify cause, which has no task):
# annotated before the causes of one task's failed checks. Security comes before all of them.
SECURITY_CATEGORIES = frozenset({"permission_regression"})
DEPLOY_CATEGORIES = frozenset({
    "deployment_rolled_back", "task_restarting", "stale_image", "arch_mismatch", "health_path_mismatch",
    "health_check_command", "not_stable", "lb_health_path_mismatch", "lb_target_timeout", "lb_target_unhealthy",
})
SECURITY_MARK = "SECURITY"
RANK_SECURITY, RANK_DEPLOYMENT, RANK_TASK, RANK_CHECK = range(4)
NOTE_PREFIX = "note: "
SHORT_TASK_ID = 8
TITLE_TASK_IDS = 4  # an annotation's title names this many tasks of a cause, then how many more
ANNOTATION_LINKS = 2  # console links in an annotation; summary.md has them all

Level = Literal["error", "warning", "notice"]


class InputError(ValueError):
    """An action input the gate cannot use; ``str()`` names the input and the fix."""


# --- inputs -> the harness's command line ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionInputs:
    """The action's inputs, parsed once. Empty text means "not given": the harness's own default applies."""

    cluster: str = ""
    service: str = ""
    region: str = ""
    expect_image_digest: str = ""
    expect_task_definition: str = ""
    environment: str = ""
    smoke_secret: str = ""
    read_only: bool = False
    canary: bool = False
    report_dir: str = DEFAULT_REPORT_DIR
    pytest_args: tuple[str, ...] = ()
    suite: str = ""  # empty: the action's own suite (its checkout's smoke/); else a path in the caller's workspace
    run_in_vpc: bool = False  # the private-service gate: the harness runs as a Fargate task in the service's VPC
    results_uri: str = ""
    task_definition: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ActionInputs:
        """``INPUT_CLUSTER``, ``INPUT_EXPECT_IMAGE_DIGEST``...: the input's name upper-cased, ``-`` as ``_``."""

        def text(name: str) -> str:
            return environ.get("INPUT_" + name.upper().replace("-", "_"), "").strip()

        try:
            pytest_args = tuple(shlex.split(text("pytest-args")))
        except ValueError as error:
            raise InputError(f"input pytest-args: {error}; quote it as a shell command line would") from None
        run_in_vpc = _boolean("run-in-vpc", text("run-in-vpc"))
        for name in ("results-uri", "task-definition"):
            if text(name) and not run_in_vpc:
                raise InputError(f"input {name} is for the private-service gate: set run-in-vpc: true, or drop it")
        if run_in_vpc and not text("results-uri"):
            raise InputError("input results-uri is required with run-in-vpc: true; give the S3 prefix the in-VPC run "
                             "uploads its reports to (the canary stack's output ResultsUri), e.g. s3://BUCKET/gate")
        return cls(
            cluster=text("cluster"), service=text("service"), region=text("region"),
            expect_image_digest=text("expect-image-digest"), expect_task_definition=text("expect-task-definition"),
            environment=text("environment"), smoke_secret=text("smoke-secret"),
            read_only=_boolean("read-only", text("read-only")), canary=_boolean("canary", text("canary")),
            report_dir=text("report-dir") or DEFAULT_REPORT_DIR, pytest_args=pytest_args, suite=text("suite"),
            run_in_vpc=run_in_vpc, results_uri=text("results-uri"), task_definition=text("task-definition"),
        )


def _boolean(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "false", ""):
        return lowered == "true"
    raise InputError(f"input {name}: {value!r} is not true or false")


def resolve_report_dir(report_dir: str, environ: Mapping[str, str]) -> Path:
    """A relative report-dir is the caller's, under ``$GITHUB_WORKSPACE``, not under the action's own folder."""
    path = Path(report_dir).expanduser()
    if not path.is_absolute():
        path = Path(environ.get("GITHUB_WORKSPACE") or os.getcwd()) / path
    return path


@dataclass(frozen=True, slots=True)
class SuiteRun:
    """Where the suite is and where pytest runs it from."""

    argument: str  # pytest's path argument
    cwd: Path | None  # None: this process's own folder
    own: bool  # True: the action's own suite, in its checkout (its --ledger applies)


def resolve_suite(inputs: ActionInputs, environ: Mapping[str, str]) -> SuiteRun:
    """The ``suite`` input as a run; ``InputError`` for a path that is not in the caller's checkout."""
    if not inputs.suite:
        action_path = environ.get("GITHUB_ACTION_PATH")
        return SuiteRun(DEFAULT_SUITE, Path(action_path) if action_path else None, own=True)
    if inputs.run_in_vpc:
        raise InputError("input suite: the private-service gate (run-in-vpc) runs the suite its task definition's "
                         "image holds; drop suite, or build the image with your suite (docs/adopting.md)")
    workspace = Path(environ.get("GITHUB_WORKSPACE") or os.getcwd())
    if inputs.suite.startswith("-"):  # pytest would read it as an option
        raise InputError(f"input suite: {inputs.suite!r} is an option, not a path; give the suite's folder, e.g. smoke")
    if not (workspace / inputs.suite).exists():
        raise InputError(f"input suite: {inputs.suite!r} is not in the workspace ({workspace}); give a path relative "
                         f"to the caller's checkout (after actions/checkout), e.g. smoke")
    return SuiteRun(inputs.suite, workspace, own=False)


def harness_command(inputs: ActionInputs, report_dir: Path, *, python: str = sys.executable,
                    ledger: Path | None = None, suite: str = DEFAULT_SUITE) -> list[str]:
    """``python -m pytest SUITE`` with one option per given input; ``pytest-args`` last, so they win.

    With ``run-in-vpc``: ``python -m ecs_verdict.remote`` with the target, the results and the task
    definition, then ``--`` and the rest, which the in-VPC ``pytest smoke`` gets (no ledger: the
    task keeps its own).
    """
    target = (("--ecs-cluster", inputs.cluster), ("--ecs-service", inputs.service), ("--aws-region", inputs.region))
    if inputs.run_in_vpc:
        command = [python, "-m", "ecs_verdict.remote", "--report-dir", str(report_dir)]
        remote = (*target, ("--results-uri", inputs.results_uri), ("--task-definition", inputs.task_definition))
        command += [part for flag, value in remote if value for part in (flag, value)]
        command.append("--")
        target, ledger = (), None
    else:
        command = [python, "-m", "pytest", suite, "--report-dir", str(report_dir)]
    for flag, value in (*target, ("--expect-image-digest", inputs.expect_image_digest),
                        ("--expect-task-definition", inputs.expect_task_definition),
                        ("--environment", inputs.environment), ("--smoke-secret", inputs.smoke_secret)):
        if value:
            command += [flag, value]
    if inputs.read_only:
        command.append("--read-only")
    if inputs.canary:
        command.append("--canary")
    if ledger is not None:
        command += ["--ledger", str(ledger)]
    return [*command, *inputs.pytest_args]


def harness_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The job's environment without ``GITHUB_STEP_SUMMARY``: the gate appends the summary, exactly once."""
    return {key: value for key, value in environ.items() if key != "GITHUB_STEP_SUMMARY"}


# --- annotations ------------------------------------------------------------------------------------


def escape_data(text: str) -> str:
    """A workflow command's message (GitHub's ``escapeData``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (GitHub's ``escapeProperty``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


@dataclass(frozen=True, slots=True)
class Annotation:
    level: Level
    title: str
    message: str

    def command(self) -> str:
        message = self.message if len(self.message) <= MAX_MESSAGE_CHARS else self.message[:MAX_MESSAGE_CHARS] + "…"
        return f"::{self.level} title={escape_property(self.title)}::{escape_data(message)}"


def _short(task_id: str | None) -> str:
    return f"task {task_id[:SHORT_TASK_ID]}" if task_id else "the service"


def _where(task_ids: Sequence[str], run_tasks: Sequence[str]) -> str:
    """``on 2 of 2 tasks: 2618a261, d4ff58d0`` (the harness's ``causes.tasks_phrase``, restated)."""
    if not task_ids:
        return "the service"
    shown = [task_id[:SHORT_TASK_ID] for task_id in task_ids[:TITLE_TASK_IDS]]
    more = len(task_ids) - len(shown)
    listed = ", ".join(shown) + (f" and {more} more" if more else "")
    if run_tasks and set(task_ids) <= set(run_tasks):
        return f"on {len(task_ids)} of {len(run_tasks)} task{'s' if len(run_tasks) != 1 else ''}: {listed}"
    return f"task{'s' if len(task_ids) > 1 else ''} {listed}"


def causes_of(verdict: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The verdict's merged ``causes``; a verdict written before there were any: one per diagnosis."""
    if "causes" in verdict:
        return [dict(cause) for cause in verdict.get("causes") or []]
    return [{**d, "task_ids": [d["task_id"]] if d.get("task_id") else [], "links": []}
            for d in verdict.get("diagnoses") or []]


def _cause_rank(cause: Mapping[str, Any]) -> int:
    category = cause.get("category")
    if category in SECURITY_CATEGORIES:
        return RANK_SECURITY
    if category in DEPLOY_CATEGORIES or not cause.get("task_ids"):
        return RANK_DEPLOYMENT
    return RANK_TASK


def _cause_annotation(cause: Mapping[str, Any], run_tasks: Sequence[str]) -> Annotation:
    where = _where(cause.get("task_ids") or [], run_tasks)
    links = "".join(f"\n{link.get('title')}: {link.get('url')}" for link in (cause.get("links") or [])[:ANNOTATION_LINKS])
    return Annotation("error", f"smoke [{cause.get('category')}] {where}",
                      f"{cause.get('summary', '')}\nevidence: {cause.get('evidence', '')}\n"
                      f"next step: {cause.get('next_step', '')}{links}")


def _check_rank(check: Mapping[str, Any]) -> int:
    # The contract marks a granted permission that must be denied "SECURITY:" in the failure itself.
    return RANK_SECURITY if SECURITY_MARK in str(check.get("message") or "") else RANK_CHECK


def _explains(diagnosis: Mapping[str, Any], check: Mapping[str, Any]) -> bool:
    """The diagnosis is this failure's own: same task, and it names the check or quotes its message."""
    if diagnosis.get("task_id") != check.get("task_id"):
        return False
    name = str(check.get("name") or "").split("[", 1)[0]
    summary, evidence = str(diagnosis.get("summary") or ""), str(diagnosis.get("evidence") or "")
    quoted = evidence.rstrip("…").strip()
    names_it = bool(name) and name in summary + evidence
    return names_it or (bool(quoted) and str(check.get("message") or "").startswith(quoted))


def error_annotations(verdict: Mapping[str, Any]) -> list[Annotation]:
    """Every cause (once, with its tasks: the verdict's ``causes``) and failure, most important first.

    Security (a ``permission_regression``, or a check whose failure says SECURITY), then
    the deployment's causes, then one task's, then the failed checks no diagnosis names:
    a task's diagnosis (say a ``code_error``) never hides another failure of that task.
    Within a rank the verdict's order stays.
    """
    diagnoses = list(verdict.get("diagnoses") or [])
    run_tasks = [str(task.get("task_id")) for task in verdict.get("tasks") or []]
    ranked: list[tuple[int, Annotation]] = [(_cause_rank(cause), _cause_annotation(cause, run_tasks))
                                            for cause in causes_of(verdict)]
    unexplained = [check for check in verdict.get("checks") or []
                   if check.get("outcome") in ("failed", "error") and not any(_explains(d, check) for d in diagnoses)]
    for group in _same_failures(unexplained, verdict.get("tasks") or []):
        first = group[0]
        task_ids = [str(check["task_id"]) for check in group if check.get("task_id")]
        where = _short(first.get("task_id")) if len(group) == 1 else _where(task_ids, run_tasks)
        name = first.get("name") if len(group) == 1 else str(first.get("name") or "").split("[", 1)[0]
        ranked.append((_check_rank(first), Annotation(
            "error", f"smoke check {first.get('outcome')}: {name} ({where})", str(first.get("message") or ""))))
    return [annotation for _, annotation in sorted(ranked, key=lambda pair: pair[0])]


def _same_failures(checks: Sequence[Mapping[str, Any]],
                   tasks: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Failed checks grouped when only their task differs: the same check, the same message but for the
    task's id and address (the harness's ``causes.cause_key`` rule, restated), in the verdict's order."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for check in checks:
        message = _without_tasks(str(check.get("message") or ""), tasks)
        key = (str(check.get("outcome")), str(check.get("name") or "").split("[", 1)[0], message)
        groups.setdefault(key, []).append(check)
    return list(groups.values())


def _without_tasks(text: str, tasks: Sequence[Mapping[str, Any]]) -> str:
    for task in tasks:
        task_id, ip = str(task.get("task_id") or ""), str(task.get("ip") or "")
        if task_id:
            text = text.replace(task_id, "<task>").replace(task_id[:SHORT_TASK_ID], "<task>")
        if ip:
            text = re.sub(rf"(?<![\w.]){re.escape(ip)}(?![\w])", "<task>", text)
    return text


def warning_annotations(verdict: Mapping[str, Any]) -> list[Annotation]:
    """The verdict's warnings: lint (and anything else that is not a note) first, then the notes."""
    warnings = [str(w) for w in verdict.get("warnings") or []]
    lint = [Annotation("warning", "smoke lint", w) for w in warnings if not w.startswith(NOTE_PREFIX)]
    notes = [Annotation("warning", "smoke note", w[len(NOTE_PREFIX):]) for w in warnings if w.startswith(NOTE_PREFIX)]
    return lint + notes


def annotation_lines(errors: Sequence[Annotation], warnings: Sequence[Annotation], *,
                     where: str = "summary.md", limit: int = MAX_ANNOTATIONS) -> list[str]:
    """The workflow commands: at most ``limit`` of each level, then one notice counting what was left out."""
    lines = [a.command() for a in errors[:limit]] + [a.command() for a in warnings[:limit]]
    left_errors, left_warnings = max(0, len(errors) - limit), max(0, len(warnings) - limit)
    if left_errors or left_warnings:
        counted = " and ".join(f"{count} {kind}{'' if count == 1 else 's'}"
                               for count, kind in ((left_errors, "error"), (left_warnings, "warning")) if count)
        lines.append(Annotation(
            "notice", "smoke gate",
            f"{counted} left out: GitHub shows {limit} of each per step. Every one is in the job summary "
            f"and {where}.").command())
    return lines


# --- the run's result -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateResult:
    verdict: str
    exit_code: int
    deployment_id: str
    report_dir: Path

    def outputs(self) -> dict[str, str]:
        return {"verdict": self.verdict, "exit-code": str(self.exit_code), "deployment-id": self.deployment_id,
                "report-dir": str(self.report_dir)}


def read_result(report_dir: Path, process_exit: int) -> tuple[GateResult, dict[str, Any] | None]:
    """The gate's result from ``verdict.json`` and the harness's exit code.

    The exit code is the process's. A run that exits 0 without a passing verdict.json (no
    verdict at all, or one that says otherwise) is never a pass: it takes the verdict's code,
    or 6 (could not verify). Without verdict.json the verdict is ``error``.
    """
    try:
        verdict = json.loads((report_dir / "verdict.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        verdict = None
    if not isinstance(verdict, dict):
        exit_code = process_exit if process_exit != EXIT_PASS else EXIT_NOT_VERIFIED
        return GateResult("error", exit_code, "", report_dir), None
    name = str(verdict.get("verdict") or "error")
    exit_code = process_exit
    if process_exit == EXIT_PASS and (name != "pass" or verdict.get("exit_code") != EXIT_PASS):
        recorded = verdict.get("exit_code")
        exit_code = recorded if isinstance(recorded, int) and recorded != EXIT_PASS else EXIT_NOT_VERIFIED
    deployment_id = str((verdict.get("target") or {}).get("deployment_id") or "")
    return GateResult(name, exit_code, deployment_id, report_dir), verdict


def gate_annotations(result: GateResult, verdict: Mapping[str, Any] | None, reason: str | None = None) -> list[str]:
    errors = error_annotations(verdict) if verdict is not None else []
    warnings = warning_annotations(verdict) if verdict is not None else []
    if result.exit_code != EXIT_PASS and not errors:
        # Nothing in the verdict says why (a usage error, a harness that died): the exit code must.
        meaning = EXIT_MEANING.get(result.exit_code, "the harness did not finish")
        missing = "" if verdict is not None else f"no verdict.json in {result.report_dir}; "
        errors = [Annotation("error", "smoke gate", reason or f"{missing}exit code {result.exit_code}: {meaning}")]
    return annotation_lines(errors, warnings, where=str(result.report_dir / "summary.md"))


def write_outputs(path: str | os.PathLike[str], outputs: Mapping[str, str]) -> None:
    """Append ``name=value`` lines to ``$GITHUB_OUTPUT`` (the delimiter form for a value with a line break)."""
    with open(path, "a", encoding="utf-8") as out:
        for name, value in outputs.items():
            if "\n" in value or "\r" in value:
                delimiter = f"ghadelimiter_{secrets.token_hex(8)}"
                out.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                out.write(f"{name}={value}\n")


def summary_text(result: GateResult, reason: str | None = None) -> str:
    """The harness's summary.md (already scrubbed), or a few lines saying there is none."""
    try:
        return (result.report_dir / "summary.md").read_text(encoding="utf-8")
    except OSError:
        meaning = EXIT_MEANING.get(result.exit_code, "the harness did not finish")
        why = reason or f"the harness wrote no `{result.report_dir / 'summary.md'}`; the job log says why"
        return f"## ⚠️ smoke gate: exit code {result.exit_code} ({meaning})\n\n{why}.\n"


def publish(result: GateResult, verdict: Mapping[str, Any] | None, environ: Mapping[str, str],
            out: Any = None, *, reason: str | None = None) -> None:
    """Outputs, the step summary and the annotations, in that order (each only where GitHub asks for it).

    ``reason``: why there is no verdict, when the gate knows better than the exit code.
    """
    out = out or sys.stdout
    if environ.get("GITHUB_OUTPUT"):
        write_outputs(environ["GITHUB_OUTPUT"], result.outputs())
    if environ.get("GITHUB_STEP_SUMMARY"):
        with open(environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
            summary.write(summary_text(result, reason))
    for line in gate_annotations(result, verdict, reason):
        print(line, file=out)
    meaning = EXIT_MEANING.get(result.exit_code, "the harness did not finish")
    print(f"smoke gate: verdict {result.verdict}, exit code {result.exit_code} ({meaning}); "
          f"reports in {result.report_dir}", file=out, flush=True)


# --- the step ---------------------------------------------------------------------------------------


def _exit_status(returncode: int) -> int:
    return returncode if returncode >= 0 else 128 - returncode  # killed by a signal, as a shell reports it


def _forget_last_run(report_dir: Path) -> None:
    # A self-hosted runner keeps its workspace: a verdict left by an earlier job must never be read as this one's.
    for name in ("verdict.json", "summary.md"):
        (report_dir / name).unlink(missing_ok=True)


def run_gate(environ: Mapping[str, str], *, out: Any = None) -> int:
    """The whole step; returns the exit code the step ends with."""
    out = out or sys.stdout
    try:
        inputs = ActionInputs.from_env(environ)
        suite = resolve_suite(inputs, environ)
    except InputError as error:
        report_dir = resolve_report_dir(environ.get("INPUT_REPORT_DIR", "").strip() or DEFAULT_REPORT_DIR, environ)
        _forget_last_run(report_dir)
        result = GateResult("error", EXIT_USAGE, "", report_dir)
        publish(result, None, environ, out, reason=str(error))
        return result.exit_code
    report_dir = resolve_report_dir(inputs.report_dir, environ)
    _forget_last_run(report_dir)
    # The action's own suite keeps its membership ledger out of the workspace; another suite has no --ledger option.
    ledger = (Path(environ["RUNNER_TEMP"]) / "ecs-verdict" / "ledger.jsonl"
              if environ.get("RUNNER_TEMP") and suite.own else None)
    command = harness_command(inputs, report_dir, ledger=ledger, suite=suite.argument)
    where = "" if suite.own or suite.cwd is None else f" (in {suite.cwd})"
    shown = ["ecs-verdict-remote", *command[3:]] if inputs.run_in_vpc else ["pytest", *command[3:]]
    print("smoke gate: " + shlex.join(shown) + where, file=out, flush=True)
    # Evidence quotes the service's own log lines: none of them may be taken for a workflow command.
    token = secrets.token_hex(16)
    print(f"::stop-commands::{token}", file=out, flush=True)
    try:
        returncode = subprocess.call(command, cwd=suite.cwd, env=harness_env(environ))
    except OSError as error:
        print(f"smoke gate: could not start the harness: {error}", file=out)
        returncode = EXIT_NOT_VERIFIED
    finally:
        print(f"::{token}::", file=out, flush=True)
    result, verdict = read_result(report_dir, _exit_status(returncode))
    publish(result, verdict, environ, out)
    return result.exit_code


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        print("usage: python -m ecs_verdict.github_action  (the inputs come from INPUT_* variables; see action.yml)",
              file=sys.stderr)
        return EXIT_USAGE
    return run_gate(os.environ)


if __name__ == "__main__":
    sys.exit(main())
