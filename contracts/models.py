"""The response bodies of the CivicForge health, auth, invite and membership endpoints.

Each model states exactly what the contract tolerates (shared/civicforge-api.md):
extra fields are allowed everywhere (a new field is not a break), ``version`` on
health is optional, and timestamps may be naive or aware ISO-8601 strings (the real
service writes naive UTC). Scalars are strict: ``"7"`` is not an ``int`` and ``0`` is
not a ``bool``, because a client that reads them would break.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictBool, StrictInt, StrictStr

BoardRole = Literal["owner", "organizer", "reviewer", "friend", "participant"]


def _parse_iso_datetime(value: Any) -> Any:
    # pydantic's own datetime parsing also takes unix numbers; the contract is ISO-8601 text.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("expected an ISO-8601 datetime string")
    if len(value) <= len("YYYY-MM-DD"):
        raise ValueError("expected an ISO-8601 datetime with a time, got a bare date")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO-8601 datetime") from None


# Naive (read as UTC) or aware; always an ISO-8601 string on the wire.
IsoDatetime = Annotated[datetime, BeforeValidator(_parse_iso_datetime)]


def as_utc(moment: datetime) -> datetime:
    """The moment as an aware UTC datetime; a naive one is taken as UTC, never local time."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


class ContractModel(BaseModel):
    """Base of every contract body: unknown fields are kept, values are immutable."""

    model_config = ConfigDict(extra="allow", frozen=True)


class HealthBody(ContractModel):
    """``GET /api/health`` → 200: healthy and connected to its database."""

    status: Literal["healthy"]
    database: Literal["connected"]
    version: StrictStr | None = None


class AuthBody(ContractModel):
    """``POST /api/auth/register`` and ``/api/auth/login`` → 200."""

    token: StrictStr
    user_id: StrictInt
    username: StrictStr


class BoardMembership(ContractModel):
    """The caller's membership of board_001 as ``/api/me`` reports it."""

    id: StrictInt
    role: BoardRole
    permissions: dict[str, StrictBool]


class Me(ContractModel):
    """``GET /api/me`` → 200: the caller's profile."""

    id: StrictInt
    username: StrictStr
    real_name: StrictStr
    verified: StrictBool
    role: StrictStr
    reputation: StrictInt
    created_at: IsoDatetime
    board_membership: BoardMembership | None
    experience_balance: StrictInt


class InviteCreated(ContractModel):
    """``POST /api/boards/{board_id}/invites`` → 200 (the URL carries the secret token)."""

    invite_url: StrictStr
    expires_at: IsoDatetime
    role: BoardRole


class MessageBody(ContractModel):
    """A 200 that only says what happened, e.g. ``Member removed successfully``."""

    message: StrictStr


class JoinResult(MessageBody):
    """``POST /api/boards/{board_id}/join`` → 200."""

    role: BoardRole


class Member(ContractModel):
    """One entry of ``GET /api/boards/{board_id}/members`` (newest first)."""

    id: StrictInt
    user_id: StrictInt
    username: StrictStr
    real_name: StrictStr
    role: BoardRole
    permissions: dict[str, StrictBool]
    joined_at: IsoDatetime


class ErrorBody(ContractModel):
    """Any 4xx/5xx FastAPI error: a ``detail`` string (a list of errors on 422)."""

    detail: StrictStr | list[Any]
