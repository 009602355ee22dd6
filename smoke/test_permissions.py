"""Permissions: the board has an owner, the smoke owner is it, the participant is refused.

A permission granted where it must be denied is reported as a security failure
(the contract checks flag it). The refused writes ask for nothing that could do
harm even if the service wrongly allowed them: a single-use one-hour invite, and
the removal of a user id no user has (so no other run's membership is touched).
"""

from __future__ import annotations

import pytest

from contracts import (
    check_denied,
    check_me,
    check_members,
    check_permissions_include,
    check_status,
    check_unauthenticated,
    run_all,
)
from contracts.errors import MISSING_BOARD_OWNER, ContractViolation
from plugins.board_api import Anonymous, BoardApi
from ecs_verdict.targets import Target

OWNER_CHECK = "board_has_owner"
ME_BOARD = "board_001"  # the only board /api/me reports a membership for
# No user has this id (the largest PostgreSQL integer): removing it deletes nothing, whoever asks.
NOT_A_USER_ID = 2_147_483_647
OWNER_BOOTSTRAP = ("migrations make the earliest user with role Organizer owner of board_001 when "
                   "board_memberships is empty; ownership cannot be granted through the API")


@pytest.mark.readonly
def test_board_has_an_owner(smoke_owner: BoardApi, smoke_target: Target) -> None:
    """Someone is owner of the board, or nobody can invite or manage members (runbook lesson 3)."""
    response = smoke_owner.members()
    members = check_members(response, task=smoke_target.short_id)
    if not any(member.role == "owner" for member in members):
        board = smoke_owner.board_id
        raise ContractViolation.from_response(
            response, check=OWNER_CHECK, expected=f"a member with role 'owner' on {board}",
            actual=f"{board} has no owner: Missing Initial Board Owner (runbook lesson 3), "
                   f"none of its {len(members)} member(s) is an owner",
            task=smoke_target.short_id, details=[f"fix: {OWNER_BOOTSTRAP}; re-run migrations once an Organizer exists"],
            category=MISSING_BOARD_OWNER)  # absorbs the 403s it causes on the task


@pytest.mark.readonly
def test_owner_account_is_an_owner(smoke_owner: BoardApi, smoke_target: Target) -> None:
    """The owner smoke account holds the owner role on the board."""
    response = smoke_owner.members()
    members = check_members(response, task=smoke_target.short_id)
    mine = next((member for member in members if member.user_id == smoke_owner.user_id), None)
    if mine is None or mine.role != "owner":
        held = "no membership" if mine is None else f"role {mine.role!r}"
        raise ContractViolation.from_response(
            response, check="owner_account", expected=f"smoke account {smoke_owner.username!r} owner of "
                                                      f"{smoke_owner.board_id}",
            actual=f"{held}: the owner smoke account is not an owner", task=smoke_target.short_id,
            details=[f"the runbook's fix (lesson 3): {OWNER_BOOTSTRAP}; use that earliest Organizer as the "
                     "owner smoke account"])


@pytest.mark.readonly
def test_owner_can_invite_and_manage_members(smoke_owner: BoardApi, smoke_target: Target) -> None:
    """/api/me: the owner's permissions include create_invites and manage_members."""
    if smoke_owner.board_id != ME_BOARD:
        pytest.skip(f"/api/me reports {ME_BOARD} only; the board under test is {smoke_owner.board_id}")
    response = smoke_owner.me()
    membership = check_me(response, task=smoke_target.short_id).board_membership
    permissions = membership.permissions if membership is not None else {}
    check_permissions_include(permissions, ["create_invites", "manage_members"], response=response,
                              task=smoke_target.short_id)


@pytest.mark.readonly
def test_participant_cannot_create_invites(smoke_participant: BoardApi, smoke_target: Target) -> None:
    """403 "No permission to create invites"; a 2xx is a security failure."""
    response = smoke_participant.create_invite("participant")
    check_denied(response, "No permission to create invites", task=smoke_target.short_id)


@pytest.mark.writes
def test_participant_cannot_remove_members(smoke_participant: BoardApi, smoke_target: Target) -> None:
    """403 "No permission to manage members" (aimed at no one: harmless if wrongly allowed)."""
    response = smoke_participant.remove_member(NOT_A_USER_ID)
    check_denied(response, "No permission to manage members", task=smoke_target.short_id)


@pytest.mark.readonly
def test_requests_without_credentials_are_refused(smoke_anonymous: Anonymous, smoke_target: Target) -> None:
    """No Authorization header: 401 or 403 on every route, never a 2xx."""
    task = smoke_target.short_id
    run_all(
        lambda: check_unauthenticated(smoke_anonymous.me(), task=task),
        lambda: check_unauthenticated(smoke_anonymous.members(), task=task),
        lambda: check_unauthenticated(smoke_anonymous.create_invite("participant"), task=task),
    )


@pytest.mark.writes
def test_removing_a_non_member_answers_404(smoke_owner: BoardApi, smoke_target: Target) -> None:
    """DELETE of someone who is not a member: 404 "Member not found", not a 500 (runbook lesson 7)."""
    task = smoke_target.short_id
    response = smoke_owner.remove_member(NOT_A_USER_ID)
    if response.status_code == 500:
        raise ContractViolation.from_response(
            response, check="status", expected='404 "Member not found"',
            actual="500: runbook lesson 7 (Database Adapter Compatibility): the delete relied on "
                   "cursor.rowcount, which the PostgreSQL adapter lacks",
            task=task, details=["fix: check that the membership exists before deleting instead of reading rowcount"])
    check_status(response, 404, "Member not found", task=task)
