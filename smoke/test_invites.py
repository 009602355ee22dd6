"""Invites: the owner invites, a participant joins once, the invite cannot be reused.

Writes, kept to what can be undone: one single-use invite valid for an hour (the
service cannot delete invites) and one membership, which the owner removes again
at the end of the test (``smoke_memberships`` also removes it when a step fails).
The participant is the first account of the pool that no other run holds: runs
that overlap (a re-run gate beside a canary) never blame the service for each other.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

import pytest

from contracts import (
    check_invite_created,
    check_joined,
    check_member_removed,
    check_membership,
    check_status,
    invite_token,
)
from plugins.board_api import BoardApi
from plugins.ledger import MembershipWrites
from ecs_verdict.targets import Target

INVITED_ROLE = "participant"
INVITE_HOURS = 1
ME_BOARD = "board_001"  # the only board /api/me reports a membership for


@pytest.mark.writes
def test_single_use_invite_admits_the_participant_once(
    smoke_owner: BoardApi, smoke_participants: list[BoardApi], smoke_memberships: MembershipWrites,
    smoke_target: Target,
) -> None:
    """Create (single use, 1 h) -> join -> reuse refused -> unknown token refused -> removed again."""
    task = smoke_target.short_id
    invite = check_invite_created(
        smoke_owner.create_invite(INVITED_ROLE, max_uses=1, expires_hours=INVITE_HOURS),
        now_utc=datetime.now(timezone.utc), expected_role=INVITED_ROLE, expires_hours=INVITE_HOURS, task=task,
    )
    token = invite_token(invite.invite_url)

    claim = smoke_memberships.join_free(smoke_participants, token)
    if claim.member is None or claim.response is None:
        pytest.skip(claim.notes[-1])
    participant = claim.member
    check_joined(claim.response, INVITED_ROLE, task=task)
    if smoke_owner.board_id == ME_BOARD:
        check_membership(participant.me(), INVITED_ROLE, task=task)

    check_status(smoke_memberships.join(participant, token), 400, "Invite expired or already used", task=task)
    check_status(participant.join(secrets.token_urlsafe(32)), 404, "Invalid invite", task=task)

    check_member_removed(smoke_memberships.remove(participant.user_id), task=task)
