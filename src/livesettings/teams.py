"""Teams (DESIGN §11): document keys, roles and what each role may do. Pure, no I/O.

A team's document key is ``team:<team_id>`` (a UUID the server makes). The rules here are
applied by the stores inside the transaction that changes a membership (so two requests cannot
both remove the last owner) and by the write path before a mutation is queued.

    owner   everything, including deleting the team and managing owners
    admin   manage members below owner; write every field, api_keys included
    member  read; write theme, language, preferences and ai_providers
    viewer  read
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final, Literal, cast

from .errors import Conflict, Forbidden, NotFound, ValidationError
from .merge import leaf_edits
from .paths import to_pointer

__all__ = [
    "MEMBER_FIELDS",
    "ROLES",
    "TEAM_PREFIX",
    "Role",
    "check_delete",
    "check_mutation",
    "check_remove",
    "check_set_role",
    "check_write",
    "is_team_key",
    "membership_key",
    "new_team_id",
    "parse_membership_key",
    "parse_role",
    "parse_team_id",
    "team_id_of",
    "team_key",
    "team_not_found",
]

Role = Literal["owner", "admin", "member", "viewer"]
ROLES: Final[tuple[Role, ...]] = ("owner", "admin", "member", "viewer")
TEAM_PREFIX: Final = "team:"
MEMBER_FIELDS: Final = frozenset({"theme", "language", "preferences", "ai_providers"})
"""The fields a ``member`` may write (``api_keys`` needs ``admin``)."""

_RANK: Final[dict[str, int]] = {"owner": 3, "admin": 2, "member": 1, "viewer": 0}


def new_team_id() -> str:
    return str(uuid.uuid4())


def parse_team_id(text: str) -> str:
    """A team id as the server made it (a lowercase UUID); anything else is 404 ``not_found``
    like a team the caller does not belong to."""
    try:
        canonical = str(uuid.UUID(text))
    except (ValueError, AttributeError, TypeError):
        raise team_not_found() from None
    if canonical != text:
        raise team_not_found()
    return canonical


def team_not_found() -> NotFound:
    """The one answer for a team that does not exist *or* that the caller is not in."""
    return NotFound("no such team")


def team_key(team_id: str) -> str:
    return TEAM_PREFIX + team_id


def is_team_key(key: str) -> bool:
    return key.startswith(TEAM_PREFIX)


def team_id_of(key: str) -> str | None:
    """The team id of a document key ``team:<uuid>``; None for a personal document."""
    if not key.startswith(TEAM_PREFIX):
        return None
    return key[len(TEAM_PREFIX) :]


def membership_key(team_id: str, user_id: str) -> str:
    """The bus key of a membership change: ``team:<team_id>/<user_id>`` (a document key never
    holds ``/``), so membership events ride the same bus as changes."""
    return f"{TEAM_PREFIX}{team_id}/{user_id}"


def parse_membership_key(key: str) -> tuple[str, str] | None:
    """``(team_id, user_id)`` of a membership event key; None for a document key."""
    if not key.startswith(TEAM_PREFIX) or "/" not in key:
        return None
    team_id, _, user_id = key[len(TEAM_PREFIX) :].partition("/")
    return team_id, user_id


def parse_role(value: Any) -> Role:
    if value not in _RANK:
        raise ValidationError(
            f"role must be one of {', '.join(ROLES)}", path="/role", code="invalid_value"
        )
    return cast(Role, value)


def _edited_paths(patch: Mapping[str, Any]) -> list[str]:
    return [to_pointer(path) for path, _ in leaf_edits(patch)] or ["/"]


def check_write(role: str, patch: Mapping[str, Any], *, whole: bool = False) -> None:
    """403 ``forbidden`` naming the first path ``role`` may not write (``whole``: a PUT,
    which replaces ``api_keys`` too and so needs ``admin``)."""
    if role in ("owner", "admin"):
        return
    if role == "viewer":
        first = _edited_paths(patch)[0]
        raise Forbidden("a viewer may not change the team's settings", details={"path": first})
    if whole:
        raise Forbidden(
            "replacing the whole team document needs the admin role", details={"path": "/"}
        )
    for path, _ in leaf_edits(patch):
        if path and path[0] not in MEMBER_FIELDS:
            raise Forbidden(
                f"a member may not write {path[0]}; ask an admin",
                details={"path": to_pointer(path)},
            )


def check_mutation(role: str | None, kind: str, patch: Mapping[str, Any]) -> None:
    """May a member with ``role`` (None: not a member, 404) make this mutation of the team's
    document — a ``patch``, a ``put`` (admins) or a ``revert`` (not viewers)? Checked when
    the request arrives and again in the commit's transaction, so a role changed meanwhile
    counts."""
    if role is None:
        raise team_not_found()
    if kind == "revert":
        if role == "viewer":
            raise Forbidden("a viewer may not change the team's settings", details={"path": "/"})
        return
    check_write(role, patch, whole=kind == "put")


def check_set_role(
    actor_role: str | None, old: str | None, new: str, owners: int, *, operator: bool = False
) -> None:
    """May ``actor_role`` give a member (now ``old``; None: not a member) the role ``new``?

    ``owners`` is how many owners the team has now. ``operator``: the CLI, which may do
    anything but leave a team without an owner.
    """
    if not operator:
        if actor_role not in ("owner", "admin"):
            raise Forbidden("managing members needs the admin or owner role")
        if actor_role == "admin" and ("owner" in (old, new)):
            raise Forbidden("only an owner may manage owners")
    if old == "owner" and new != "owner" and owners <= 1:
        raise Conflict("a team keeps at least one owner", code="last_owner")


def check_remove(
    actor_role: str | None, old: str, owners: int, *, self_removal: bool, operator: bool = False
) -> None:
    """May ``actor_role`` remove a member whose role is ``old``? Anyone may leave."""
    if not operator and not self_removal:
        if actor_role not in ("owner", "admin"):
            raise Forbidden("removing members needs the admin or owner role")
        if actor_role == "admin" and old == "owner":
            raise Forbidden("only an owner may remove an owner")
    if old == "owner" and owners <= 1:
        raise Conflict(
            "the last owner cannot leave; make someone else owner or delete the team",
            code="last_owner",
        )


def check_delete(actor_role: str | None, *, operator: bool = False) -> None:
    if not operator and actor_role != "owner":
        raise Forbidden("only an owner may delete the team")
