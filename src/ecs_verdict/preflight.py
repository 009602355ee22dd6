"""Before any check: find the targets and wait until the deploy is really done.

Runs once per run, on the controller, from the run's ``Settings``; the resulting frozen
``Preflight`` (inside the run's ``RunState``) crosses to xdist workers as JSON
(``to_json``/``from_json``: the only place its outcome is a dict), so ``-n 4`` still means
one discovery and one wait.
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
from ecs_verdict.kinds import Kind
from ecs_verdict.listeners import Listener, discover_listeners, listener_for_url
from ecs_verdict.settings import Settings
from ecs_verdict.stability import Progress, StableResult, WaitOptions, wait_for_deployment
from ecs_verdict.targets import Target
from ecs_verdict.timeline import TimelineRecorder, wait_event

PROBE_TIMEOUT_S = 5.0
IN_PROCESS_ONLY = frozenset({"clients", "seen"})


@dataclass(frozen=True, slots=True)
class Preflight:
    """What the controller learned before the checks (frozen); JSON-able for ``workerinput``."""

    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    started_monotonic: float = field(default_factory=time.monotonic)
    region: str | None = None
    deployment: Deployment | None = None  # the verified PRIMARY (or the failed one, as far as it was seen)
    targets: tuple[Target, ...] = ()
    outcome: HarnessOutcome | None = None  # when the deploy could not be verified, or failed
    notes: tuple[str, ...] = ()
    health_path: str = DEFAULT_HEALTH_PATH
    health_path_source: str = HEALTH_PATH_FROM_DEFAULT  # "command line", "env ...", "task definition", "default"
    aws_calls: int = 0
    waited_s: float = 0.0
    task_definition: dict[str, Any] | None = None  # the PRIMARY's, as discovery read it
    paused_hook: dict[str, Any] | None = None  # --continue-deployment: blue_green.PausedHook.to_dict()
    timeline: tuple[dict[str, Any], ...] = ()  # timeline.TimelineEvent dicts, as the wait saw them
    # The load balancer's listeners the read-only checks also go through (listeners.Listener.to_dict()).
    listeners: tuple[dict[str, Any], ...] = ()
    # Blue/green: the test listener does not reach green yet, so the gate leaves the test-traffic hook paused.
    hold_for_test_listener: bool = False
    # In the controller's process only (never JSON): one client set, and what AWS already answered.
    clients: AwsClients | None = field(default=None, repr=False, compare=False)
    seen: Seen | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        # Not asdict(): it would deep-copy the AWS clients it then leaves out.
        data = {item.name: getattr(self, item.name) for item in fields(self) if item.name not in IN_PROCESS_ONLY}
        data["deployment"] = self.deployment.to_dict() if self.deployment is not None else None
        data["targets"] = [target.to_dict() for target in self.targets]
        data["outcome"] = self.outcome.to_dict() if self.outcome is not None else None
        data["notes"], data["timeline"] = list(self.notes), list(self.timeline)
        data["listeners"] = list(self.listeners)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preflight:
        data = dict(data)
        deployment_data, outcome_data = data.pop("deployment", None), data.pop("outcome", None)
        return cls(**{**data, "targets": tuple(Target.from_dict(item) for item in data.get("targets", ())),
                      "notes": tuple(data.get("notes", ())), "timeline": tuple(data.get("timeline", ())),
                      "listeners": tuple(data.get("listeners", ()))},
                   deployment=Deployment.from_dict(deployment_data) if deployment_data else None,
                   outcome=HarnessOutcome.from_dict(outcome_data) if outcome_data else None)


@dataclass(slots=True)
class RunState:
    """The run as the checks go on: the frozen ``Preflight``, and what the run learns after it.

    ``targets`` follow a task ECS replaced mid-run, ``notes`` grow, and a suite's own
    preflight (its accounts) may set ``outcome``; everything else is the preflight's.
    JSON only for ``workerinput`` (``to_json``/``from_json``).
    """

    preflight: Preflight = field(default_factory=Preflight)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcome: HarnessOutcome | None = None

    @classmethod
    def after(cls, preflight: Preflight) -> RunState:
        return cls(preflight, list(preflight.targets), list(preflight.notes), preflight.outcome)

    def to_json(self) -> str:
        return json.dumps({"preflight": self.preflight.to_dict(), "targets": [t.to_dict() for t in self.targets],
                           "notes": self.notes, "outcome": self.outcome.to_dict() if self.outcome else None},
                          default=str)

    @classmethod
    def from_json(cls, text: str) -> RunState:
        data = json.loads(text)
        outcome = data.get("outcome")
        return cls(Preflight.from_dict(data["preflight"]), [Target.from_dict(item) for item in data["targets"]],
                   list(data["notes"]), HarnessOutcome.from_dict(outcome) if outcome else None)

    # The preflight's, read through.
    @property
    def started_at(self) -> str:
        return self.preflight.started_at

    @property
    def started_monotonic(self) -> float:
        return self.preflight.started_monotonic

    @property
    def region(self) -> str | None:
        return self.preflight.region

    @property
    def deployment(self) -> Deployment | None:
        return self.preflight.deployment

    @property
    def health_path(self) -> str:
        return self.preflight.health_path

    @property
    def health_path_source(self) -> str:
        return self.preflight.health_path_source

    @property
    def aws_calls(self) -> int:
        return self.preflight.aws_calls

    @property
    def waited_s(self) -> float:
        return self.preflight.waited_s

    @property
    def task_definition(self) -> dict[str, Any] | None:
        return self.preflight.task_definition

    @property
    def paused_hook(self) -> dict[str, Any] | None:
        return self.preflight.paused_hook

    @property
    def timeline(self) -> tuple[dict[str, Any], ...]:
        return self.preflight.timeline

    @property
    def clients(self) -> AwsClients | None:
        return self.preflight.clients

    @property
    def listeners(self) -> tuple[dict[str, Any], ...]:
        return self.preflight.listeners

    @property
    def hold_for_test_listener(self) -> bool:
        return self.preflight.hold_for_test_listener

    @property
    def lb_listeners(self) -> list[Listener]:
        return [Listener.from_dict(item) for item in self.preflight.listeners]

    @property
    def lb_targets(self) -> list[Target]:
        """The listeners as targets (``lb``, ``lb-test``): never a task, so not in ``targets``."""
        return [listener.target() for listener in self.lb_listeners]

    @property
    def seen(self) -> Seen | None:
        return self.preflight.seen


    @property
    def exit_code(self) -> int | None:
        return self.outcome.exit_code if self.outcome is not None else None

    @property
    def blocks_tests(self) -> bool:
        """An image mismatch still leaves working targets worth testing; other outcomes do not."""
        return self.outcome is not None and not (self.outcome.kind is Kind.IMAGE_MISMATCH and self.targets)

    @property
    def could_not_verify(self) -> bool:
        return self.outcome is not None and self.outcome.could_not_verify


def wait_options(settings: Settings) -> WaitOptions:
    """What the wait is asked for, from the run's settings."""
    return WaitOptions(
        health_path=settings.health_path,
        expect_task_definition=settings.expect_task_definition,
        expect_image_digest=settings.expect_image_digest,
        timeout_s=settings.stable_timeout,
        test_during_bake=settings.canary,  # a canary is what an alarm-watched bake waits for
        at_paused_hook=settings.continue_deployment,  # blue/green: green is tested while the deploy is paused
    )


def run_preflight(config: Settings, on_progress: Callable[[Progress], None] | None = None) -> Preflight:
    """Discovery and the wait (or a probe of the URLs given); every outcome is a value, never raised."""
    found: dict[str, Any] = {}  # the Preflight's fields, as they are learned
    if config.health_path is not None:
        found["health_path"], found["health_path_source"] = (config.health_path,
                                                             config.sources.get("health_path", "option"))
    health_path = found.get("health_path", DEFAULT_HEALTH_PATH)
    began = time.monotonic()
    if config.targets:
        found["notes"] = (f"targets given by URL ({len(config.targets)}); ECS discovery skipped",)
        if config.lb_url is not None:
            found["listeners"] = (listener_for_url(config.lb_url).to_dict(),)
        return Preflight(**found, targets=config.targets, outcome=probe_targets(config.targets, health_path),
                         waited_s=0.0)
    clients = observer = None
    recorder = TimelineRecorder()
    outcome: HarnessOutcome | None = None
    try:
        clients = make_clients(config.aws_region)
        found["clients"], found["region"] = clients, clients.region
        selector = config.selector
        assert selector is not None  # Settings requires a cluster and a service when no URL is given
        observer = ServiceObserver(clients, selector.cluster, selector.service)
        result = wait_for_deployment(clients, selector, wait_options(config), observer=observer,
                                     on_progress=on_progress, timeline=recorder)
        found["deployment"] = result.deployment
        found["targets"] = tuple(result.deployment.targets)
        found["notes"] = tuple(result.notes)
        if config.health_path is None:
            found["health_path"], found["health_path_source"] = result.health_path, result.health_path_source
        found.update(_found_listeners(config, clients, observer, result, found["notes"]))
    except (BotoCoreError, ClientError) as error:
        # Anything the core did not translate (a credential provider failing, say) is still
        # "could not verify" with one line, never a pytest INTERNALERROR.
        outcome = translate_aws_error(error, region=found.get("region"), cluster=config.ecs_cluster,
                                      service=config.ecs_service)
    except HarnessOutcome as raised:
        outcome = raised
        targets = raised.details.get("targets")
        if isinstance(raised, DeployFailed) and targets:
            found["targets"] = tuple(Target.from_dict(item) for item in targets)
    finally:
        waited_s = round(time.monotonic() - began, 3)
        if clients is not None:
            found["aws_calls"] = clients.calls.total()
            found["timeline"] = (*recorder.to_list(), wait_event(time.time(), outcome, waited_s).to_dict())
        if observer is not None:
            found["seen"] = Seen(observer.last_service, dict(observer.raw_tasks))
            # Also when the wait failed green (an image mismatch, say): the gate then rolls it back.
            hook = paused_hook_of(observer.record) if config.continue_deployment else None
            found["paused_hook"] = hook.to_dict() if hook is not None else None
            found["task_definition"] = observer.cached_task_definition(
                _primary_task_definition(observer.last_service))
    return Preflight(**found, outcome=outcome, waited_s=waited_s)


def _found_listeners(config: Settings, clients: AwsClients, observer: ServiceObserver, result: StableResult,
                     notes: tuple[str, ...]) -> dict[str, Any]:
    """The listeners the read-only checks also go through (none without a load balancer or --lb-url)."""
    gate = config.continue_deployment and paused_hook_of(observer.record) is not None
    found = discover_listeners(clients.elbv2, observer.last_service or {}, container=result.deployment.container,
                               lb_url=config.lb_url, blue_green_gate=gate, load_balancers_of=result.load_balancers_of)
    more = list(found.notes)
    for listener in found.listeners:
        more.append(f"also checked through the load balancer: {listener.target_id} = {listener.describe()} "
                    f"at {listener.base_url} (from its {listener.url_from})")
        routing = listener.routing_note()
        if routing is not None and routing not in [*notes, *more]:
            more.append(routing)
    return {"listeners": tuple(listener.to_dict() for listener in found.listeners),
            "hold_for_test_listener": found.test_listener_pending, "notes": (*notes, *more)}


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
        kind=Kind.TARGET_UNREACHABLE, evidence=failed, details={"unreachable": failed})


def could_not_verify(state: RunState) -> bool:
    return state.could_not_verify
