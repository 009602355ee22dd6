"""The run's story for a CI log: what was verified and, when it failed, why (the same story as summary.md).

Pytest-free: lines with the markup a terminal may give them; the pytest layer prints them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ecs_verdict import verdict as verdicts
from ecs_verdict.causes import tasks_phrase
from ecs_verdict.preflight import RunState

# A CI log shows each cause once: this many of its tasks' ids and links, then how many more.
TERMINAL_TASK_IDS = 8
TERMINAL_LINKS = 3

Line = tuple[str, dict[str, bool]]  # text, terminal markup (red=True, bold=True...)


def preflight_lines(state: RunState) -> Iterator[Line]:
    """What discovery and the wait found."""
    if state.deployment:
        d = state.deployment
        yield f"deployment {d.deployment_id} of {d.cluster}/{d.service} ({d.task_definition_arn})", {}
    for target in state.targets:
        yield f"  task {target.short_id}: {target.base_url} {target.image_digest or ''}".rstrip(), {}
    for listener in state.lb_listeners:
        yield f"  load balancer {listener.target_id}: {listener.base_url} ({listener.describe()})", {}
    for note in state.notes:
        yield f"note: {note}", {}
    yield f"waited {state.waited_s:.1f} s for the deployment; {state.aws_calls} AWS calls", {}
    if state.outcome is not None:
        label = "could not verify" if state.could_not_verify else "deploy failed"
        yield f"{label}: {state.outcome.message}", {"red": True, "bold": True}
        for line in state.outcome.evidence[:12]:
            yield f"  {line}", {}


def cause_lines(verdict: verdicts.Verdict) -> Iterator[Line]:
    """Each cause once, with its evidence, next step (each step said once) and first links; then the warnings."""
    run_tasks = [task["task_id"] for task in verdict["tasks"]]
    said: dict[str, str] = {}  # next step -> the cause that said it first
    for cause in verdict["causes"]:
        where = tasks_phrase(cause["task_ids"], run_tasks, limit=TERMINAL_TASK_IDS)
        yield f"why [{cause['category']}]: {cause['summary']}" + (f" ({where})" if where else ""), {"red": True}
        yield f"    evidence: {cause['evidence']}", {}
        step = cause["next_step"]
        yield f"    next step: {step if step not in said else 'as for ' + said[step] + ' above'}", {}
        said.setdefault(step, f"[{cause['category']}] {cause['summary']}")
        for link in cause["links"][:TERMINAL_LINKS]:
            yield f"    {link['title']}: {link['url']}", {}
        more = len(cause["links"]) - TERMINAL_LINKS
        if more > 0:
            yield f"    ({more} more link{'s' if more != 1 else ''} in summary.md and verdict.json)", {}
    for warning in verdict["warnings"]:
        yield f"warning: {warning}", {"yellow": True}


def verdict_line(verdict: verdicts.Verdict, report_dir: Path) -> Line:
    colour = {"pass": "green", "fail": "red"}.get(verdict["verdict"], "yellow")
    return (f"verdict: {verdict['verdict'].upper()} (exit {verdict['exit_code']}); reports in {report_dir}/ "
            "(verdict.json, summary.md, junit.xml, allure-results/)", {"bold": True, colour: True})
