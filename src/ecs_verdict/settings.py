"""Every option of the harness, parsed once into typed values (pytest-free).

Each option is read from the command line, then its environment variable, then the
ini file, then its default; :class:`Settings` keeps where each value came from. One
rule per option, here: the core receives a ``TaskDefinitionRef``, a normalised image
digest, ``Target`` objects for ``--target-url`` and an ``Address``, and never checks
them again. A bad value is one :class:`UsageError` whose single line names the
option, where the value came from, what is wrong and how to fix it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecs_verdict.deployment import ADDRESSES, Address, ServiceSelector, TaskDefinitionRef, parse_task_definition_ref
from ecs_verdict.listeners import parse_lb_url
from ecs_verdict.remote_results import ResultsLocation, parse_results_uri
from ecs_verdict.rollout_checks import parse_image_digest
from ecs_verdict.suite import DEFAULT_METRICS_NAMESPACE, NO_SUITE, SuiteProfile
from ecs_verdict.targets import Target, targets_from_urls

DEFAULT_HEALTH_PATH = "/health"
DEFAULT_STABLE_TIMEOUT_S = 600.0
DEFAULT_REPORT_DIR = "reports"
ON_FAIL_CHOICES = ("none", "rollback")  # --on-fail: what a failed gate (exit 1) does to the service


class UsageError(ValueError):
    """The harness was asked for something it cannot do; ``str()`` is one line with the fix."""


# --- parsers: text -> typed value, ValueError naming the problem ------------------------------------


def parse_urls(value: str) -> tuple[Target, ...]:
    """Space- or comma-separated ``http(s)://host:port`` URLs (no path, no credentials)."""
    items = value.replace(",", " ").split()
    if not items:
        raise ValueError("no URL given; give e.g. http://203.0.113.7:8000")
    return targets_from_urls(items)


def parse_choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of: {', '.join(allowed)}")
        return value

    return parse


def parse_address(value: str) -> Address:
    return parse_choice(*ADDRESSES)(value)  # type: ignore[return-value]


def parse_path(value: str) -> str:
    if not value.startswith("/") or any(char.isspace() for char in value) or "?" in value or "#" in value:
        raise ValueError(f"{value!r} is not a URL path; give e.g. /api/health")
    return value


def parse_port(value: str) -> int:
    port = _number(value, int)
    if not 0 < port < 65536:
        raise ValueError(f"{value!r} is not a TCP port (1-65535)")
    return port


def parse_seconds(value: str) -> float:
    seconds = _number(value, float)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{value!r} must be a positive number of seconds")
    return seconds


def parse_digest(value: str) -> str:
    return parse_image_digest(value)


def parse_task_definition(value: str) -> TaskDefinitionRef:
    return parse_task_definition_ref(value)


def parse_flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not true or false")


def parse_name(value: str) -> str:
    text = value.strip()
    if not text or any(char.isspace() for char in text):
        raise ValueError(f"{value!r} is not a name (no spaces)")
    return text


# CloudWatch's own rule for a namespace (PutMetricData): 1-255 of these characters, no leading ':'.
METRICS_NAMESPACE_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.-_/#:")
RESERVED_NAMESPACE_PREFIX = "AWS/"  # AWS's own services' namespaces: PutMetricData refuses it


def parse_metrics_namespace(value: str) -> str:
    """A CloudWatch namespace PutMetricData accepts, refused here rather than after the run."""
    bad = sorted({char for char in value if char not in METRICS_NAMESPACE_CHARS})
    if not 1 <= len(value) <= 255:
        raise ValueError(f"{value!r} must be 1-255 characters long; give e.g. {DEFAULT_METRICS_NAMESPACE}")
    if bad:
        raise ValueError(f"{value!r} has characters CloudWatch refuses ({''.join(bad)!r}); use letters, digits "
                         f"and . - _ / # : e.g. {DEFAULT_METRICS_NAMESPACE}")
    if value.startswith(":"):
        raise ValueError(f"{value!r} must not start with ':'; give e.g. {DEFAULT_METRICS_NAMESPACE}")
    if value.startswith(RESERVED_NAMESPACE_PREFIX):
        raise ValueError(f"{value!r} starts with {RESERVED_NAMESPACE_PREFIX}, which AWS reserves for its own "
                         f"services; give your own, e.g. {DEFAULT_METRICS_NAMESPACE}")
    return value


def parse_report_dir(value: str) -> Path:
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{value!r} is a file, not a folder; give a folder for the reports")
    return path


def _number(value: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None


# --- the options ----------------------------------------------------------------------------------


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
    ini_key: str | None = None  # when the ini name is not smoke_<dest>

    @property
    def ini(self) -> str:
        if self.ini_key is not None:
            return self.ini_key
        return f"smoke_{self.dest}" if not self.dest.startswith(("ecs_", "smoke_")) else self.dest


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("targets", "--target-url", "API_BASE_URL", "test these URLs, skip discovery (repeatable)",
               (), parse_urls, repeatable=True, metavar="URL", ini_key="smoke_target_urls"),
    OptionSpec("ecs_cluster", "--ecs-cluster", "ECS_CLUSTER", "ECS cluster of the service", None, parse_name),
    OptionSpec("ecs_service", "--ecs-service", "ECS_SERVICE", "ECS service to verify", None, parse_name),
    OptionSpec("ecs_container", "--ecs-container", "ECS_CONTAINER",
               "container to test (default: the first with a port mapping)", None, parse_name),
    OptionSpec("target_port", "--target-port", "SMOKE_TARGET_PORT", "port to test (default: the container's)",
               None, parse_port),
    OptionSpec("address", "--address", "SMOKE_ADDRESS", "public|private: which task IP to test", "public",
               parse_address),
    OptionSpec("lb_url", "--lb-url", "SMOKE_LB_URL",
               "the load balancer's address to check through (a custom domain; default: its DNS name, when the "
               "service has a load balancer)", None, parse_lb_url, metavar="URL"),
    OptionSpec("health_path", "--health-path", "SMOKE_HEALTH_PATH",
               f"the service's health path (default: the path the task definition's health check probes, "
               f"else {DEFAULT_HEALTH_PATH})", None, parse_path),
    OptionSpec("expect_image_digest", "--expect-image-digest", "SMOKE_EXPECT_IMAGE_DIGEST",
               "every task must run this image digest", None, parse_digest, metavar="sha256:..."),
    OptionSpec("expect_task_definition", "--expect-task-definition", "SMOKE_EXPECT_TASK_DEFINITION",
               "the PRIMARY deployment must run this task definition", None, parse_task_definition,
               metavar="family:revision|ARN"),
    OptionSpec("stable_timeout", "--stable-timeout", "SMOKE_STABLE_TIMEOUT",
               "seconds to wait for the deployment to settle", DEFAULT_STABLE_TIMEOUT_S, parse_seconds),
    OptionSpec("aws_region", "--aws-region", None, "AWS region (default: the boto3 chain, AWS_REGION...)",
               None, parse_name),
    OptionSpec("smoke_secret", "--smoke-secret", "SMOKE_SECRET",
               "Secrets Manager secret holding the smoke accounts", None, parse_name),
    OptionSpec("bootstrap_accounts", "--bootstrap-accounts", "SMOKE_BOOTSTRAP_ACCOUNTS",
               "let the suite register a missing smoke account (non-production targets)", False, parse_flag, is_flag=True),
    OptionSpec("read_only", "--read-only", "SMOKE_READ_ONLY", "run only the read-only checks (canaries)",
               False, parse_flag, is_flag=True),
    OptionSpec("report_dir", "--report-dir", "SMOKE_REPORT_DIR", "where reports go", Path(DEFAULT_REPORT_DIR),
               parse_report_dir),
    OptionSpec("strict", "--strict-lint", "SMOKE_STRICT", "task definition lint warnings fail the run",
               False, parse_flag, is_flag=True),
    OptionSpec("canary", "--canary", "SMOKE_CANARY", "publish CloudWatch metrics for this run", False, parse_flag,
               is_flag=True),
    OptionSpec("metrics_namespace", "--metrics-namespace", "SMOKE_METRICS_NAMESPACE",
               "CloudWatch namespace for --canary (default: the suite's)", DEFAULT_METRICS_NAMESPACE,
               parse_metrics_namespace),
    OptionSpec("environment", "--environment", "SMOKE_ENVIRONMENT", "Environment dimension for --canary",
               "production", parse_name),
    OptionSpec("continue_deployment", "--continue-deployment", "SMOKE_CONTINUE_DEPLOYMENT",
               "blue/green: test the green tasks at the deployment's PAUSE hook, then continue it on pass, roll it "
               "back on fail (needs ecs:ContinueServiceDeployment)", False, parse_flag, is_flag=True),
    OptionSpec("on_fail", "--on-fail", "SMOKE_ON_FAIL",
               "none|rollback: on a failed gate (exit 1) update the service back to the task definition it ran "
               "before (needs ecs:UpdateService)", "none", parse_choice(*ON_FAIL_CHOICES)),
    OptionSpec("results_uri", "--results-uri", "SMOKE_RESULTS_URI",
               "when the run ends, also upload the report folder under this S3 prefix (the private-service gate, "
               "docs/private-gate.md, reads it; needs s3:PutObject)", None, parse_results_uri,
               metavar="s3://BUCKET/PREFIX"),
    OptionSpec("serial", "--serial", "SMOKE_SERIAL",
               "check the tasks one after another (default: every task at once, each in its own lane)",
               False, parse_flag, is_flag=True),
)
SPECS: dict[str, OptionSpec] = {spec.dest: spec for spec in OPTIONS}


@dataclass(frozen=True, slots=True)
class Settings:
    """Every option, parsed; ``sources`` says where each value came from."""

    targets: tuple[Target, ...] = ()
    ecs_cluster: str | None = None
    ecs_service: str | None = None
    ecs_container: str | None = None
    target_port: int | None = None
    address: Address = "public"
    lb_url: str | None = None  # http(s)://host:port; None: the load balancer's DNS name, if it has one
    health_path: str | None = None  # None: what the task definition's health check probes
    expect_image_digest: str | None = None
    expect_task_definition: TaskDefinitionRef | None = None
    stable_timeout: float = DEFAULT_STABLE_TIMEOUT_S
    aws_region: str | None = None
    smoke_secret: str | None = None
    bootstrap_accounts: bool = False
    read_only: bool = False
    report_dir: Path = Path(DEFAULT_REPORT_DIR)
    strict: bool = False
    canary: bool = False
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    environment: str = "production"
    continue_deployment: bool = False
    on_fail: str = "none"
    results_uri: ResultsLocation | None = None
    serial: bool = False
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def rolls_back_on_fail(self) -> bool:
        return self.on_fail == "rollback"

    @property
    def uses_discovery(self) -> bool:
        return not self.targets

    @property
    def target_urls(self) -> tuple[str, ...]:
        return tuple(target.base_url for target in self.targets)

    @property
    def selector(self) -> ServiceSelector | None:
        """The ECS service the run discovers its tasks in; None when the targets were given by URL."""
        if self.targets or not (self.ecs_cluster and self.ecs_service):
            return None
        return ServiceSelector(self.ecs_cluster, self.ecs_service, self.ecs_container, self.target_port, self.address)

    def describe(self) -> list[str]:
        """Header lines: every set value and its source."""
        lines = []
        for spec in OPTIONS:
            value = getattr(self, spec.dest)
            if value in (None, (), False) and self.sources.get(spec.dest) == "default":
                continue
            shown = ", ".join(t.base_url for t in value) if spec.dest == "targets" else value
            lines.append(f"{spec.flag.lstrip('-')}: {shown} (from {self.sources.get(spec.dest, 'default')})")
        return lines


Lookup = Callable[[str], Any]


def resolve_settings(cli: Lookup, ini: Lookup, environ: Mapping[str, str] | None = None,
                     suite: SuiteProfile = NO_SUITE) -> Settings:
    """CLI, then environment, then ini, then default; ``UsageError`` on the first bad value.

    The suite's profile gives the defaults a suite owns (the metrics namespace); the header says so.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    suite_defaults = {"metrics_namespace": suite.metrics_namespace} if suite is not NO_SUITE else {}
    for spec in OPTIONS:
        raw, source = _first_given(spec, cli, ini, environ)
        if raw is None and spec.dest in suite_defaults:
            raw, source = suite_defaults[spec.dest], f"suite {suite.name}"  # parsed below: a suite's bad value shows
        if raw is None:
            values[spec.dest], sources[spec.dest] = spec.default, "default"
            continue
        try:
            if spec.repeatable:
                parts = raw if isinstance(raw, list) else [raw]
                values[spec.dest] = tuple(dict.fromkeys(item for part in parts for item in spec.parse(str(part))))
            else:
                values[spec.dest] = spec.parse(str(raw))
        except ValueError as error:
            raise UsageError(f"{spec.flag} (from {source}): {error}") from None
        sources[spec.dest] = source
    settings = Settings(**values, sources=sources)
    require_target(settings)
    require_compatible_actions(settings)
    return settings


def resolve_option(spec: OptionSpec, cli: Lookup, ini: Lookup,
                   environ: Mapping[str, str] | None = None) -> tuple[Any, str]:
    """One option a suite owns, by the same rules as the harness's: (value, where it came from), or ``UsageError``."""
    environ = os.environ if environ is None else environ
    raw, source = _first_given(spec, cli, ini, environ)
    if raw is None:
        return spec.default, "default"
    try:
        return spec.parse(str(raw)), source
    except ValueError as error:
        raise UsageError(f"{spec.flag} (from {source}): {error}") from None


def require_compatible_actions(settings: Settings) -> None:
    """--continue-deployment and --on-fail rollback act on an ECS service: each needs discovery, and one each run."""
    acting = [flag for flag, wanted in (("--continue-deployment", settings.continue_deployment),
                                        ("--on-fail rollback", settings.rolls_back_on_fail)) if wanted]
    if acting and settings.targets:
        raise UsageError(f"{acting[0]} (from {_source_of(settings, acting[0])}) acts on an ECS service and "
                         "--target-url skips discovery; give --ecs-cluster and --ecs-service instead")
    if len(acting) == 2:
        raise UsageError(f"--on-fail rollback (from {settings.sources.get('on_fail', 'default')}) is for rolling "
                         "deployments; with --continue-deployment a failed gate rolls back through the paused hook: "
                         "drop one of the two")


def _source_of(settings: Settings, flag: str) -> str:
    dest = "continue_deployment" if flag == "--continue-deployment" else "on_fail"
    return settings.sources.get(dest, "default")


def require_target(settings: Settings) -> None:
    """The smoke suite needs URLs, or a cluster and a service."""
    if settings.targets:
        return
    if not (settings.ecs_cluster and settings.ecs_service):
        missing = "--ecs-service" if settings.ecs_cluster else "--ecs-cluster" if settings.ecs_service else None
        what = f"{missing} is missing" if missing else "no target given"
        raise UsageError(
            f"{what}: pass --ecs-cluster and --ecs-service (or ECS_CLUSTER/ECS_SERVICE), or --target-url URL")


def check_report_dir_writable(path: Path) -> None:
    """``UsageError`` unless the report folder can be created and written (checked before any test)."""
    probe = path / ".smoke-write-probe"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(f"--report-dir {str(path)!r} cannot be written ({reason}); give a folder you can write to"
                         ) from None


def _first_given(spec: OptionSpec, cli: Lookup, ini: Lookup, environ: Mapping[str, str]) -> tuple[Any, str]:
    value = cli(spec.dest)
    if value is not None:
        return value, "command line"
    if spec.env and environ.get(spec.env, "").strip():
        return environ[spec.env].strip(), f"env {spec.env}"
    value = ini(spec.ini)
    if value not in (None, "", []):
        return value, f"ini {spec.ini}"
    return None, "default"
