"""The verified deployment a run tests, and the task-definition reference a deploy is checked against.

Values only (pytest-free, no AWS calls): ``Deployment`` is what discovery and the wait
hand to the tests (the PRIMARY deployment and its targets), JSON-able for xdist workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ecs_verdict.observation import family_revision
from ecs_verdict.targets import Target


Address = Literal["public", "private"]
ADDRESSES: tuple[Address, ...] = ("public", "private")


@dataclass(frozen=True, slots=True)
class ServiceSelector:
    """Which ECS service, and which of its tasks' containers, ports and addresses the run tests."""

    cluster: str
    service: str
    container: str | None = None  # None: the first container with a port mapping
    port: int | None = None  # None: the container's
    address: Address = "public"

@dataclass(frozen=True, slots=True)
class Deployment:
    """The verified state of the service: its PRIMARY deployment and the targets to test."""

    cluster: str
    service: str
    region: str
    deployment_id: str
    task_definition_arn: str
    rollout_state: str | None
    desired_count: int
    running_count: int
    container: str
    port: int
    health_check: Mapping[str, Any] | None
    targets: tuple[Target, ...]
    address: Address = "public"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for xdist workers and reports)."""
        return {
            "cluster": self.cluster,
            "service": self.service,
            "region": self.region,
            "deployment_id": self.deployment_id,
            "task_definition_arn": self.task_definition_arn,
            "rollout_state": self.rollout_state,
            "desired_count": self.desired_count,
            "running_count": self.running_count,
            "container": self.container,
            "port": self.port,
            "health_check": dict(self.health_check) if self.health_check is not None else None,
            "targets": [target.to_dict() for target in self.targets],
            "address": self.address,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deployment:
        """Rebuild from ``to_dict()`` output."""
        return cls(
            cluster=data["cluster"],
            service=data["service"],
            region=data["region"],
            deployment_id=data["deployment_id"],
            task_definition_arn=data["task_definition_arn"],
            rollout_state=data.get("rollout_state"),
            desired_count=int(data["desired_count"]),
            running_count=int(data["running_count"]),
            container=data["container"],
            port=int(data["port"]),
            health_check=data.get("health_check"),
            targets=tuple(Target.from_dict(item) for item in data["targets"]),
            address=data.get("address", "public"),
        )


@dataclass(frozen=True, slots=True)
class TaskDefinitionRef:
    """``family:revision`` parsed from ``--expect-task-definition`` (a full ARN is accepted)."""

    family: str
    revision: int

    def matches(self, task_definition_arn: str) -> bool:
        return family_revision(task_definition_arn) == str(self)

    def __str__(self) -> str:
        return f"{self.family}:{self.revision}"


def parse_task_definition_ref(text: str) -> TaskDefinitionRef:
    """``family:7`` or ``arn:aws:ecs:…:task-definition/family:7``; ``ValueError`` names the form."""
    tail = family_revision(text.strip())
    family, _, revision = tail.rpartition(":")
    if not family or not revision.isdigit() or int(revision) < 1:
        raise ValueError(f"expected task definition as family:revision or a full ARN (e.g. orders-api:7), got {text!r}")
    return TaskDefinitionRef(family, int(revision))
