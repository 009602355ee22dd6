"""No secret reaches a report file or the terminal, in a failing run or a passing one.

Planted: the smoke accounts' passwords (from the stage's secret), an AWS secret key.
Learned during the run: every bearer token (JWT-shaped) and every invite token the
service issued (read back from the stage's database afterwards).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.smoke_runs import run_smoke

PLANTED_AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTEDKEY"
JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}")


def issued_invite_tokens(stage: Any) -> list[str]:
    database = stage._workdir / "civicforge.db"  # stage internals are test infrastructure
    with sqlite3.connect(database) as connection:
        return [row[0] for row in connection.execute("SELECT token FROM board_invites")]


def report_texts(report_dir: Path) -> dict[Path, str]:
    return {path: path.read_text(errors="replace") for path in report_dir.rglob("*") if path.is_file()}


@pytest.mark.parametrize(
    ("faults", "exit_code"),
    [
        # The participant may create invites: the security failure's response carries an invite URL.
        (("participant_can_invite",), 1),
        ((), 0),
    ],
    ids=["failing", "passing"],
)
def test_no_secret_in_any_report_or_in_the_terminal(stage_factory: Any, tmp_path: Path, faults: tuple[str, ...],
                                                    exit_code: int) -> None:
    stage = stage_factory("healthy", faults=faults)
    env = {**stage.env, "AWS_SECRET_ACCESS_KEY": PLANTED_AWS_SECRET}
    run = run_smoke(env, tmp_path / "reports", "-v", "-rA", "--showlocals")
    assert run.exit_code == exit_code, run.output

    secrets = [account["password"] for account in stage.smoke_accounts.values()]
    secrets += [PLANTED_AWS_SECRET, *issued_invite_tokens(stage)]
    assert len(secrets) > 3, "the run must have created invites for this test to mean anything"
    files = report_texts(tmp_path / "reports")
    assert any(path.name.endswith("-attachment.txt") for path in files), "Allure attachments are part of the check"
    for where, text in [*files.items(), ("terminal output", run.output)]:
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"
        assert not JWT.search(text), f"a bearer token leaked into {where}: {JWT.search(text)}"
