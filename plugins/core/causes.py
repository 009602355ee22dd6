"""One cause, once: the per-task diagnoses of a run merged into the causes a person reads (pure).

A run diagnoses each failure on its own task, so one bad build broken on 24 tasks gives 24
diagnoses that differ only in the task they name. People (the terminal, summary.md, the
GitHub annotations) read each cause once, with the tasks it was seen on; verdict.json keeps
the per-task ``diagnoses`` for machines beside the merged ``causes``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict

from plugins.core.console_links import ConsoleContext, LinkRecord, cause_links

SHORT_TASK_ID = 8
TASK_PLACEHOLDER = "<task>"
# ECS task ids: 32 hex digits (or, in the stand-in and older accounts, a UUID).
_TASK_ID_SHAPED = re.compile(r"\b(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b")


class CauseRecord(TypedDict):
    """One entry of verdict.json's ``causes``."""

    category: str
    summary: str
    evidence: str
    next_step: str
    task_ids: list[str]
    links: list[LinkRecord]


def without_task_ids(text: str, task_ids: Iterable[str], addresses: Iterable[str] = ()) -> str:
    """``text`` with every task id (full or short, known or id-shaped) and task address in it as ``<task>``."""
    for task_id in sorted({t for t in task_ids if t}, key=len, reverse=True):
        text = text.replace(task_id, TASK_PLACEHOLDER)
        text = re.sub(rf"\b{re.escape(task_id[:SHORT_TASK_ID])}\b", TASK_PLACEHOLDER, text)
    for address in sorted({a for a in addresses if a}, key=len, reverse=True):
        text = re.sub(rf"(?<![\w.]){re.escape(address)}(?![\w])", TASK_PLACEHOLDER, text)
    return _TASK_ID_SHAPED.sub(TASK_PLACEHOLDER, text)


def cause_key(diagnosis: Mapping[str, Any], task_ids: Iterable[str] = (),
              addresses: Iterable[str] = ()) -> tuple[str, str, str]:
    """What makes two diagnoses the same cause.

    The same category, the same summary and the same evidence line once what names a task
    is taken out of both: its id, full or short (``task_ids``: the run's; id-shaped words go
    too) and its address (``addresses``: the IPs the checks used, as in ``POST
    http://10.0.1.7:8000/...``). So the same ``AttributeError`` log line, or the same
    refused request, on two tasks is one cause; two different log lines, or the same line
    under two categories, stay two. The next step is not part of the key: a category's
    step only differs where the evidence does.
    """
    known = [*task_ids, diagnosis.get("task_id") or ""]
    return (str(diagnosis.get("category")), without_task_ids(str(diagnosis.get("summary") or ""), known, addresses),
            without_task_ids(str(diagnosis.get("evidence") or ""), known, addresses))


def merge_causes(diagnoses: Iterable[Mapping[str, Any]], run_task_ids: Sequence[str] = (),
                 context: ConsoleContext | None = None, addresses: Sequence[str] = ()) -> list[CauseRecord]:
    """One ``CauseRecord`` per cause (``cause_key``), in the order each was first found.

    A cause keeps the words of its first diagnosis (its evidence quotes one task's log
    as it was) and lists every task it was seen on; ``context`` adds its console links.
    """
    diagnoses = list(diagnoses)
    merged: dict[tuple[str, str, str], CauseRecord] = {}
    every_id = [*run_task_ids, *(d.get("task_id") or "" for d in diagnoses)]
    for diagnosis in diagnoses:
        key = cause_key(diagnosis, every_id, addresses)
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
