"""The layout is the architecture: who may import whom, read from the source itself.

- ``src/ecs_verdict`` is the harness, the package a wheel ships. Its core (everything but
  ``pytest_plugin/``) is pytest-free; none of it imports CivicForge's suite (``plugins/``,
  ``contracts/``, ``smoke/``), the stage or the harness's own tests.
- Nothing CivicForge's suite ships (``plugins/``, ``contracts/``, ``smoke/``) imports ``stage`` or
  ``tests``.
- ``contracts/`` is data plus pure checks over an ``httpx.Response``: no pytest, no AWS, no pytest layer.
- No file of the package names the CivicForge service or its concepts (boards, invites, owners,
  participants, organizers), comments included: a suite brings those (``plugins/causes.py``).
  Each rule is shown red on a copy of the package with a word or an import planted in it.

Imports are read with ``ast`` (also those inside functions and ``TYPE_CHECKING`` blocks), so
a lazy import cannot slip past.
"""

from __future__ import annotations

import ast
import re
import shutil
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


def offenders(paths: list[Path], forbidden: tuple[str, ...], root: Path = ROOT) -> dict[str, list[str]]:
    """``{file: [forbidden modules it imports]}`` for every file that imports one."""
    found: dict[str, list[str]] = {}
    for path in paths:
        bad = sorted(name for name in imported_modules(path)
                     if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden))
        if bad:
            found[str(path.relative_to(root))] = bad
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


# -- the package names no service ------------------------------------------------------------------------

# CivicForge's concepts, matched as words of identifiers and prose: ``board_id``, ``BoardApi`` and "boards" count;
# "Dashboard" and ``KeyboardInterrupt`` do not (another word that merely contains one).
SERVICE_WORDS = frozenset({"board", "boards", "invite", "invites", "invited", "invitation",
                           "invitations", "owner", "owners", "ownership", "participant", "participants",
                           "organizer", "organizers"})
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")


def service_words(text: str) -> list[str]:
    """The service words in ``text``, one entry per occurrence (lower case)."""
    found = [word.lower() for word in _WORD.findall(text) if word.lower() in SERVICE_WORDS]
    # The name itself, however spelt (CivicForge splits into two camel-case words, civic-forge into two words).
    return found + ["civicforge"] * len(re.findall(r"civic[\s_-]?forge", text, re.IGNORECASE))


def word_offenders(root: Path) -> dict[str, list[str]]:
    """``{file: [line numbers: words]}`` for every file under ``root`` (any kind, comments included)."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        hits = [f"{number}: {', '.join(words)}" for number, line in enumerate(text.splitlines(), start=1)
                if (words := service_words(line))]
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def test_no_module_of_the_package_names_the_civicforge_service() -> None:
    assert list((ROOT / PACKAGE).rglob("*.py")), "no package sources: the layout moved and this test with it"
    assert word_offenders(ROOT / PACKAGE) == {}


@pytest.mark.parametrize(("text", "words"), [
    ("DEFAULT_BOARD_ID = 'board_001'", ["board", "board"]),
    ("class BoardApi:  # the owner's session", ["board", "owner"]),
    ("# Invites and their participants", ["invites", "participants"]),
    ('"reportName": "CivicForge smoke"', ["civicforge"]),
    ("ns = 'civicforge/smoke'", ["civicforge"]),
    ("except KeyboardInterrupt: check the AWS Health Dashboard; onboarding", []),
])
def test_the_word_reader_finds_words_not_substrings(text: str, words: list[str]) -> None:
    assert service_words(text) == words


def planted_copy(tmp_path: Path) -> Path:
    """A copy of the package to plant things in (the real one stays untouched)."""
    copy = tmp_path / "ecs_verdict"
    shutil.copytree(ROOT / PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_a_planted_civicforge_word_turns_the_rule_red(tmp_path: Path) -> None:
    copy = planted_copy(tmp_path)
    assert word_offenders(copy) == {}
    target = copy / "verdict.py"
    target.write_text(target.read_text(encoding="utf-8") + "\n# the board owner must exist\n", encoding="utf-8")
    found = word_offenders(copy)
    assert list(found) == ["verdict.py"] and found["verdict.py"][0].endswith(": board, owner")


@pytest.mark.parametrize("planted", ["from plugins.causes import CIVICFORGE_PROFILE", "import contracts.errors",
                                     "from smoke import test_health", "from stage.seed import PORT",
                                     "def later():\n    import tests.smoke_runs"])
def test_a_planted_import_of_the_suite_or_stage_turns_the_rule_red(tmp_path: Path, planted: str) -> None:
    copy = planted_copy(tmp_path)
    package = sorted(copy.rglob("*.py"))
    assert offenders(package, SUITE_AND_STAGE, root=copy) == {}
    target = copy / "pytest_plugin" / "reporting.py"
    target.write_text(target.read_text(encoding="utf-8") + "\n" + planted + "\n", encoding="utf-8")
    assert list(offenders(package, SUITE_AND_STAGE, root=copy)) == [str(Path("pytest_plugin") / "reporting.py")]
