"""One cause, once: the per-task diagnoses of a run merged into the causes a person reads (pure).

A run diagnoses each failure on its own task, so one bad build broken on 24 tasks gives 24
diagnoses that differ only in the task they name. People (the terminal, summary.md, the
GitHub annotations) read each cause once, with the tasks it was seen on; verdict.json keeps
the per-task ``diagnoses`` for machines beside the merged ``causes``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from ecs_verdict.console_links import ConsoleContext, LinkRecord, cause_links

SHORT_TASK_ID = 8
TASK_PLACEHOLDER = "<task>"
# Words that may name a task: an IPv4 address, or 8 hex digits alone (a short id), as the head of
# 32 hex digits (an ECS task id) or of a UUID (the stand-in's ids). A 64-hex digest is none of these.
_TASK_WORD = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?!\w)"
                        r"|\b[0-9a-f]{8}(?:[0-9a-f]{24}|-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?\b")
_ID_SHAPED_LENGTHS = frozenset({32, 36})


class CauseRecord(TypedDict):
    """One entry of verdict.json's ``causes``."""

    category: str
    summary: str
    evidence: str
    next_step: str
    task_ids: list[str]
    links: list[LinkRecord]


@dataclass(frozen=True, slots=True)
class TaskNames:
    """Every way a run's texts name its tasks: ids (full and short) and the addresses the checks used."""

    task_ids: frozenset[str]
    addresses: frozenset[str]
    short_ids: frozenset[str]
    odd_ids: tuple[str, ...]  # ids of another shape (a test's "task-a"): taken out as they are

    @classmethod
    def of(cls, task_ids: Iterable[str], addresses: Iterable[str] = ()) -> TaskNames:
        ids = frozenset(t for t in task_ids if t)
        odd = tuple(sorted((t for t in ids if not _TASK_WORD.fullmatch(t)), key=len, reverse=True))
        return cls(ids, frozenset(a for a in addresses if a), frozenset(t[:SHORT_TASK_ID] for t in ids), odd)

    def strip(self, text: str) -> str:
        """``text`` with each task id (full or short, known or id-shaped) and task address as ``<task>``."""

        def name(match: re.Match[str]) -> str:
            word = match.group()
            known = word in self.addresses or word in self.short_ids or len(word) in _ID_SHAPED_LENGTHS
            return TASK_PLACEHOLDER if known else word

        text = _TASK_WORD.sub(name, text)
        for task_id in self.odd_ids:
            text = text.replace(task_id, TASK_PLACEHOLDER)
        return text


def without_task_ids(text: str, task_ids: Iterable[str], addresses: Iterable[str] = ()) -> str:
    """``text`` with every task id (full or short, known or id-shaped) and task address in it as ``<task>``."""
    return TaskNames.of(task_ids, addresses).strip(text)


def cause_key(diagnosis: Mapping[str, Any], names: TaskNames) -> tuple[str, str, str]:
    """What makes two diagnoses the same cause.

    The same category, the same summary and the same evidence line once what names a task
    is taken out of both (``names``): its id, full or short (the run's, and any word shaped
    like an ECS task id), and its address (the IPs the checks used, as in ``POST
    http://10.0.1.7:8000/...``). So the same ``AttributeError`` log line, or the same
    refused request, on two tasks is one cause; two different log lines, or the same line
    under two categories, stay two. The next step is not part of the key: a category's
    step only differs where the evidence does.
    """
    return (str(diagnosis.get("category")), names.strip(str(diagnosis.get("summary") or "")),
            names.strip(str(diagnosis.get("evidence") or "")))


def merge_causes(diagnoses: Iterable[Mapping[str, Any]], run_task_ids: Sequence[str] = (),
                 context: ConsoleContext | None = None, addresses: Sequence[str] = ()) -> list[CauseRecord]:
    """One ``CauseRecord`` per cause (``cause_key``), in the order each was first found.

    A cause keeps the words of its first diagnosis (its evidence quotes one task's log
    as it was) and lists every task it was seen on; ``context`` adds its console links.
    """
    diagnoses = list(diagnoses)
    merged: dict[tuple[str, str, str], CauseRecord] = {}
    names = TaskNames.of([*run_task_ids, *(d.get("task_id") or "" for d in diagnoses)], addresses)
    for diagnosis in diagnoses:
        key = cause_key(diagnosis, names)
        task_id = diagnosis.get("task_id")
        cause = merged.get(key)
        if cause is None:
            cause = merged[key] = CauseRecord(
                category=str(diagnosis.get("category")), summary=str(diagnosis.get("summary") or ""),
                evidence=str(diagnosis.get("evidence") or ""), next_step=str(diagnosis.get("next_step") or ""),
                task_ids=[], links=[])
        if task_id and task_id not in cause["task_ids"]:
            cause["task_ids"].append(task_id)
    for cause in merged.values():
        cause["links"] = cause_links(context, cause["task_ids"])
    return list(merged.values())


def tasks_phrase(task_ids: Sequence[str], run_task_ids: Sequence[str] = (), limit: int | None = None) -> str:
    """``on 2 of 2 tasks: 2618a261, d4ff58d0`` (``""`` for a cause of the whole service).

    ``of N`` when every task is one the run checked; ``limit`` short ids at most, then how
    many more.
    """
    if not task_ids:
        return ""
    shown = [task_id[:SHORT_TASK_ID] for task_id in (task_ids if limit is None else task_ids[:limit])]
    more = len(task_ids) - len(shown)
    listed = ", ".join(shown) + (f" and {more} more" if more else "")
    plural = "s" if len(task_ids) > 1 else ""
    if run_task_ids and set(task_ids) <= set(run_task_ids):
        return f"on {len(task_ids)} of {len(run_task_ids)} task{'s' if len(run_task_ids) != 1 else ''}: {listed}"
    return f"on task{plural} {listed}"
