"""The CivicForge board contract: response models, the role table and pure checks.

Why pydantic: it states the tolerances precisely (extra fields allowed, optional
``version``, naive or aware ISO datetimes), its errors carry exact field locations
for the messages, and FastAPI (the service and the stand-in) already speaks it.

Nothing here does I/O or imports ``stage``/``tests``: a check takes an
``httpx.Response`` and returns the parsed body or raises a ``ContractViolation``.
"""

from __future__ import annotations

from contracts.checks import (
    JOIN_MESSAGE,
    REMOVED_MESSAGE,
    check_auth,
    check_denied,
    check_health,
    check_invite_created,
    check_joined,
    check_me,
    check_member_removed,
    check_members,
    check_membership,
    check_permissions_equal,
    check_permissions_include,
    check_rejected_input,
    check_status,
    check_unauthenticated,
    invite_token,
    run_all,
)
from contracts.errors import (
    ContractViolation,
    ContractViolations,
    quote_body,
    raise_violations,
    scrub_json,
    scrub_text,
    scrub_url,
)
from contracts.models import (
    AuthBody,
    BoardMembership,
    BoardRole,
    ErrorBody,
    HealthBody,
    InviteCreated,
    JoinResult,
    Me,
    Member,
    MessageBody,
    as_utc,
)
from contracts.roles import (
    BOARD_ROLES,
    NO_MEMBERSHIP_PERMISSIONS,
    PERMISSION_NAMES,
    ROLE_PERMISSIONS,
    granted_permissions,
    permissions_for,
    roles_with,
)

__all__ = [
    "AuthBody",
    "BOARD_ROLES",
    "BoardMembership",
    "BoardRole",
    "ContractViolation",
    "ContractViolations",
    "ErrorBody",
    "HealthBody",
    "InviteCreated",
    "JOIN_MESSAGE",
    "JoinResult",
    "Me",
    "Member",
    "MessageBody",
    "NO_MEMBERSHIP_PERMISSIONS",
    "PERMISSION_NAMES",
    "REMOVED_MESSAGE",
    "ROLE_PERMISSIONS",
    "as_utc",
    "check_auth",
    "check_denied",
    "check_health",
    "check_invite_created",
    "check_joined",
    "check_me",
    "check_member_removed",
    "check_members",
    "check_membership",
    "check_permissions_equal",
    "check_permissions_include",
    "check_rejected_input",
    "check_status",
    "check_unauthenticated",
    "invite_token",
    "granted_permissions",
    "permissions_for",
    "quote_body",
    "raise_violations",
    "roles_with",
    "run_all",
    "scrub_json",
    "scrub_text",
    "scrub_url",
]
