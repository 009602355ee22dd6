"""The stand-in's fault switches: names, parsing and validation.

Each switch reproduces one failure from the CivicForge runbook
(`shared/deployment-lessons.md`) the way the real bug shows itself. The stage
and the stand-in app both parse switches here, so a typo is caught once, with
one line that lists what exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Switches the stand-in app itself implements (per process: one task can have
# them while its sibling does not).
APP_FAULTS: dict[str, str] = {
    "no_root_health": "only /api/health exists; /health is 404 (lesson 1)",
    "no_migrations": "tables never created: health 200, other routes 500 'no such table' (lesson 2)",
    "no_owner": "no owner membership on board_001 (lesson 3)",
    "rowcount": "removing a non-member is a 500 AttributeError about rowcount (lesson 7)",
    "urlsafe": "invite creation is a 500: module 'secrets' has no attribute 'urlsafe' (lesson 8)",
    "participant_can_invite": "permission regression: participants may create invites",
    "slow_ms": "N ms added to every response (benchmarks); slow_ms=N",
    "warmup_s": "nothing answers on the port for the first N seconds; warmup_s=N",
    "reset_once": "the first request to PATH gets no answer: its connection is reset (a network hiccup, or the "
    "real service dropping a connection after a 500); reset_once=PATH",
}
# Switches only the stage understands: they change the seeded deployment.
STAGE_FAULTS: dict[str, str] = {
    "curl_health_check": "the task definition's health check uses curl, which the image lacks (lesson 1)",
    "no_start_period": "the task definition's health check has no startPeriod (what the harness's lint warns of)",
}
VALUED_FAULTS = frozenset({"slow_ms", "warmup_s"})
PATH_FAULTS = frozenset({"reset_once"})
ALL_FAULTS: dict[str, str] = {**APP_FAULTS, **STAGE_FAULTS}


class FaultError(ValueError):
    """A fault switch that does not exist or has a bad value."""


@dataclass(frozen=True, slots=True)
class Faults:
    """A parsed set of switches, e.g. from ``--fault urlsafe --fault slow_ms=100``."""

    names: frozenset[str] = frozenset()
    slow_ms: int = 0
    warmup_s: float = 0.0
    reset_once: str | None = None  # a request path, e.g. /api/me
    raw: tuple[str, ...] = field(default=())

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def app_args(self) -> list[str]:
        """The switches as command-line arguments for the stand-in app."""
        args: list[str] = []
        for item in self.raw:
            if item.split("=", 1)[0] in APP_FAULTS:
                args += ["--fault", item]
        return args


def parse_faults(items: list[str] | tuple[str, ...]) -> Faults:
    names: set[str] = set()
    slow_ms, warmup_s = 0, 0.0
    reset_once: str | None = None
    for item in items:
        name, _, value = item.partition("=")
        if name not in ALL_FAULTS:
            known = ", ".join(sorted(ALL_FAULTS))
            raise FaultError(f"unknown fault {name!r}; known faults: {known}")
        if name in PATH_FAULTS:
            if not value.startswith("/"):
                raise FaultError(f"fault {name} needs a request path, e.g. {name}=/api/me (got {item!r})")
            reset_once = value
        elif name in VALUED_FAULTS:
            try:
                number = float(value)
            except ValueError:
                raise FaultError(f"fault {name} needs a number, e.g. {name}=100 (got {item!r})") from None
            if number < 0:
                raise FaultError(f"fault {name} must not be negative (got {item!r})")
            if name == "slow_ms":
                slow_ms = int(number)
            else:
                warmup_s = number
        elif value:
            raise FaultError(f"fault {name} takes no value (got {item!r})")
        names.add(name)
    return Faults(frozenset(names), slow_ms, warmup_s, reset_once, tuple(items))
