"""The pytest layer's shape: every key of its state in one place (``pytest_plugin/stash.py``).

Read from the source with ``ast``: a ``StashKey`` made anywhere else in the layer fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PLUGIN = Path(__file__).resolve().parent.parent / "src" / "ecs_verdict" / "pytest_plugin"


def stash_keys_outside(folder: Path, home: str = "stash.py") -> dict[str, int]:
    """``{file: how many StashKey(...) it makes}`` for every module of ``folder`` but ``home``."""
    found: dict[str, int] = {}
    for path in sorted(folder.glob("*.py")):
        if path.name == home:
            continue
        made = sum(1 for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                   if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
                   and node.value.attr == "StashKey")
        if made:
            found[path.name] = made
    return found


def test_every_stash_key_of_the_pytest_layer_lives_in_stash_py() -> None:
    assert stash_keys_outside(PLUGIN) == {}
    assert stash_keys_outside(PLUGIN, home="") == {"stash.py": stash_keys_outside(PLUGIN, home="")["stash.py"]}


def test_the_rule_sees_a_key_made_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "stash.py").write_text("import pytest\nkey = pytest.StashKey[int]()\n", encoding="utf-8")
    (tmp_path / "fixtures.py").write_text("import pytest\nother_key = pytest.StashKey[str]()\n", encoding="utf-8")
    assert stash_keys_outside(tmp_path) == {"fixtures.py": 1}
