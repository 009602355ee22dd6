"""The deployment as the run observed it: timestamped events, a Mermaid gantt and an SVG picture (pytest-free).

The wait records what each poll shows (deployments and their rollout states, each task's
state, a stop and its reason, the health streak); the pytest layer adds each check per
task and the verdict. Only changes are recorded, so a ten-minute wait of 800 polls is a
few dozen events. The events cross the xdist boundary as JSON inside ``RunState``.

Two pictures of the same events: a Mermaid gantt for summary.md (GitHub renders Mermaid
in step summaries) and a self-contained HTML page with an inline SVG for the Allure
report (no script, no CDN: it renders offline and in a sandboxed frame).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from ecs_verdict.errors import HarnessOutcome
from ecs_verdict.observation import Observation, TaskInfo

VERDICT_LANE = "verdict"
HEALTH_LANE = "health streak"
WAIT_LANE = "wait"
DEPLOYMENT_CHECKS_LANE = "checks of the deployment"
ECS_TIME_WINDOW_S = 900.0  # an ECS timestamp this much older than the look that saw it is drawn at the look
MAX_FAILED_CHECK_BARS = 20
GONE = "no longer listed"  # a deployment ECS stopped listing: its lane ends there (outcome "end", no bar)  # per picture; the rest are counted in their task's checks bar


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One observed change: ``lane`` took ``state`` at ``at`` (epoch seconds), until ``until`` if known."""

    at: float
    lane: str
    state: str
    detail: str = ""
    until: float | None = None  # a bar with a known end (a check); else the state lasts until the lane's next event
    outcome: str = "info"  # "ok", "pending", "bad" or "info": the colour of the bar

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimelineEvent:
        return cls(**data)


def task_lane(short_id: str) -> str:
    return f"task {short_id}"


def _deployment_lane(deployment_id: str, family_revision: str) -> str:
    """``deployment 25787481 (rev 2)``: short enough for a lane label; the title names the service."""
    return f"deployment {deployment_id.removeprefix('ecs-svc/')[:8]} (rev {family_revision.rpartition(':')[2]})"


def _task_outcome(last_status: str, health: str | None) -> str:
    if last_status == "STOPPED":
        return "bad"
    if last_status == "RUNNING" and health in (None, "HEALTHY", "UNKNOWN"):
        return "ok" if health != "UNKNOWN" else "pending"
    return "bad" if health == "UNHEALTHY" else "pending"


def _when(task: TaskInfo, observed: float) -> float:
    """When ECS says the task got its state (stoppedAt, startedAt), if that is recent; else when it was seen.

    A stop ECS recorded before the wait began is drawn where it happened, not when the wait
    first looked; a time older than ``ECS_TIME_WINDOW_S`` (a stopped task ECS still lists an
    hour later) would squash the picture, so it is drawn at the observation.
    """
    stamp = task.stopped_at if task.last_status == "STOPPED" else task.started_at
    if stamp is None:
        return observed
    ecs_time = stamp.timestamp()
    return ecs_time if observed - ECS_TIME_WINDOW_S <= ecs_time <= observed else observed


class TimelineRecorder:
    """Turns successive observations into change events (one per wait; not shared)."""

    def __init__(self) -> None:
        self.events: list[TimelineEvent] = []
        self._last: dict[str, str] = {}

    def _record(self, at: float, lane: str, state: str, detail: str = "", outcome: str = "info") -> None:
        if self._last.get(lane) == state:
            return
        self._last[lane] = state
        self.events.append(TimelineEvent(at=at, lane=lane, state=state, detail=detail, outcome=outcome))

    def observe(self, observation: Observation) -> None:
        """Record what changed since the last observation: deployments, tasks, stops."""
        at = observation.observed_at.timestamp()
        listed = set()
        for item in observation.deployments:
            rollout = f" {item.rollout_state}" if item.rollout_state else ""
            outcome = {"COMPLETED": "ok", "FAILED": "bad"}.get(item.rollout_state or "", "pending")
            lane = _deployment_lane(item.id, item.family_revision)
            listed.add(lane)
            self._record(at, lane, f"{item.status}{rollout} {item.running}/{item.desired}",
                         item.rollout_state_reason or "", outcome)
        for lane in [lane for lane in self._last if lane.startswith("deployment ") and lane not in listed]:
            self._record(at, lane, GONE, "ECS no longer lists this deployment", "end")
        primary = observation.primary
        for task in observation.tasks:
            lane, when = task_lane(task.short_id), _when(task, at)
            if task.last_status == "STOPPED":
                drained = primary is not None and not task.belongs_to(primary)
                self._record(when, lane, "STOPPED (old deployment)" if drained else "STOPPED", task.describe_stop(),
                             "info" if drained else "bad")
                continue
            health = f"/{task.health_status}" if task.health_status and task.health_status != "UNKNOWN" else ""
            self._record(when, lane, f"{task.last_status}{health}", "",
                         _task_outcome(task.last_status, task.health_status))

    def health(self, at: float, ok_streak: int, needed: int) -> None:
        """The health path's streak of consecutive 200s on every target."""
        outcome = "ok" if ok_streak >= needed else "pending"
        self._record(at, HEALTH_LANE, f"{ok_streak}/{needed} polls answered", outcome=outcome)

    def to_list(self) -> list[dict[str, Any]]:
        return [event.to_dict() for event in self.events]


def check_event(name: str, task_short_id: str | None, outcome: str, start: float, stop: float) -> TimelineEvent:
    """One check on one task, as a bar from its start to its stop."""
    lane = task_lane(task_short_id) if task_short_id else DEPLOYMENT_CHECKS_LANE
    colour = {"passed": "ok", "skipped": "info"}.get(outcome, "bad")
    return TimelineEvent(at=start, lane=lane, state=f"check {name}", detail=outcome, until=stop, outcome=colour)


def wait_event(at: float, outcome: HarnessOutcome | None, waited_s: float) -> TimelineEvent:
    """How the wait ended: settled, or the outcome that ended it (its kind and message)."""
    if outcome is None:
        return TimelineEvent(at=at, lane=WAIT_LANE, state=f"settled after {waited_s:.1f} s", outcome="ok")
    return TimelineEvent(at=at, lane=WAIT_LANE, state=str(outcome.kind), detail=outcome.message[:300], outcome="bad")


def verdict_event(at: float, verdict: str, exit_code: int) -> TimelineEvent:
    return TimelineEvent(at=at, lane=VERDICT_LANE, state=f"{verdict.upper()} (exit {exit_code})",
                         outcome="ok" if exit_code == 0 else "bad")


# -- segments: what both pictures draw ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """One bar of the picture: a lane's state from ``start`` to ``end`` (epoch seconds)."""

    lane: str
    label: str
    start: float
    end: float
    outcome: str
    detail: str = ""


def segments(events: Sequence[TimelineEvent]) -> list[Segment]:
    """Bars in lane order (deployments, health, tasks, then the verdict); checks folded per task.

    A state lasts until its lane's next state (or the last event). A task's checks become
    one bar "N checks: k failed" from the first start to the last stop, plus one bar per
    failed check (at most ``MAX_FAILED_CHECK_BARS`` in all), so 24 tasks stay readable.
    """
    if not events:
        return []
    ordered = sorted(events, key=lambda event: event.at)
    end_of_run = max(event.until if event.until is not None else event.at for event in ordered)
    lanes: dict[str, list[TimelineEvent]] = {}
    for event in ordered:
        lanes.setdefault(event.lane, []).append(event)
    bars: list[Segment] = []
    failed_bars = 0
    for lane in sorted(lanes, key=_lane_rank):
        states = [event for event in lanes[lane] if event.until is None]
        for event, following in zip(states, [*states[1:], None]):
            if event.outcome == "end":
                continue
            end = following.at if following is not None else end_of_run
            bars.append(Segment(lane, event.state, event.at, max(end, event.at), event.outcome, event.detail))
        checks = [event for event in lanes[lane] if event.until is not None]
        if checks:
            failed = [event for event in checks if event.outcome == "bad"]
            label = f"{len(checks)} checks, " + (f"{len(failed)} failed" if failed else "all passed")
            bars.append(Segment(lane, label, min(event.at for event in checks),
                                max(event.until or event.at for event in checks), "bad" if failed else "ok"))
            for event in failed:
                if failed_bars < MAX_FAILED_CHECK_BARS:
                    failed_bars += 1
                    bars.append(Segment(lane, f"{event.state} {event.detail}", event.at, event.until or event.at,
                                        "bad", event.detail))
    return bars


def _lane_rank(lane: str) -> tuple[int, str]:
    order = ("deployment ", HEALTH_LANE, WAIT_LANE, "task ", DEPLOYMENT_CHECKS_LANE, VERDICT_LANE)
    return next((rank for rank, prefix in enumerate(order) if lane.startswith(prefix)), len(order)), lane


# -- Mermaid (summary.md) --------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    """A gantt task name: no colon, semicolon or hash (they end or comment the name)."""
    return " ".join(text.replace(":", "∶").replace(";", ",").replace("#", "no.").split())[:80]


def mermaid_gantt(events: Sequence[TimelineEvent]) -> str:
    """A Mermaid gantt of the run: one section per lane, bars in epoch milliseconds."""
    bars = segments(events)
    if not bars:
        return ""
    lines = ["gantt", "    title The deployment as this run observed it (UTC)", "    dateFormat x",
             "    axisFormat %H:%M:%S"]
    lane = None
    for bar in bars:
        if bar.lane != lane:
            lane = bar.lane
            lines.append(f"    section {_mermaid_text(lane)}")
        tag = {"bad": "crit, ", "ok": "done, ", "pending": "active, "}.get(bar.outcome, "")
        if bar.lane == VERDICT_LANE:
            tag = "milestone, " + tag
        start_ms = int(bar.start * 1000)
        end_ms = max(int(bar.end * 1000), start_ms + 1)
        lines.append(f"    {_mermaid_text(bar.label)} :{tag}{start_ms}, {end_ms}")
    return "\n".join(lines)


def summary_section(events: Sequence[TimelineEvent]) -> str:
    """The block appended to summary.md: a heading and the fenced Mermaid gantt ("" when nothing was seen)."""
    chart = mermaid_gantt(events)
    if not chart:
        return ""
    return f"\n## Timeline\n\n```mermaid\n{chart}\n```\n"


# -- SVG (the Allure report) -----------------------------------------------------------------------

_FILL = {"ok": "#2e9e5b", "pending": "#c9a227", "bad": "#d64545", "info": "#7a8699"}
_ROW_H, _LABEL_W, _CHART_W, _TOP = 26, 250, 820, 34
_LANE_CHARS = 34


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def timeline_svg(events: Sequence[TimelineEvent]) -> str:
    """An inline SVG: one row per bar, grouped by lane; hover a bar for its state, times and detail."""
    bars = segments(events)
    if not bars:
        return ""
    start = min(bar.start for bar in bars)
    span = max(max(bar.end for bar in bars) - start, 0.001)
    scale = _CHART_W / span
    height = _TOP + _ROW_H * len(bars) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_LABEL_W + _CHART_W + 20}" height="{height}" '
             f'font-family="sans-serif" font-size="12" role="img" aria-label="deployment timeline">']
    for tick in range(6):
        x = _LABEL_W + _CHART_W * tick / 5
        parts.append(f'<line x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{height - 6}" stroke="#dde2ea"/>')
        parts.append(f'<text x="{x:.1f}" y="{_TOP - 12}" text-anchor="middle" fill="#556">'
                     f'+{span * tick / 5:.1f} s</text>')
    lane = None
    for row, bar in enumerate(bars):
        y = _TOP + row * _ROW_H
        if bar.lane != lane:
            lane = bar.lane
            parts.append(f'<text x="4" y="{y + 17}" font-weight="bold" fill="#223">'
                         f'{html.escape(lane if len(lane) <= _LANE_CHARS else lane[:_LANE_CHARS - 1] + "…")}</text>')
        x = _LABEL_W + (bar.start - start) * scale
        width = max((bar.end - bar.start) * scale, 3.0)
        tip = f"{bar.lane}: {bar.label}, {_clock(bar.start)}-{_clock(bar.end)} UTC" + (
            f" ({bar.detail})" if bar.detail else "")
        parts.append(f'<g><title>{html.escape(tip)}</title><rect x="{x:.1f}" y="{y + 4}" width="{width:.1f}" '
                     f'height="{_ROW_H - 8}" rx="3" fill="{_FILL.get(bar.outcome, _FILL["info"])}"/>')
        label_w = 7 * len(bar.label)
        if label_w + 8 <= width:  # inside the bar
            label = f'<text x="{x + 4:.1f}" y="{y + 17}" fill="#fff">'
        elif x + width + 4 + label_w <= _LABEL_W + _CHART_W + 20:  # after it
            label = f'<text x="{x + width + 4:.1f}" y="{y + 17}" fill="#223">'
        else:  # before it, right-aligned
            label = f'<text x="{x - 4:.1f}" y="{y + 17}" fill="#223" text-anchor="end">'
        parts.append(f"{label}{html.escape(bar.label)}</text></g>")
    parts.append("</svg>")
    return "".join(parts)


def timeline_html(events: Sequence[TimelineEvent], title: str) -> str:
    """A self-contained page: the SVG picture, then every event as a table row (times in UTC)."""
    rows = "".join(
        f"<tr><td>{_clock(event.at)}</td><td>{html.escape(event.lane)}</td><td>{html.escape(event.state)}</td>"
        f"<td>{html.escape(event.detail)}</td></tr>"
        for event in sorted(events, key=lambda event: event.at))
    picture = timeline_svg(events) or "<p>Nothing was observed.</p>"
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Timeline</title><style>"
        "body{font-family:sans-serif;margin:12px;color:#223}table{border-collapse:collapse;font-size:12px}"
        "td,th{border-bottom:1px solid #e3e7ee;padding:2px 8px;text-align:left;vertical-align:top}"
        "</style></head><body>"
        f"<h2>{html.escape(title)}</h2>{picture}"
        "<h3>Events (UTC)</h3><table><tr><th>time</th><th>lane</th><th>state</th><th>detail</th></tr>"
        f"{rows}</table></body></html>"
    )


def from_dicts(items: Iterable[dict[str, Any]]) -> list[TimelineEvent]:
    return [TimelineEvent.from_dict(item) for item in items]
