"""The layout is the architecture: who may import whom, read from the source itself.

- ``src/ecs_verdict`` is the harness, the package a wheel ships. Its core (everything but
  ``pytest_plugin/``) is pytest-free; none of it imports CivicForge's suite (``plugins/``,
  ``contracts/``, ``smoke/``), the stage or the harness's own tests.
- Nothing CivicForge's suite ships (``plugins/``, ``contracts/``, ``smoke/``) imports ``stage`` or
  ``tests``.
- ``contracts/`` is data plus pure checks over an ``httpx.Response``: no pytest, no AWS, no pytest layer.

Imports are read with ``ast`` (also those inside functions and ``TYPE_CHECKING`` blocks), so
a lazy import cannot slip past.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names (``from a.b import c`` -> ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def sources(folder: str, *, recursive: bool = True) -> list[Path]:
    pattern = "**/*.py" if recursive else "*.py"
    return sorted((ROOT / folder).glob(pattern))


def offenders(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """``{file: [forbidden modules it imports]}`` for every file that imports one."""
    found: dict[str, list[str]] = {}
    for path in paths:
        bad = sorted(name for name in imported_modules(path)
                     if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


PACKAGE = "src/ecs_verdict"
SUITE_AND_STAGE = ("plugins", "contracts", "smoke", "stage", "tests")


def core_sources() -> list[Path]:
    return [path for path in sources(PACKAGE) if "pytest_plugin" not in path.relative_to(ROOT / PACKAGE).parts]


RULES = [
    pytest.param(core_sources(), ("pytest", "_pytest", "allure", "xdist", "ecs_verdict.pytest_plugin", *SUITE_AND_STAGE),
                 id="the core is pytest-free, generic and knows no layer above it"),
    pytest.param(sources(f"{PACKAGE}/pytest_plugin"), SUITE_AND_STAGE,
                 id="the pytest plugin never imports CivicForge's suite, the stage or the tests"),
    pytest.param(sources("plugins") + sources("smoke") + sources("contracts"), ("stage", "tests"),
                 id="nothing CivicForge's suite ships imports the stage or the harness's own tests"),
    # A check reads an httpx.Response and scrubs what it quotes with the core's redaction; nothing more.
    pytest.param(sources("contracts"), ("pytest", "_pytest", "boto3", "botocore", "plugins", "ecs_verdict.pytest_plugin"),
                 id="contracts are data and pure checks"),
]


@pytest.mark.parametrize(("paths", "forbidden"), RULES)
def test_imports_follow_the_layers(paths: list[Path], forbidden: tuple[str, ...]) -> None:
    assert paths, "no source files found: the layout moved and this test with it"
    assert offenders(paths, forbidden) == {}


def test_the_rule_reader_sees_imports_inside_functions_and_type_checking_blocks(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from stage.seed import PORT\n"
                      "def later():\n    import plugins.ledger\n", encoding="utf-8")
    assert imported_modules(module) == {"typing", "stage.seed", "plugins.ledger"}
