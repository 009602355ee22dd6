"""Which container of the task definition the harness talks to, on which port, probed on which path."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ecs_verdict.errors import CouldNotVerify
from ecs_verdict.kinds import Kind
from ecs_verdict.lint import health_check_shell_text, url_path_in


@dataclass(frozen=True, slots=True)
class ContainerChoice:
    """The container the smoke tests talk to, from the task definition."""

    name: str
    port: int
    health_check: Mapping[str, Any] | None
    task_has_health_check: bool

    @property
    def health_check_path(self) -> str | None:
        """The path the container's health check probes (python urllib, curl, wget: any URL), else None."""
        text = health_check_shell_text(dict(self.health_check) if self.health_check else None)
        return url_path_in(text) if text is not None else None


def choose_container(task_definition: Mapping[str, Any], container: str | None, port: int | None) -> ContainerChoice:
    """The named container, or the first one with a port mapping; its port unless one is given."""
    definitions = list(task_definition.get("containerDefinitions", []))
    task_has_health_check = any(item.get("healthCheck") for item in definitions)
    names = ", ".join(item.get("name", "?") for item in definitions) or "none"
    family = task_definition.get("family", "?")
    if container is not None:
        chosen = next((item for item in definitions if item.get("name") == container), None)
        if chosen is None:
            raise CouldNotVerify(
                f"container {container!r} is not in task definition {family}; containers: {names} (fix --ecs-container)",
                kind=Kind.CONTAINER_NOT_FOUND,
            )
    else:
        chosen = next((item for item in definitions if item.get("portMappings")), None)
        if chosen is None:
            raise CouldNotVerify(
                f"no container of task definition {family} maps a port (containers: {names}): pass --ecs-container and --port",
                kind=Kind.NO_PORT,
            )
    mappings = chosen.get("portMappings") or []
    if port is None:
        if not mappings:
            raise CouldNotVerify(
                f"container {chosen['name']!r} maps no port: pass --port", kind=Kind.NO_PORT
            )
        port = int(mappings[0]["containerPort"])
    return ContainerChoice(
        name=str(chosen["name"]),
        port=port,
        health_check=chosen.get("healthCheck") or None,
        task_has_health_check=task_has_health_check,
    )
