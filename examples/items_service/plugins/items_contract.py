"""What the items API promises, as pydantic models and pure checks (no pytest, no fixtures).

A check takes the response and returns the parsed body, or raises one ``ContractViolation``
naming what was expected and what came. A body that no longer matches the model names the
suite's own cause, ``items_schema_drift`` (see ``plugins.items_suite``), so the verdict says it in
this team's words, with this team's next step.
"""

from __future__ import annotations


import httpx
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from ecs_verdict.findings import ContractViolation

SCHEMA_DRIFT = "items_schema_drift"
MAX_ERRORS_SHOWN = 3


class Item(BaseModel):
    # Strict and closed: a renamed or retyped field is drift, not something to coerce or ignore.
    model_config = ConfigDict(extra="forbid", strict=True)

    id: int
    name: str
    price_cents: int


class Version(BaseModel):
    service: str
    version: str


ITEMS = TypeAdapter(list[Item])


def check_status(response: httpx.Response, expected: int, *, task: str) -> None:
    __tracebackhide__ = True
    if response.status_code != expected:
        raise ContractViolation.from_response(response, check="status", expected=str(expected),
                                              actual=str(response.status_code), task=task)


def _mismatches(error: ValidationError) -> str:
    shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:MAX_ERRORS_SHOWN])
    more = error.error_count() - MAX_ERRORS_SHOWN
    return f"{error.error_count()} mismatch(es): {shown}" + (f" (and {more} more)" if more > 0 else "")


def check_items(response: httpx.Response, *, task: str) -> list[Item]:
    """200 and a JSON list of items matching ``Item`` exactly."""
    __tracebackhide__ = True
    check_status(response, 200, task=task)
    try:
        return ITEMS.validate_json(response.content)
    except ValidationError as error:
        raise ContractViolation.from_response(response, check="schema", expected="a list of Item {id, name, "
                                              "price_cents}", actual=_mismatches(error), task=task,
                                              category=SCHEMA_DRIFT) from None


def check_version(response: httpx.Response, *, task: str) -> Version:
    """200 and ``{"service", "version"}``."""
    __tracebackhide__ = True
    check_status(response, 200, task=task)
    try:
        return Version.model_validate_json(response.content)
    except ValidationError as error:
        raise ContractViolation.from_response(response, check="schema", expected="{service, version}",
                                              actual=_mismatches(error), task=task, category=SCHEMA_DRIFT) from None
