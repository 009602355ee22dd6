"""The smoke harness's options: one group, each readable from CLI, environment and pytest.ini.

Every option resolves once, in the order CLI, then environment variable, then
ini, then default, into one frozen ``SmokeConfig``; the report header prints
each value with where it came from. A bad value is a ``pytest.UsageError``
(exit 4) whose one line says what is wrong and how to fix it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import pytest

DEFAULT_HEALTH_PATH = "/health"
DEFAULT_STABLE_TIMEOUT_S = 600.0
DEFAULT_BOARD_ID = "board_001"
DEFAULT_REPORT_DIR = "reports"
DEFAULT_METRICS_NAMESPACE = "CivicForge/Smoke"
GROUP = "smoke harness (post-deploy verification)"


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL; give e.g. http://203.0.113.7:8000")
    return value.rstrip("/")


def _urls(value: str) -> tuple[str, ...]:
    return tuple(_url(item) for item in value.replace(",", " ").split())


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of: {', '.join(allowed)}")
        return value

    return parse


def _path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} must start with '/', e.g. /api/health")
    return value


def _port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise ValueError(f"{value!r} is not a TCP port")
    return port


def _seconds(value: str) -> float:
    seconds = float(value)
    if seconds <= 0:
        raise ValueError(f"{value!r} must be a positive number of seconds")
    return seconds


def _digest(value: str) -> str:
    if not value.startswith("sha256:") or len(value) != 71:
        raise ValueError(f"{value!r} is not an image digest; give sha256:<64 hex characters>")
    return value


def _task_definition(value: str) -> str:
    if value.startswith("arn:") or (":" in value and value.rsplit(":", 1)[1].isdigit()):
        return value
    raise ValueError(f"{value!r} is not family:revision or a task definition ARN, e.g. civicforge-board-mvp:42")


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not true or false")


@dataclass(frozen=True, slots=True)
class OptionSpec:
    dest: str
    flag: str
    env: str | None
    help: str
    default: Any = None
    parse: Callable[[str], Any] = str
    is_flag: bool = False
    repeatable: bool = False
    metavar: str | None = None

    @property
    def ini(self) -> str:
        return f"smoke_{self.dest}" if not self.dest.startswith(("ecs_", "smoke_")) else self.dest


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("target_urls", "--target-url", "API_BASE_URL", "test these URLs, skip discovery (repeatable)",
               (), _urls, repeatable=True, metavar="URL"),
    OptionSpec("ecs_cluster", "--ecs-cluster", "ECS_CLUSTER", "ECS cluster of the service"),
    OptionSpec("ecs_service", "--ecs-service", "ECS_SERVICE", "ECS service to verify"),
    OptionSpec("ecs_container", "--ecs-container", "ECS_CONTAINER",
               "container to test (default: the first with a port mapping)"),
    OptionSpec("target_port", "--target-port", "SMOKE_TARGET_PORT", "port to test (default: the container's)",
               None, _port),
    OptionSpec("address", "--address", "SMOKE_ADDRESS", "public|private: which task IP to test", "public",
               _choice("public", "private")),
    OptionSpec("health_path", "--health-path", "SMOKE_HEALTH_PATH",
               f"the service's health path (default: the path the task definition's health check probes, "
               f"else {DEFAULT_HEALTH_PATH})", None, _path),
    OptionSpec("expect_image_digest", "--expect-image-digest", "SMOKE_EXPECT_IMAGE_DIGEST",
               "every task must run this image digest", None, _digest, metavar="sha256:..."),
    OptionSpec("expect_task_definition", "--expect-task-definition", "SMOKE_EXPECT_TASK_DEFINITION",
               "the PRIMARY deployment must run this task definition", None, _task_definition,
               metavar="family:revision|ARN"),
    OptionSpec("stable_timeout", "--stable-timeout", "SMOKE_STABLE_TIMEOUT",
               "seconds to wait for the deployment to settle", DEFAULT_STABLE_TIMEOUT_S, _seconds),
    OptionSpec("aws_region", "--aws-region", None, "AWS region (default: the boto3 chain, AWS_REGION...)"),
    OptionSpec("board_id", "--board-id", "SMOKE_BOARD_ID", "board the invite and permission checks use",
               DEFAULT_BOARD_ID),
    OptionSpec("smoke_secret", "--smoke-secret", "SMOKE_SECRET",
               "Secrets Manager secret holding the smoke accounts"),
    OptionSpec("bootstrap_accounts", "--bootstrap-accounts", "SMOKE_BOOTSTRAP_ACCOUNTS",
               "register a missing participant account (non-production targets)", False, _flag, is_flag=True),
    OptionSpec("read_only", "--read-only", "SMOKE_READ_ONLY", "run only the read-only checks (canaries)",
               False, _flag, is_flag=True),
    OptionSpec("report_dir", "--report-dir", "SMOKE_REPORT_DIR", "where reports go", DEFAULT_REPORT_DIR),
    OptionSpec("strict", "--strict-lint", "SMOKE_STRICT", "task definition lint warnings fail the run",
               False, _flag, is_flag=True),
    OptionSpec("canary", "--canary", "SMOKE_CANARY", "publish CloudWatch metrics for this run", False, _flag,
               is_flag=True),
    OptionSpec("metrics_namespace", "--metrics-namespace", "SMOKE_METRICS_NAMESPACE",
               "CloudWatch namespace for --canary", DEFAULT_METRICS_NAMESPACE),
    OptionSpec("environment", "--environment", "SMOKE_ENVIRONMENT", "Environment dimension for --canary",
               "production"),
)


@dataclass(frozen=True, slots=True)
class SmokeConfig:
    """Every option, resolved once; ``sources`` says where each value came from."""

    target_urls: tuple[str, ...] = ()
    ecs_cluster: str | None = None
    ecs_service: str | None = None
    ecs_container: str | None = None
    target_port: int | None = None
    address: str = "public"
    health_path: str | None = None  # None: what the task definition's health check probes
    expect_image_digest: str | None = None
    expect_task_definition: str | None = None
    stable_timeout: float = DEFAULT_STABLE_TIMEOUT_S
    aws_region: str | None = None
    board_id: str = DEFAULT_BOARD_ID
    smoke_secret: str | None = None
    bootstrap_accounts: bool = False
    read_only: bool = False
    report_dir: str = DEFAULT_REPORT_DIR
    strict: bool = False
    canary: bool = False
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    environment: str = "production"
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def uses_discovery(self) -> bool:
        return not self.target_urls

    def describe(self) -> list[str]:
        """Header lines: every set value and its source."""
        lines = []
        for spec in OPTIONS:
            value = getattr(self, spec.dest)
            if value in (None, (), False) and self.sources.get(spec.dest) == "default":
                continue
            shown = ", ".join(value) if isinstance(value, tuple) else value
            lines.append(f"{spec.flag.lstrip('-')}: {shown} (from {self.sources.get(spec.dest, 'default')})")
        return lines


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("smoke", GROUP)
    for spec in OPTIONS:
        env = f" [env {spec.env}]" if spec.env else ""
        if spec.is_flag:
            group.addoption(spec.flag, action="store_const", const="true", default=None, dest=spec.dest,
                            help=spec.help + env)
        else:
            group.addoption(spec.flag, action="append" if spec.repeatable else "store", default=None,
                            dest=spec.dest, metavar=spec.metavar or spec.dest.upper(), help=spec.help + env)
        parser.addini(spec.ini, help=spec.help, default=None)


def resolve_config(
    cli: Callable[[str], Any], ini: Callable[[str], Any], environ: Mapping[str, str] | None = None
) -> SmokeConfig:
    """CLI, then environment, then ini, then default; raise UsageError on the first bad value."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in OPTIONS:
        raw, source = _first_given(spec, cli, ini, environ)
        if raw is None:
            values[spec.dest], sources[spec.dest] = spec.default, "default"
            continue
        try:
            if spec.repeatable and isinstance(raw, list):
                values[spec.dest] = tuple(item for part in raw for item in spec.parse(part))
            else:
                values[spec.dest] = spec.parse(raw)
        except ValueError as error:
            raise pytest.UsageError(f"{spec.flag} (from {source}): {_reason(error)}") from None
        sources[spec.dest] = source
    config = SmokeConfig(**values, sources=sources)
    return config


def _first_given(spec: OptionSpec, cli: Callable[[str], Any], ini: Callable[[str], Any],
                 environ: Mapping[str, str]) -> tuple[Any, str]:
    value = cli(spec.dest)
    if value is not None:
        return value, "command line"
    if spec.env and environ.get(spec.env, "").strip():
        return environ[spec.env].strip(), f"env {spec.env}"
    value = ini(spec.ini)
    if value not in (None, "", []):
        return value, f"ini {spec.ini}"
    return None, "default"


def _reason(error: ValueError) -> str:
    text = str(error)
    if text.startswith(("invalid literal", "could not convert")):
        return f"not a number ({text.rsplit(':', 1)[-1].strip()})"
    return text


def require_target(config: SmokeConfig) -> None:
    """The smoke suite needs URLs or a cluster and a service."""
    if config.target_urls:
        return
    if not (config.ecs_cluster and config.ecs_service):
        missing = "--ecs-service" if config.ecs_cluster else "--ecs-cluster" if config.ecs_service else None
        what = f"{missing} is missing" if missing else "no target given"
        raise pytest.UsageError(
            f"{what}: pass --ecs-cluster and --ecs-service (or ECS_CLUSTER/ECS_SERVICE), or --target-url URL"
        )
