"""What a suite's check raises when the service broke its contract: expected, actual, and where (pytest-free).

A suite's checks raise ``ContractViolation`` (an ``AssertionError``, so pytest reports it as a
failed test); the harness recognises it by this class, whichever suite raised it. Its first
line is the whole story for someone paged at 2 a.m.:
``POST http://10.0.0.5:8000/api/items [task 3f2a]: expected 403, got 201``.

``category`` lets a check name the cause it proves when that is more than a broken promise:
one of the suite's own causes (``SuiteCause.category``), so the verdict names it with the
suite's title and next step instead of ``contract_violation``.

No message built here may carry a secret: the URL goes through ``scrub_patterns``, and the
``expected``/``actual``/``details`` phrases are the caller's, already scrubbed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from ecs_verdict.redact import scrub_patterns

SECURITY_PERMISSION_GRANTED = "permission granted that must be denied"
SECURITY_NO_CREDENTIALS = "request without credentials was accepted"


class ContractViolation(AssertionError):
    """One broken promise of the service's contract, named precisely.

    ``check`` is a short name (``status``, ``schema``, ``permissions``...); ``expected`` and
    ``actual`` are already-rendered, secret-free phrases; ``security`` marks a permission
    granted that must be denied or a request without credentials that was accepted (always
    diagnosed ``permission_regression``). ``category`` names a suite cause the violation
    proves (``SuiteCause.category``), or None for a plain ``contract_violation``.
    """

    def __init__(
        self,
        *,
        check: str,
        expected: str,
        actual: str,
        method: str | None = None,
        url: str | None = None,
        status: int | None = None,
        task: str | None = None,
        security: bool = False,
        security_reason: str = SECURITY_PERMISSION_GRANTED,
        details: Sequence[str] = (),
        category: str | None = None,
    ) -> None:
        self.check = check
        self.category = category
        self.expected = expected
        self.actual = actual
        self.method = method
        self.url = scrub_url(url) if url is not None else None
        self.status = status
        self.task = task
        self.security = security
        self.security_reason = security_reason
        self.details = tuple(details)
        super().__init__(self.render())

    @classmethod
    def from_response(
        cls,
        response: httpx.Response,
        *,
        check: str,
        expected: str,
        actual: str,
        task: str | None = None,
        security: bool = False,
        security_reason: str = SECURITY_PERMISSION_GRANTED,
        details: Sequence[str] = (),
        category: str | None = None,
    ) -> ContractViolation:
        """A violation located at the response's request (method, URL) and status."""
        method, url = request_of(response)
        return cls(check=check, expected=expected, actual=actual, method=method, url=url,
                   status=response.status_code, task=task, security=security, security_reason=security_reason,
                   details=details, category=category)

    @property
    def where(self) -> str:
        """``POST http://host/path [task 3f2a]``, or ``<no request>`` when unknown."""
        place = " ".join(part for part in (self.method, self.url) if part) or "<no request>"
        return f"{place} [task {self.task}]" if self.task else place

    @property
    def summary(self) -> str:
        """``expected X, got Y`` with the security prefix if it applies (no location)."""
        prefix = f"SECURITY: {self.security_reason}: " if self.security else ""
        return f"{prefix}expected {self.expected}, got {self.actual}"

    @property
    def headline(self) -> str:
        """The one line that says what broke and where."""
        prefix = f"SECURITY: {self.security_reason}: " if self.security else ""
        return f"{prefix}{self.where}: expected {self.expected}, got {self.actual}"

    def render(self) -> str:
        """The headline, then one indented line per detail."""
        return "\n".join([self.headline, *(f"  {line}" for line in self.details)])

    def __str__(self) -> str:
        return self.render()

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only __init__: rebuild from the attributes (pickling, e.g. across processes).
        return (_rebuild, (type(self), self._state()))

    def _state(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "expected": self.expected,
            "actual": self.actual,
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "task": self.task,
            "security": self.security,
            "security_reason": self.security_reason,
            "details": self.details,
            "category": self.category,
        }


class ContractViolations(ContractViolation):
    """Several violations reported together (every check ran; all failures are listed).

    The group names a suite cause only when every violation in it names the same one.
    """

    def __init__(self, violations: Sequence[ContractViolation]) -> None:
        flat = tuple(_flatten(violations))
        if len(flat) < 2:
            raise ValueError("ContractViolations needs at least two violations; raise a single one directly")
        self.violations = flat
        first = flat[0]
        shared = all(_place(v) == _place(first) for v in flat)
        security_count = sum(v.security for v in flat)
        actual = f"{len(flat)} contract violations"
        if security_count:
            actual += f" ({security_count} of them security)"
        details: list[str] = []
        for number, violation in enumerate(flat, start=1):
            line = f"[{violation.check}] {violation.summary}" if shared else violation.headline
            details.append(f"{number}. {line}")
            details.extend(f"   {extra}" for extra in violation.details)
        categories = {v.category for v in flat}
        super().__init__(
            check="+".join(dict.fromkeys(v.check for v in flat)),
            expected="every check to pass",
            actual=actual,
            method=first.method if shared else None,
            url=first.url if shared else None,
            status=first.status if shared else None,
            task=first.task if shared else None,
            security=security_count > 0,
            security_reason="; ".join(dict.fromkeys(v.security_reason for v in flat if v.security)),
            details=details,
            category=categories.pop() if len(categories) == 1 else None,
        )

    @property
    def headline(self) -> str:
        prefix = f"SECURITY: {self.security_reason}: " if self.security else ""
        where = self.where if self.method or self.url else "several requests"
        return f"{prefix}{where}: {self.actual}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (ContractViolations, (self.violations,))


def raise_violations(violations: Iterable[ContractViolation]) -> None:
    """Raise nothing, the single violation, or all of them grouped."""
    __tracebackhide__ = True
    found = list(_flatten(violations))
    if len(found) == 1:
        raise found[0]
    if found:
        raise ContractViolations(found)


def scrub_url(url: str | httpx.URL) -> str:
    """The URL with credential-shaped parts (``token=``, ``user:password@``) masked."""
    return scrub_patterns(str(url))


def request_of(response: httpx.Response) -> tuple[str | None, str | None]:
    """The (method, scrubbed URL) of the request behind a response, if it is known."""
    try:
        request = response.request
    except RuntimeError:  # httpx raises when a response was built without a request
        return None, None
    return request.method, scrub_url(request.url)


def _flatten(violations: Iterable[ContractViolation]) -> Iterable[ContractViolation]:
    for violation in violations:
        if isinstance(violation, ContractViolations):
            yield from violation.violations
        else:
            yield violation


def _place(violation: ContractViolation) -> tuple[str | None, str | None, str | None]:
    return violation.method, violation.url, violation.task


def _rebuild(cls: type[ContractViolation], state: dict[str, Any]) -> ContractViolation:
    return cls(**state)
