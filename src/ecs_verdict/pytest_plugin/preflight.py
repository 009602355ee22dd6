"""Before any smoke test: find the targets and wait until the deploy is really done (pytest-free).

Runs once per run, on the controller; the resulting ``RunState`` crosses to
xdist workers as JSON, so ``-n 4`` still means one discovery and one wait.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Callable

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from ecs_verdict.aws import AwsClients, make_clients, translate_aws_error
from ecs_verdict.blue_green import paused_hook_of
from ecs_verdict.deployment import Deployment
from ecs_verdict.discovery import ServiceObserver
from ecs_verdict.errors import CouldNotVerify, DeployFailed, HarnessOutcome
from ecs_verdict.evidence import Seen
from ecs_verdict.http import get_tolerating_one_reset, keepalive_limits, shared_ssl_context
from ecs_verdict.health_probe import DEFAULT_HEALTH_PATH, HEALTH_PATH_FROM_DEFAULT
from ecs_verdict.listeners import Listener, discover_listeners, listener_for_url
from ecs_verdict.stability import Progress, StableResult, wait_until_stable
from ecs_verdict.targets import Target
from ecs_verdict.timeline import TimelineRecorder, wait_event
from ecs_verdict.pytest_plugin.options import SmokeConfig

PROBE_TIMEOUT_S = 5.0
IN_PROCESS_ONLY = frozenset({"clients", "seen"})


@dataclass(slots=True)
class RunState:
    """What the controller learned before the tests; JSON-able for ``workerinput``."""

    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    started_monotonic: float = field(default_factory=time.monotonic)
    region: str | None = None
    deployment: Deployment | None = None  # the verified PRIMARY (or the failed one, as far as it was seen)
    targets: list[Target] = field(default_factory=list)
    outcome: dict[str, Any] | None = None  # HarnessOutcome.to_dict() when the deploy could not be verified/failed
    notes: list[str] = field(default_factory=list)
    health_path: str = DEFAULT_HEALTH_PATH
    health_path_source: str = HEALTH_PATH_FROM_DEFAULT  # "command line", "env ...", "task definition", "default"
    aws_calls: int = 0
    waited_s: float = 0.0
    task_definition: dict[str, Any] | None = None  # the PRIMARY's, as discovery read it
    paused_hook: dict[str, Any] | None = None  # --continue-deployment: blue_green.PausedHook.to_dict()
    timeline: list[dict[str, Any]] = field(default_factory=list)  # timeline.TimelineEvent dicts, as the wait saw them
    # The load balancer's listeners the read-only checks also go through (listeners.Listener.to_dict()).
    listeners: list[dict[str, Any]] = field(default_factory=list)
    # Blue/green: the test listener does not reach green yet, so the gate leaves the test-traffic hook paused.
    hold_for_test_listener: bool = False
    # In the controller's process only (never JSON): one client set, and what AWS already answered.
    clients: AwsClients | None = field(default=None, repr=False, compare=False)
    seen: Seen | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> str:
        # Not asdict(): it would deep-copy the AWS clients it then leaves out.
        data = {item.name: getattr(self, item.name) for item in fields(self) if item.name not in IN_PROCESS_ONLY}
        data["deployment"] = self.deployment.to_dict() if self.deployment is not None else None
        data["targets"] = [target.to_dict() for target in self.targets]
        return json.dumps(data, default=str)

    @classmethod
    def from_json(cls, text: str) -> RunState:
        data = json.loads(text)
        deployment = Deployment.from_dict(data.pop("deployment")) if data.get("deployment") else None
        targets = [Target.from_dict(item) for item in data.pop("targets")]
        return cls(**data, deployment=deployment, targets=targets)

    @property
    def lb_listeners(self) -> list[Listener]:
        return [Listener.from_dict(item) for item in self.listeners]

    @property
    def lb_targets(self) -> list[Target]:
        """The listeners as targets (``lb``, ``lb-test``): never a task, so not in ``targets``."""
        return [listener.target() for listener in self.lb_listeners]

    @property
    def exit_code(self) -> int | None:
        return self.outcome["exit_code"] if self.outcome else None

    @property
    def blocks_tests(self) -> bool:
        """An image mismatch still leaves working targets worth testing; other outcomes do not."""
        return bool(self.outcome) and not (self.outcome["kind"] == "image_mismatch" and self.targets)


def run_preflight(config: SmokeConfig, on_progress: Callable[[Progress], None] | None = None) -> RunState:
    state = RunState()
    if config.health_path is not None:
        state.health_path, state.health_path_source = config.health_path, config.sources.get("health_path", "option")
    began = time.monotonic()
    if config.targets:
        state.targets = list(config.targets)
        state.notes.append(f"targets given by URL ({len(state.targets)}); ECS discovery skipped")
        if config.lb_url is not None:
            state.listeners = [listener_for_url(config.lb_url).to_dict()]
        unreachable = probe_targets(config.targets, state.health_path)
        if unreachable is not None:
            state.outcome = unreachable.to_dict()
        return state
    clients = observer = None
    recorder = TimelineRecorder()
    try:
        clients = make_clients(config.aws_region)
        state.clients, state.region = clients, clients.region
        observer = ServiceObserver(clients, config.ecs_cluster or "", config.ecs_service or "")
        result = wait_until_stable(
            clients,
            observer=observer,
            cluster=config.ecs_cluster or "",
            service=config.ecs_service or "",
            health_path=config.health_path,
            timeout_s=config.stable_timeout,
            expect_task_definition=config.expect_task_definition,
            expect_image_digest=config.expect_image_digest,
            address=config.address,
            container=config.ecs_container,
            port=config.target_port,
            on_progress=on_progress,
            test_during_bake=config.canary,  # a canary is what an alarm-watched bake waits for
            at_paused_hook=config.continue_deployment,  # blue/green: green is tested while the deploy is paused
            timeline=recorder,
        )
        state.deployment = result.deployment
        state.targets = list(result.deployment.targets)
        state.notes += list(result.notes)
        if config.health_path is None:
            state.health_path, state.health_path_source = result.health_path, result.health_path_source
        _find_listeners(state, config, clients, observer, result)
    except (BotoCoreError, ClientError) as error:
        # Anything the core did not translate (a credential provider failing, say) is still
        # "could not verify" with one line, never a pytest INTERNALERROR.
        state.outcome = translate_aws_error(
            error, region=state.region, cluster=config.ecs_cluster, service=config.ecs_service
        ).to_dict()
    except HarnessOutcome as outcome:
        state.outcome = outcome.to_dict()
        targets = outcome.details.get("targets")
        if isinstance(outcome, DeployFailed) and targets:
            state.targets = [Target.from_dict(item) for item in targets]
    finally:
        state.waited_s = round(time.monotonic() - began, 3)
        if clients is not None:
            state.aws_calls = clients.calls.total()
            state.timeline = [*recorder.to_list(), wait_event(time.time(), state.outcome, state.waited_s).to_dict()]
        if observer is not None:
            state.seen = Seen(observer.last_service, dict(observer.raw_tasks))
            # Also when the wait failed green (an image mismatch, say): the gate then rolls it back.
            hook = paused_hook_of(observer.record) if config.continue_deployment else None
            state.paused_hook = hook.to_dict() if hook is not None else None
            state.task_definition = observer.cached_task_definition(_primary_task_definition(observer.last_service))
    return state


def _find_listeners(state: RunState, config: SmokeConfig, clients: AwsClients, observer: ServiceObserver,
                    result: StableResult) -> None:
    """The listeners the read-only checks also go through (none without a load balancer or --lb-url)."""
    gate = config.continue_deployment and paused_hook_of(observer.record) is not None
    found = discover_listeners(clients.elbv2, observer.last_service or {}, container=result.deployment.container,
                               lb_url=config.lb_url, blue_green_gate=gate, load_balancers_of=result.load_balancers_of)
    state.listeners = [listener.to_dict() for listener in found.listeners]
    state.hold_for_test_listener = found.test_listener_pending
    state.notes += list(found.notes)
    for listener in found.listeners:
        state.notes.append(f"also checked through the load balancer: {listener.target_id} = {listener.describe()} "
                           f"at {listener.base_url} (from its {listener.url_from})")
        routing = listener.routing_note()
        if routing is not None and routing not in state.notes:
            state.notes.append(routing)


def _primary_task_definition(service: dict[str, Any] | None) -> str | None:
    primary = next((d for d in (service or {}).get("deployments", []) if d.get("status") == "PRIMARY"), None)
    return primary.get("taskDefinition") if primary else None


def probe_targets(targets: tuple[Target, ...], health_path: str, *, timeout_s: float = PROBE_TIMEOUT_S
                  ) -> CouldNotVerify | None:
    """One GET of the health path per target: ``target_unreachable`` when any gives no HTTP answer at all.

    Discovered targets need none (the wait heard them answer); a URL the user typed
    may point nowhere, and every test would then error the same way.
    """
    failed: list[str] = []
    with httpx.Client(timeout=timeout_s, verify=shared_ssl_context(), follow_redirects=False,
                      limits=keepalive_limits()) as http:
        for target in targets:
            try:
                get_tolerating_one_reset(http, target.base_url + health_path)
            except httpx.TransportError as error:
                failed.append(f"{target.describe()}: {type(error).__name__}")
    if not failed:
        return None
    return CouldNotVerify(
        f"{failed[0]} (no HTTP answer to GET {health_path}): check the URL and port, that the service listens there, "
        "and that this runner may connect (security group, VPN)",
        kind="target_unreachable", evidence=failed, details={"unreachable": failed})


def could_not_verify(state: RunState) -> bool:
    return bool(state.outcome) and state.outcome["exit_code"] == CouldNotVerify.exit_code
