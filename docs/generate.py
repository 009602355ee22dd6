"""Write the docs' reference tables from the code and files they describe.

docs/reference.md: the option table from ``ecs_verdict.settings.SPECS``, the categories table
from ``ecs_verdict.categories``. docs/gate.md: the Action's inputs and outputs from
``action.yml``. A new option, category or input reaches the docs by running this script, not by
copying text. Each table sits between ``<!-- generated: NAME -->`` and ``<!-- end -->``;
everything outside those markers is written by hand and left alone.

    ./.venv/bin/python docs/generate.py           # rewrite the tables
    ./.venv/bin/python docs/generate.py --check   # exit 1 when one is stale (tests/test_docs.py does the same)

A script here rather than a module of the package: the package does not grow doc code.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ecs_verdict.categories import CATEGORIES, NEXT_STEPS, NO_ANSWER, NOT_VERIFIED_CATEGORIES
from ecs_verdict.settings import SPECS, OptionSpec

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
ACTION = ROOT / "action.yml"
COMMAND = "./.venv/bin/python docs/generate.py"
REGION = re.compile(r"(<!-- generated: (?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- end -->)", re.DOTALL)

# Categories verdict.decide makes exit 6 that are not could-not-verify outcome kinds: a check that got no
# answer (exit 1 instead when another check fails), checks that errored, a task no check ran on.
DECIDED_NOT_VERIFIED = frozenset({NO_ANSWER, "checks_errored", "no_checks_ran"})


class StaleRegionError(ValueError):
    """A doc lacks a marker the generator writes, or names one it does not know."""


def _cell(text: Any) -> str:
    """Table-safe text: one line, and a pipe that does not end the cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(spec: OptionSpec) -> str:
    value: Any = spec.default
    if value is None or value == ():
        return "—"
    if value is False:
        return "off"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def options_table() -> str:
    """Every option of ``SPECS``, in its order, and where else it is read from."""
    rows = ["| option | environment | ini (`[pytest]`) | default | what it does |", "|---|---|---|---|---|"]
    for spec in SPECS.values():
        # As pytest's --help shows it (ecs_verdict.pytest_plugin.options registers the metavar so).
        flag = spec.flag if spec.is_flag else f"{spec.flag} {spec.metavar or spec.dest.upper()}"
        shown = f"`{_cell(flag)}`" + (" (repeatable)" if spec.repeatable else "")
        env = f"`{spec.env}`" if spec.env else "—"
        rows.append(f"| {shown} | {env} | `{spec.ini}` | {_cell(_default(spec))} | {_cell(spec.help)} |")
    return "\n".join(rows)


def _exit_of(category: str) -> str:
    return "6" if category in NOT_VERIFIED_CATEGORIES or category in DECIDED_NOT_VERIFIED else "1"


def categories_table() -> str:
    """Every category of ``ecs_verdict.categories``: the exit it gives alone, its title, its next step."""
    rows = ["| category | exit | what it means | next step |", "|---|---|---|---|"]
    for category, title in CATEGORIES.items():
        rows.append(f"| `{category}` | {_exit_of(category)} | {_cell(title)} | {_cell(NEXT_STEPS[category])} |")
    return "\n".join(rows)


def _action() -> dict[str, Any]:
    return yaml.safe_load(ACTION.read_text(encoding="utf-8"))


def action_inputs_table() -> str:
    """Every input of action.yml: required or its default, and its description."""
    rows = ["| input | default | what it does |", "|---|---|---|"]
    for name, spec in _action()["inputs"].items():
        if spec.get("required"):
            default = "required"
        else:
            default = f"`{_cell(spec['default'])}`" if spec.get("default") not in (None, "") else "—"
        rows.append(f"| `{name}` | {default} | {_cell(spec.get('description', ''))} |")
    return "\n".join(rows)


def action_outputs_table() -> str:
    """Every output of action.yml and its description."""
    rows = ["| output | value |", "|---|---|"]
    for name, spec in _action()["outputs"].items():
        rows.append(f"| `{name}` | {_cell(spec.get('description', ''))} |")
    return "\n".join(rows)


Generators = Mapping[str, Callable[[], str]]

TABLES: dict[Path, Generators] = {
    DOCS / "reference.md": {"options": options_table, "categories": categories_table},
    DOCS / "gate.md": {"action_inputs": action_inputs_table, "action_outputs": action_outputs_table},
}


def regenerate(text: str, generators: Generators, name: str = "the doc") -> str:
    """``text`` with every generated region rewritten; the hand-written rest unchanged."""
    found = [match["name"] for match in REGION.finditer(text)]
    unknown = sorted(set(found) - set(generators))
    missing = sorted(set(generators) - set(found))
    if unknown or missing:
        raise StaleRegionError(f"{name}: unknown generated region(s) {unknown}, missing {missing}; "
                               "each is <!-- generated: NAME --> ... <!-- end -->")
    return REGION.sub(lambda match: f"{match[1]}{generators[match['name']]()}\n{match[4]}", text)


def stale(tables: Mapping[Path, Generators] | None = None) -> dict[Path, str]:
    """Each doc whose tables differ from the code, with its fresh text."""
    fresh_texts = {}
    for path, generators in (TABLES if tables is None else tables).items():
        current = path.read_text(encoding="utf-8")
        fresh = regenerate(current, generators, f"docs/{path.name}")
        if fresh != current:
            fresh_texts[path] = fresh
    return fresh_texts


def main(argv: list[str], tables: Mapping[Path, Generators] | None = None) -> int:
    changed = stale(tables)
    if "--check" in argv:
        for path in changed:
            print(f"docs/{path.name} is stale: run {COMMAND}", file=sys.stderr)
        return 1 if changed else 0
    for path, fresh in changed.items():
        path.write_text(fresh, encoding="utf-8")
        print(f"docs/{path.name}: tables rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
