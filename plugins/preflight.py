"""Before any smoke test: find the targets and wait until the deploy is really done (pytest-free).

Runs once per run, on the controller; the resulting ``RunState`` crosses to
xdist workers as JSON, so ``-n 4`` still means one discovery and one wait.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from plugins.core.aws import make_clients, translate_aws_error
from plugins.core.errors import CouldNotVerify, DeployFailed, HarnessOutcome
from plugins.core.stability import (
    DEFAULT_HEALTH_PATH,
    HEALTH_PATH_FROM_DEFAULT,
    Progress,
    wait_until_stable,
)
from plugins.core.targets import Target, TargetDict, targets_from_urls
from plugins.options import SmokeConfig


@dataclass(slots=True)
class RunState:
    """What the controller learned before the tests; JSON-able for ``workerinput``."""

    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    started_monotonic: float = field(default_factory=time.monotonic)
    region: str | None = None
    deployment: dict[str, Any] | None = None
    targets: list[TargetDict] = field(default_factory=list)
    outcome: dict[str, Any] | None = None  # HarnessOutcome.to_dict() when the deploy could not be verified/failed
    notes: list[str] = field(default_factory=list)
    health_path: str = DEFAULT_HEALTH_PATH
    health_path_source: str = HEALTH_PATH_FROM_DEFAULT  # "command line", "env ...", "task definition", "default"
    aws_calls: int = 0
    waited_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> RunState:
        return cls(**json.loads(text))

    def target_objects(self) -> list[Target]:
        return [Target.from_dict(item) for item in self.targets]

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
    if config.target_urls:
        state.targets = [t.to_dict() for t in targets_from_urls(config.target_urls)]
        state.notes.append(f"targets given by URL ({len(state.targets)}); ECS discovery skipped")
        return state
    clients = None
    try:
        clients = make_clients(config.aws_region)
        state.region = clients.region
        result = wait_until_stable(
            clients,
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
        )
        state.deployment = result.deployment.to_dict()
        state.targets = [t.to_dict() for t in result.deployment.targets]
        state.notes += list(result.notes)
        if config.health_path is None:
            state.health_path, state.health_path_source = result.health_path, result.health_path_source
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
            state.targets = list(targets)
        if outcome.details.get("deployment"):
            state.deployment = outcome.details["deployment"]
    finally:
        state.waited_s = round(time.monotonic() - began, 3)
        if clients is not None:
            state.aws_calls = clients.calls.total()
    return state


def could_not_verify(state: RunState) -> bool:
    return bool(state.outcome) and state.outcome["exit_code"] == CouldNotVerify.exit_code
