"""The CivicForge board roles and the permissions each one must have.

Copied from the service's role table (shared/civicforge-api.md, "Roles and
permissions"). A member's permissions are the snapshot stored when they joined, so
a member who joined with a role must show exactly that role's row.

On the wire the service lists granted permissions only, each ``true`` (recorded:
shared/civicforge-real-exchanges.jsonl): absent means not granted.
:func:`granted_permissions` is that form of a row.

A user with no membership row gets participant permissions (view_board,
claim_quest, submit_work), except the creator of the earliest quest, who gets
owner permissions: :data:`NO_MEMBERSHIP_PERMISSIONS` is that default.

Treat these dicts as read-only: :func:`permissions_for` hands out copies.
"""

from __future__ import annotations

BOARD_ROLES: tuple[str, ...] = ("owner", "organizer", "reviewer", "friend", "participant")

PERMISSION_NAMES: tuple[str, ...] = (
    "view_board",
    "create_quest",
    "claim_quest",
    "submit_work",
    "verify_quest",
    "create_invites",
    "manage_members",
    "view_analytics",
    "edit_any_quest",
    "delete_any_quest",
    "edit_own_quest",
    "comment_on_quest",
)


def _row(*granted: str) -> dict[str, bool]:
    unknown = set(granted) - set(PERMISSION_NAMES)
    if unknown:  # a typo here would silently weaken every permission check
        raise ValueError(f"unknown permissions in role table: {sorted(unknown)}")
    return {name: name in granted for name in PERMISSION_NAMES}


ROLE_PERMISSIONS: dict[str, dict[str, bool]] = {
    "owner": _row(
        "view_board",
        "create_quest",
        "verify_quest",
        "create_invites",
        "manage_members",
        "view_analytics",
        "edit_any_quest",
        "delete_any_quest",
    ),
    "organizer": _row(
        "view_board",
        "create_quest",
        "verify_quest",
        "create_invites",
        "view_analytics",
        "edit_own_quest",
    ),
    "reviewer": _row("view_board", "verify_quest", "view_analytics", "comment_on_quest"),
    "friend": _row("view_board", "create_quest", "claim_quest", "verify_quest"),
    "participant": _row("view_board", "claim_quest", "submit_work"),
}

# What a logged-in user without a membership row on the board gets.
NO_MEMBERSHIP_PERMISSIONS: dict[str, bool] = ROLE_PERMISSIONS["participant"]


def permissions_for(role: str) -> dict[str, bool]:
    """A copy of the permission row of ``role`` (lowercase board role).

    Raises ``ValueError`` naming the known roles for anything else: a wrong role
    name in a test is a bug in the test, not a finding about the service.
    """
    try:
        return dict(ROLE_PERMISSIONS[role])
    except KeyError:
        raise ValueError(f"unknown board role {role!r}; known roles: {', '.join(BOARD_ROLES)}") from None


def granted_permissions(role: str) -> dict[str, bool]:
    """The permissions of ``role`` as the service sends them: granted ones only, each ``True``."""
    return {name: True for name, granted in permissions_for(role).items() if granted}


def roles_with(permission: str) -> tuple[str, ...]:
    """The roles that are granted ``permission`` (e.g. who may ``create_invites``)."""
    if permission not in PERMISSION_NAMES:
        known = ", ".join(PERMISSION_NAMES)
        raise ValueError(f"unknown permission {permission!r}; known permissions: {known}")
    return tuple(role for role in BOARD_ROLES if ROLE_PERMISSIONS[role][permission])
