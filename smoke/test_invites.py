"""Invites: the owner invites, the participant joins once, the invite cannot be reused.

Writes, kept to what can be undone: one single-use invite valid for an hour (the
service cannot delete invites) and one membership, which the owner removes again
at the end of the test (``smoke_memberships`` also removes it when a step fails).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

import pytest

from contracts import (
    check_invite_created,
    check_joined,
    check_me,
    check_member_removed,
    check_permissions_equal,
    check_status,
    invite_token,
)
from contracts.errors import ContractViolation
from plugins.core.board_api import BoardApi
from plugins.core.ledger import MembershipWrites
from plugins.core.targets import Target

INVITED_ROLE = "participant"
INVITE_HOURS = 1


@pytest.mark.writes
def test_single_use_invite_admits_the_participant_once(
    smoke_owner: BoardApi, smoke_participant: BoardApi, smoke_memberships: MembershipWrites, smoke_target: Target
) -> None:
    """Create (single use, 1 h) -> join -> reuse refused -> unknown token refused -> removed again."""
    task = smoke_target.short_id
    invite = check_invite_created(
        smoke_owner.create_invite(INVITED_ROLE, max_uses=1, expires_hours=INVITE_HOURS),
        now_utc=datetime.now(timezone.utc), expected_role=INVITED_ROLE, expires_hours=INVITE_HOURS, task=task,
    )
    token = invite_token(invite.invite_url)

    check_joined(smoke_memberships.join(smoke_participant, token), INVITED_ROLE, task=task)
    me = smoke_participant.me()
    membership = check_me(me, task=task).board_membership
    if smoke_owner.board_id == "board_001":  # /api/me reports board_001 only
        if membership is None or membership.role != INVITED_ROLE:
            raise ContractViolation.from_response(
                me, check="membership", expected=f"board_membership with role {INVITED_ROLE!r} after joining",
                actual="no membership" if membership is None else f"role {membership.role!r}", task=task)
        check_permissions_equal(membership.permissions, INVITED_ROLE, response=me, task=task)

    check_status(smoke_memberships.join(smoke_participant, token), 400, "Invite expired or already used", task=task)
    check_status(smoke_participant.join(secrets.token_urlsafe(32)), 404, "Invalid invite", task=task)

    check_member_removed(smoke_memberships.remove(smoke_participant.user_id), task=task)
