"""The contract against the real service's recorded answers: it accepts them, and it can fail.

The recording (tests/recordings/, copied from shared/) is the reference: a check that
rejects a recorded answer would fail every healthy deploy; a check that accepts a
planted fault would pass a broken one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.replay import (
    CHECKED_NAMES,
    MUTATIONS,
    NOT_CHECKED,
    RecordedExchange,
    checks_for,
    load_exchanges,
    mutants,
    recording_clock,
    violations_of,
)

RECORDINGS = Path(__file__).parent / "recordings"
EXCHANGES_FILE = RECORDINGS / "civicforge-real-exchanges.jsonl"
SHARED_COPY = Path(__file__).resolve().parents[2] / "shared" / EXCHANGES_FILE.name
EXCHANGES = load_exchanges(EXCHANGES_FILE)
CLOCK = recording_clock(EXCHANGES)
CHECKED = [exchange for exchange in EXCHANGES if checks_for(exchange, CLOCK)]
MUTANTS = [(exchange, label, mutated) for exchange in CHECKED for label, mutated in mutants(exchange)]


def test_the_copy_is_the_shared_recording() -> None:
    if not SHARED_COPY.exists():
        pytest.skip(f"{SHARED_COPY} is not beside this checkout")
    assert EXCHANGES_FILE.read_bytes() == SHARED_COPY.read_bytes()


def test_every_recorded_exchange_is_checked_or_says_why_not() -> None:
    names = [exchange.name for exchange in EXCHANGES]
    assert len(names) == len(set(names)) == 41
    assert set(names) == CHECKED_NAMES | set(NOT_CHECKED)
    assert not CHECKED_NAMES & set(NOT_CHECKED)
    assert len(CHECKED) == 36


@pytest.mark.parametrize("exchange", CHECKED, ids=lambda exchange: exchange.name)
def test_the_contract_accepts_the_real_answer(exchange: RecordedExchange) -> None:
    found = violations_of(exchange, CLOCK)
    assert not found, "\n".join(str(violation).splitlines()[0] for violation in found)


@pytest.mark.parametrize(("exchange", "label", "mutated"), MUTANTS,
                         ids=[f"{exchange.name}-{label}" for exchange, label, _ in MUTANTS])
def test_the_contract_rejects_a_planted_fault(exchange: RecordedExchange, label: str,
                                              mutated: RecordedExchange) -> None:
    assert violations_of(mutated, CLOCK), f"{exchange.name} with {label} passed every check"


def test_each_kind_of_fault_is_planted_and_security_faults_are_flagged() -> None:
    planted = {label.split(" field ")[0] if label.startswith("missing") else label for _, label, _ in MUTANTS}
    assert planted == {*MUTATIONS, "missing"}
    granted = [mutated for _, label, mutated in MUTANTS if label == "extra granted permission"]
    assert {mutated.name for mutated in granted} == {
        "me_owner", "me_participant_after_join", "members_as_owner", "members_as_participant"}
    for mutated in granted:
        assert any(violation.security for violation in violations_of(mutated, CLOCK)), mutated.name
    print(f"replay: {len(CHECKED)} real answers accepted, {len(MUTANTS)} planted faults rejected")


def test_an_invite_an_hour_off_names_the_expiry() -> None:
    invite = next(exchange for exchange in EXCHANGES if exchange.name == "invite_owner_participant_1use_1h")
    (mutated,) = [mutated for exchange, label, mutated in MUTANTS
                  if exchange is invite and label == "expires_at an hour off"]
    (violation,) = violations_of(mutated, CLOCK)
    assert violation.check == "expires_at" and "off by a whole 1h" in str(violation)
