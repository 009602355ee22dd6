"""Outcomes that end a smoke run before (or instead of) the smoke tests.

Two kinds, each with its own exit code, so a CI job can tell them apart:

- ``CouldNotVerify`` (exit 6): the harness could not look at the deployment at all
  (no credentials, unknown cluster, no running task, deadline passed, ...). Nothing
  is known about the release; a person has to fix the set-up and run again.
- ``DeployFailed`` (exit 1): the harness looked and the deployment is broken (rolled
  back, tasks keep stopping, health path 404, wrong image, ...).

Both carry a ``kind`` (:class:`ecs_verdict.kinds.Kind`) for diagnosis, ``evidence`` (lines a person
reads, in order) and ``details`` (JSON-able data for reports). ``str()`` is always
one line, so it can head a terminal summary or a CI annotation.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ecs_verdict.kinds import Kind

EXIT_DEPLOY_FAILED = 1
EXIT_COULD_NOT_VERIFY = 6


class HarnessOutcome(Exception):
    """Base of the outcomes that stop the run; not raised directly."""

    exit_code: ClassVar[int] = EXIT_COULD_NOT_VERIFY
    label: ClassVar[str] = "outcome"

    def __init__(
        self,
        message: str,
        *,
        kind: Kind,
        evidence: list[str] | tuple[str, ...] = (),
        details: dict[str, Any] | None = None,
    ) -> None:
        # A multi-line message would break the one-line contract of str(); the
        # extra lines are evidence, not headline.
        headline, *rest = message.strip().splitlines() or [""]
        super().__init__(headline)
        self.message = headline
        self.kind = Kind.parse(kind)  # a string from a suite's code too: an unknown one is refused here
        self.evidence: list[str] = [*rest, *evidence]
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return self.message

    def describe(self) -> str:
        """The headline followed by the evidence, one indented line each."""
        lines = [f"{self.label}: {self.message}"]
        lines += [f"  {line}" for line in self.evidence]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for reports and for crossing to xdist workers."""
        return {
            "outcome": type(self).__name__,
            "exit_code": self.exit_code,
            "kind": str(self.kind),
            "message": self.message,
            "evidence": list(self.evidence),
            "details": dict(self.details),
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> HarnessOutcome:
        """Back from ``to_dict()`` (JSON from an xdist worker): the same class, kind and fields.

        An unknown ``outcome`` or ``kind`` is a ``ValueError`` naming it, never a guess.
        """
        classes = {cls.__name__: cls for cls in (CouldNotVerify, DeployFailed)}
        cls = classes.get(str(data.get("outcome")))
        if cls is None:
            raise ValueError(f"unknown outcome {data.get('outcome')!r}: expected one of {', '.join(classes)}")
        outcome = cls(str(data.get("message", "")), kind=Kind.parse(data.get("kind")),
                      details=dict(data.get("details") or {}))
        outcome.evidence = list(data.get("evidence") or [])
        return outcome

    @property
    def could_not_verify(self) -> bool:
        return self.exit_code == EXIT_COULD_NOT_VERIFY


class CouldNotVerify(HarnessOutcome):
    """The deployment could not be examined; nothing is known about the release."""

    exit_code: ClassVar[int] = EXIT_COULD_NOT_VERIFY
    label: ClassVar[str] = "could not verify"


class DeployFailed(HarnessOutcome):
    """The deployment was examined and is broken."""

    exit_code: ClassVar[int] = EXIT_DEPLOY_FAILED
    label: ClassVar[str] = "deploy failed"
