"""Nothing a user types or a network does crashes the harness or gets the wrong name.

Each row is one `pytest smoke` run as a CI job makes it: the exit code, the one line
that says what is wrong (no traceback, no INTERNALERROR), and, for could-not-verify,
the category in verdict.json. Usage errors (exit 4) come from the command line, the
environment or the ini (`-o`); could-not-verify (exit 6) from AWS, the network, the
target and the smoke accounts, most of them against one healthy stage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stage import Stage, StageOptions
from tests.smoke_runs import SmokeRun, run_smoke

CLOSED = "http://127.0.0.1:9"  # nothing listens on the discard port here
NO_TARGET = {"ECS_CLUSTER": "", "ECS_SERVICE": "", "API_BASE_URL": "", "SMOKE_SECRET": ""}
STAGE_TIMEOUT = ("--stable-timeout", "20")


@dataclass(frozen=True)
class Row:
    id: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    exit_code: int = 4
    line: str = ""  # the start of the one line that says what is wrong (after ERROR: for exit 4)
    category: str | None = None


def usage(id: str, *args: str, line: str, env: dict[str, str] | None = None) -> Row:
    target = () if any(a.startswith("--target-url") or a.startswith("--ecs") for a in args) or env else (
        "--target-url", CLOSED)
    return Row(id, (*target, *args), {**NO_TARGET, **(env or {})}, 4, line)


USAGE = [
    Row("no-target", (), NO_TARGET, 4, "no target given: pass --ecs-cluster and --ecs-service"),
    Row("cluster-only", ("--ecs-cluster", "c"), NO_TARGET, 4, "--ecs-service is missing"),
    Row("service-only", ("--ecs-service", "s"), NO_TARGET, 4, "--ecs-cluster is missing"),
    usage("url-ftp", "--target-url", "ftp://h:21", line="--target-url (from command line): target URL must look"),
    usage("url-with-path", "--target-url", "http://h:8000/api", line="--target-url (from command line): target URL "
          "must not have a path"),
    usage("url-with-credentials", "--target-url", "http://u:p@h:8000", line="--target-url (from command line): "
          "target URL must not carry credentials"),
    usage("url-bad-port", "--target-url", "http://h:99999", line="--target-url (from command line): target URL has "
          "an invalid port"),
    usage("url-empty", "--target-url=", line="--target-url (from command line): no URL given"),
    usage("url-env", env={"API_BASE_URL": "not-a-url"}, line="--target-url (from env API_BASE_URL): target URL "
          "must look"),
    usage("td-revision-0", "--expect-task-definition", "fam:0", line="--expect-task-definition (from command line): "
          "expected task definition as family:revision"),
    usage("td-bare-arn", "--expect-task-definition", "arn:xyz", line="--expect-task-definition (from command line)"),
    usage("td-no-revision", "--expect-task-definition", "civicforge-board-mvp",
          line="--expect-task-definition (from command line)"),
    usage("digest-not-hex", "--expect-image-digest", "sha256:zz", line="--expect-image-digest (from command line): "
          "expected an image digest like sha256:<64 hex characters>"),
    usage("digest-short", "--expect-image-digest", "123", line="--expect-image-digest (from command line)"),
    usage("timeout-word", "--stable-timeout", "abc", line="--stable-timeout (from command line): 'abc' is not a number"),
    usage("timeout-negative", "--stable-timeout", "-5", line="--stable-timeout (from command line): '-5' must be a "
          "positive number"),
    usage("timeout-nan", "--stable-timeout", "nan", line="--stable-timeout (from command line): 'nan' must be"),
    usage("port-zero", "--target-port", "0", line="--target-port (from command line): '0' is not a TCP port"),
    usage("port-too-big", "--target-port", "70000", line="--target-port (from command line): '70000' is not a TCP"),
    usage("port-word", "--target-port", "http", line="--target-port (from command line): 'http' is not a number"),
    usage("address-unknown", "--address", "elastic", line="--address (from command line): 'elastic' is not one of: "
          "public, private"),
    usage("address-env-case", env={"API_BASE_URL": CLOSED, "SMOKE_ADDRESS": "PUBLIC"},
          line="--address (from env SMOKE_ADDRESS): 'PUBLIC' is not one of"),
    usage("health-path-relative", "--health-path", "api/health", line="--health-path (from command line): "
          "'api/health' is not a URL path"),
    usage("health-path-space", "--health-path", "/a b", line="--health-path (from command line)"),
    usage("report-dir-is-a-file", "--report-dir", "README.md", line="--report-dir (from command line): 'README.md' "
          "is a file, not a folder"),
    usage("report-dir-unwritable", "--report-dir", "/proc/smoke-reports", line="--report-dir '/proc/smoke-reports' "
          "cannot be written"),
    usage("flag-env-word", env={"API_BASE_URL": CLOSED, "SMOKE_READ_ONLY": "maybe"},
          line="--read-only (from env SMOKE_READ_ONLY): 'maybe' is not true or false"),
    usage("flag-env-number", env={"API_BASE_URL": CLOSED, "SMOKE_STRICT": "2"},
          line="--strict-lint (from env SMOKE_STRICT): '2' is not true or false"),
    usage("ini-timeout", "-o", "smoke_stable_timeout=soon", line="--stable-timeout (from ini smoke_stable_timeout): "
          "'soon' is not a number"),
    usage("ini-address", "-o", "smoke_address=nope", line="--address (from ini smoke_address): 'nope' is not one of"),
    usage("cluster-with-space", "--ecs-cluster", "a b", "--ecs-service", "s", line="--ecs-cluster (from command "
          "line): 'a b' is not a name"),
    usage("namespace-leading-colon", "--metrics-namespace", ":bad", line="--metrics-namespace (from command line): "
          "':bad' must not start with ':'"),
    usage("namespace-aws-reserved", "--metrics-namespace", "AWS/ECS", line="--metrics-namespace (from command line): "
          "'AWS/ECS' starts with AWS/, which AWS reserves"),
    usage("namespace-bad-character", "--metrics-namespace", "Civic Forge", line="--metrics-namespace (from command "
          "line): 'Civic Forge' has characters CloudWatch refuses"),
    usage("namespace-too-long", "--metrics-namespace", "N" * 256, line="--metrics-namespace (from command line): "
          f"'{'N' * 256}' must be 1-255 characters long"),
    usage("ledger-unwritable", "--ledger", "/proc/smoke/ledger.jsonl", line="--ledger '/proc/smoke/ledger.jsonl' "
          "cannot be written"),
    usage("ledger-is-a-folder", "--ledger", "smoke", line="--ledger "),
    usage("owner-password-only", env={"API_BASE_URL": CLOSED, "SMOKE_OWNER_PASSWORD": "p"},
          line="SMOKE_OWNER_PASSWORD is set but SMOKE_OWNER_USERNAME is not"),
    usage("participant-username-only", env={"API_BASE_URL": CLOSED, "SMOKE_OWNER_USERNAME": "o",
                                            "SMOKE_OWNER_PASSWORD": "p", "SMOKE_PARTICIPANT_USERNAME": "q"},
          line="SMOKE_PARTICIPANT_USERNAME is set but SMOKE_PARTICIPANT_PASSWORD is not"),
]

NO_AWS = [
    Row("aws-unreachable", ("--ecs-cluster", "c", "--ecs-service", "s"),
        {**NO_TARGET, "AWS_ENDPOINT_URL": CLOSED, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
         "AWS_DEFAULT_REGION": "us-east-1"}, 6, "could not verify: AWS endpoint unreachable", "aws_unreachable"),
    Row("no-credentials", ("--ecs-cluster", "c", "--ecs-service", "s"),
        {**NO_TARGET, "AWS_ENDPOINT_URL": CLOSED, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
         "AWS_DEFAULT_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
         "AWS_CONFIG_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true",
         "AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": ""},
        6, "could not verify: ", "no_credentials"),
    Row("unknown-region", ("--ecs-cluster", "c", "--ecs-service", "s", "--aws-region", "us-nowhere-9"),
        {**NO_TARGET, "AWS_ENDPOINT_URL": "", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
        6, "could not verify: unknown AWS region 'us-nowhere-9'", "unknown_region"),
    Row("target-unreachable", ("--target-url", CLOSED),
        {**NO_TARGET, "SMOKE_OWNER_USERNAME": "o", "SMOKE_OWNER_PASSWORD": "p", "SMOKE_PARTICIPANT_USERNAME": "q",
         "SMOKE_PARTICIPANT_PASSWORD": "r"}, 6, "could not verify: target http://127.0.0.1:9: ConnectError",
        "target_unreachable"),
]

ON_STAGE = [
    Row("cluster-not-found", ("--ecs-cluster", "civicforge-clstr"), {}, 6,
        "could not verify: ECS cluster 'civicforge-clstr' not found", "service_not_found"),
    Row("service-not-found", ("--ecs-service", "civicforge-board-mvp-service"), {}, 6,
        "could not verify: ECS service 'civicforge-board-mvp-service' not found", "service_not_found"),
    Row("container-not-found", ("--ecs-container", "web"), {}, 6, "could not verify: ", "container_not_found"),
    Row("health-never-answers", ("--target-port", "9", "--stable-timeout", "2"), {}, 6,
        "could not verify: deploy not stable after 2 s (deadline)", "not_stable"),
    Row("secret-missing", ("--smoke-secret", "civicforge/board-mvp/no-such-secret"), {}, 6,
        "could not verify: cannot read the smoke secret 'civicforge/board-mvp/no-such-secret'", "smoke_accounts"),
    Row("secret-not-json", ("--smoke-secret", "smoke/not-json"), {}, 6,
        "could not verify: the smoke secret 'smoke/not-json' is not JSON shaped", "smoke_accounts"),
    Row("secret-no-participant", ("--smoke-secret", "smoke/owner-only"), {}, 6,
        "could not verify: the smoke secret 'smoke/owner-only' is not JSON shaped", "smoke_accounts"),
    Row("no-accounts-at-all", (), {"SMOKE_SECRET": ""}, 6, "could not verify: no owner smoke account",
        "smoke_accounts"),
    Row("owner-password-wrong", (), {"OWNER_PASSWORD_WRONG": "1"}, 6,
        "could not verify: the owner smoke account 'smoke-owner' was refused at login", "smoke_accounts"),
]


@pytest.fixture(scope="module")
def stage() -> Iterator[Stage]:
    with Stage(StageOptions(scenario="healthy")) as running:
        secrets = running.client("secretsmanager")
        secrets.create_secret(Name="smoke/not-json", SecretString="owner=smoke-owner")
        secrets.create_secret(Name="smoke/owner-only", SecretString=json.dumps({"owner": running.smoke_accounts["owner"]}))
        yield running


def assert_one_clear_line(run: SmokeRun, row: Row) -> None:
    output = run.output
    assert "Traceback" not in output and "INTERNALERROR" not in output, output[-3000:]
    assert run.exit_code == row.exit_code, output[-3000:]
    prefix = "ERROR: " if row.exit_code == 4 else ""
    lines = [line for line in output.splitlines() if line.startswith(prefix + row.line)]
    assert lines, f"no line starting {prefix + row.line!r} in:\n{output[-3000:]}"
    assert len(lines) == 1 or row.exit_code == 6  # the terminal summary may repeat the cause under "why"
    if row.category is not None:
        assert [d["category"] for d in run.verdict["diagnoses"]] == [row.category], run.verdict["diagnoses"]
        assert run.verdict["verdict"] == "error" and run.verdict["exit_code"] == 6
        assert all(d["next_step"] for d in run.verdict["diagnoses"])


@pytest.mark.parametrize("row", USAGE + NO_AWS, ids=[row.id for row in USAGE + NO_AWS])
def test_without_a_stage(row: Row, tmp_path: Path) -> None:
    assert_one_clear_line(run_smoke(row.env, tmp_path / "reports", *row.args), row)


@pytest.mark.parametrize("row", ON_STAGE, ids=[row.id for row in ON_STAGE])
def test_against_the_stage(stage: Stage, row: Row, tmp_path: Path) -> None:
    env: dict[str, Any] = {**stage.env, **row.env}
    if env.pop("OWNER_PASSWORD_WRONG", None):
        accounts = stage.smoke_accounts
        env |= {"SMOKE_OWNER_USERNAME": accounts["owner"]["username"], "SMOKE_OWNER_PASSWORD": "not-the-password",
                "SMOKE_PARTICIPANT_USERNAME": accounts["participant"]["username"],
                "SMOKE_PARTICIPANT_PASSWORD": accounts["participant"]["password"]}
    run = run_smoke(env, tmp_path / "reports", *STAGE_TIMEOUT, *row.args)
    assert_one_clear_line(run, row)
    assert "not-the-password" not in run.output


def test_the_matrix_is_at_least_forty_inputs() -> None:
    assert len(USAGE + NO_AWS + ON_STAGE) >= 40
