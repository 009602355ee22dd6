"""What a suite (a service's smoke tests and its plugin) tells the harness about itself.

The harness names no service: a suite's plugin returns a ``SuiteProfile`` from the
``pytest_smoke_suite`` hook, and the run takes from it the report's name, the default metrics
namespace and the suite's own causes (each with its title and next step, so a failure that a
check names by its category reads like one of the harness's own).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SuiteCause:
    """A cause only this suite knows: a check names it by raising a finding with ``category``."""

    category: str  # snake_case, unique among the harness's categories and the suite's
    title: str  # one line: what went wrong
    next_step: str  # what a person does about it
    not_verified: bool = False  # True: exit 6 (could not verify); False: exit 1 (the service failed)
    # Optional: a regular expression over the failing task's log lines that recognises the cause from evidence.
    log_pattern: str | None = None


@dataclass(frozen=True)
class SuiteProfile:
    name: str  # the report's and the header's name, e.g. "CivicForge board"
    metrics_namespace: str  # the default of --metrics-namespace, e.g. "CivicForge/Smoke"
    causes: tuple[SuiteCause, ...] = ()
