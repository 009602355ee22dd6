"""What a suite (a service's smoke tests and its plugin) tells the harness about itself.

The harness names no service: a suite's plugin returns a ``SuiteProfile`` from the
``pytest_smoke_suite`` hook, and the run takes from it the report's name, the default metrics
namespace and the suite's own causes (each with its title and next step, so a failure that a
check names by its category reads like one of the harness's own). A run no suite answers for
uses ``NO_SUITE``: generic names, no causes of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CATEGORY_SHAPE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class SuiteCause:
    """A cause only this suite knows: a check names it by raising a finding with ``category``."""

    category: str  # snake_case, unique among the harness's categories and the suite's
    title: str  # one line: what went wrong
    next_step: str  # what a person does about it
    not_verified: bool = False  # True: exit 6 (could not verify); False: exit 1 (the service failed)
    # Optional: a regular expression over the failing task's log lines that recognises the cause from evidence.
    log_pattern: str | None = None
    # The failures on the same task this cause explains (its consequences, not causes of their own): contract
    # violations answered with one of these HTTP statuses, or from a check whose name matches this regex.
    absorbs_statuses: tuple[int, ...] = ()
    absorbs_checks: str | None = None

    def absorbs(self, check: str, status: object) -> bool:
        """Whether a contract violation of ``check`` (answered ``status``) on this cause's task is its consequence."""
        if status in self.absorbs_statuses:
            return True
        return self.absorbs_checks is not None and re.search(self.absorbs_checks, check or "") is not None


@dataclass(frozen=True)
class SuiteProfile:
    name: str  # the report's and the header's name, e.g. "Acme orders"
    metrics_namespace: str  # the default of --metrics-namespace, e.g. "Acme/Smoke"
    causes: tuple[SuiteCause, ...] = ()
    # The suite's own next step for one of the harness's categories (its commands, its runbook), by category.
    next_steps: Mapping[str, str] = field(default_factory=dict)

    @property
    def report_name(self) -> str:
        """``Acme orders smoke``: the title of the Allure report and the CI executor."""
        return f"{self.name} smoke"

    def cause(self, category: str | None) -> SuiteCause | None:
        """The suite's cause of that category, or None (a harness category, or no category at all)."""
        return next((cause for cause in self.causes if cause.category == category), None)

    @property
    def not_verified_categories(self) -> frozenset[str]:
        """The suite's causes that mean "could not verify" (exit 6) rather than "the service failed"."""
        return frozenset(cause.category for cause in self.causes if cause.not_verified)

    def log_patterns(self) -> list[tuple[SuiteCause, re.Pattern[str]]]:
        return [(cause, re.compile(cause.log_pattern)) for cause in self.causes if cause.log_pattern]


DEFAULT_METRICS_NAMESPACE = "EcsVerdict/Smoke"
NO_SUITE = SuiteProfile(name="ecs-verdict", metrics_namespace=DEFAULT_METRICS_NAMESPACE)


def profile_problems(profile: SuiteProfile, harness_categories: Iterable[str]) -> list[str]:
    """What is wrong with a suite's profile (empty when nothing): each problem one line naming the fix."""
    taken = set(harness_categories)
    problems: list[str] = []
    seen: set[str] = set()
    for cause in profile.causes:
        if not CATEGORY_SHAPE.match(cause.category):
            problems.append(f"cause {cause.category!r} is not a snake_case name (e.g. missing_fixture_data)")
        elif cause.category in taken:
            problems.append(f"cause {cause.category!r} is one of the harness's own categories: give it another name")
        elif cause.category in seen:
            problems.append(f"cause {cause.category!r} is declared twice")
        seen.add(cause.category)
        for label, pattern in (("log_pattern", cause.log_pattern), ("absorbs_checks", cause.absorbs_checks)):
            if pattern is None:
                continue
            try:
                re.compile(pattern)
            except re.error as error:
                problems.append(f"cause {cause.category!r}: {label} {pattern!r} is not a regular expression ({error})")
    unknown = sorted(set(profile.next_steps) - taken)
    if unknown:
        problems.append(f"next_steps names {', '.join(unknown)}, not categories of the harness")
    return [f"suite {profile.name!r}: {problem}" for problem in problems]
