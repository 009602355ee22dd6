"""Which tasks a run checked, and which checks it left out and why (pytest-free).

A run proves something about a task only when a check ran on it and passed. A narrowed
selection (``-k``, ``-m``, ``--read-only``) may still check every task; then it may pass,
and the report says what was left out. A task no check ran on is never a pass: the run
could not verify it (``no_checks_ran``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SHORT_TASK_ID = 8
MAX_NAMED = 6  # names quoted in one line before "and N more"


@dataclass(frozen=True, slots=True)
class LeftOut:
    """One check the run did not run on one task, and why (``deselected by -k 'health'``, ``skipped (...)``)."""

    check: str
    task_id: str | None
    reason: str

    def to_dict(self) -> dict[str, str | None]:
        return {"check": self.check, "task_id": self.task_id, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LeftOut:
        return cls(str(data["check"]), data.get("task_id"), str(data["reason"]))


@dataclass(frozen=True, slots=True)
class Unchecked:
    """A task of the deployment no check ran on, and why."""

    task_id: str
    reason: str

    def describe(self) -> str:
        return f"task {self.task_id[:SHORT_TASK_ID]}: {self.reason}"


def skipped_checks(checks: Iterable[Mapping[str, Any]]) -> list[LeftOut]:
    """The checks that were collected but skipped, each with its skip reason."""
    return [LeftOut(str(check["name"]), check.get("task_id"), f"skipped ({check.get('message') or 'no reason given'})")
            for check in checks if check["outcome"] == "skipped"]


def unchecked_tasks(task_ids: Sequence[str], checks: Iterable[Mapping[str, Any]],
                    left_out: Iterable[LeftOut] = ()) -> list[Unchecked]:
    """Every task of ``task_ids`` no check passed on, with the reason its checks did not run."""
    checks = list(checks)
    left_out = [*left_out, *skipped_checks(checks)]
    passed = {check.get("task_id") for check in checks if check["outcome"] == "passed"}
    found = []
    for task_id in task_ids:
        if task_id in passed:
            continue
        errored = [check["name"] for check in checks if check.get("task_id") == task_id and check["outcome"] == "error"]
        reasons = _by_reason([item for item in left_out if item.task_id == task_id])
        parts = [f"{len(errored)} check(s) could not run"] if errored else []
        parts += [f"{len(names)} check(s) {reason}" for reason, names in reasons.items()]
        found.append(Unchecked(task_id, "; ".join(parts) if parts else "no check asks for this task"))
    return found


def describe_left_out(left_out: Iterable[LeftOut]) -> list[str]:
    """One line per reason: which checks were left out, on how many tasks (for notes and the terminal)."""
    lines = []
    for reason, items in _by_reason(list(left_out)).items():
        names = sorted({_base_name(name) for name in items})
        shown = ", ".join(names[:MAX_NAMED]) + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")
        lines.append(f"left out {len(items)} check(s) {reason}: {shown}")
    return lines


def _by_reason(items: list[LeftOut]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for item in items:
        grouped.setdefault(item.reason, []).append(item.check)
    return grouped


def _base_name(name: str) -> str:
    """``test_x[3f2a9c0d]`` -> ``test_x``: one name for every task's copy of a check."""
    return name.split("[", 1)[0]
