"""Teams (DESIGN §11) on the Python clients: document keys, roles, and the team methods.

A team's document is named ``team:<team_id>`` (:func:`team_doc`); ``AsyncClient(..., doc=…)``
follows it like the user's own. :class:`TeamMethods` is mixed into :class:`~.core.AsyncClient`:
its methods manage teams over HTTP, acting as the token's user, and raise the server's errors
as :class:`~livesettings.errors.LiveSettingsError` subclasses (``NotFound`` for a team the
caller is not a member of, ``Forbidden`` for a role too low, ``Conflict`` with code
``last_owner`` when the last owner would go).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import quote

import httpx

from livesettings.errors import BadRequest, ConnectionClosed, LiveSettingsError
from livesettings.paths import Path, from_pointer

from .tokens import TokenSource, read_response, resolve_token

__all__ = [
    "ROLES",
    "Member",
    "Membership",
    "Team",
    "TeamMethods",
    "TeamRole",
    "can_write",
    "check_doc",
    "team_doc",
    "team_id_of",
]

TeamRole: TypeAlias = Literal["owner", "admin", "member", "viewer"]
ROLES: Final[tuple[TeamRole, ...]] = ("owner", "admin", "member", "viewer")
_PREFIX: Final = "team:"
_MAX_DOC: Final = 128


@dataclass(frozen=True, slots=True)
class Team:
    """A team the caller belongs to, with the caller's ``role`` in it."""

    team_id: str
    name: str
    role: TeamRole
    created_at: str | None = None

    @property
    def doc(self) -> str:
        """The team's document key, for ``AsyncClient(..., doc=team.doc)``."""
        return team_doc(self.team_id)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Team:
        """Read one team of the server's answer."""
        return cls(str(body["team_id"]), str(body["name"]), body["role"], body.get("created_at"))


@dataclass(frozen=True, slots=True)
class Member:
    """A member of a team and their role (``username`` for built-in users)."""

    user_id: str
    role: TeamRole
    username: str | None = None
    added_at: str | None = None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Member:
        """Read one member of the server's answer."""
        return cls(str(body["user_id"]), body["role"], body.get("username"), body.get("added_at"))


@dataclass(frozen=True, slots=True)
class Membership:
    """The caller's role in the team of ``doc`` changed; ``role`` is None when they were
    removed (or the team deleted): the client then stops following ``doc``."""

    doc: str
    role: TeamRole | None

    @property
    def team_id(self) -> str:
        """The team's id."""
        return self.doc[len(_PREFIX) :]


def team_doc(team_id: str) -> str:
    """The document key of a team: ``team:<team_id>`` (a key given is returned as it is)."""
    return check_doc(team_id if team_id.startswith(_PREFIX) else _PREFIX + team_id)


def team_id_of(team: str) -> str:
    """A team's id, given as the id or as its document key ``team:<team_id>``."""
    team_id = team[len(_PREFIX) :] if team.startswith(_PREFIX) else team
    if not team_id or len(team_id) > 64:
        raise BadRequest("a team id is 1 to 64 characters")
    return team_id


def check_doc(doc: str) -> str:
    """``doc`` when it names a team's document (``team:<team_id>``), else ``BadRequest``."""
    if not (
        isinstance(doc, str)
        and doc.startswith(_PREFIX)
        and len(_PREFIX) < len(doc) <= _MAX_DOC
        and doc.isascii()
        and doc.isprintable()
    ):
        raise BadRequest(f"doc must be 'team:<team_id>', not {doc!r}")
    return doc


def can_write(role: str | None, path: str | Path = ()) -> tuple[bool, str | None]:
    """Whether ``role`` may write the field at ``path`` (``"/api_keys/openai"``, ``"theme"`` or
    a tuple of keys):
    ``(True, None)`` or ``(False, reason)``. Viewers write nothing, members everything but
    ``api_keys``, admins and owners everything; None (the user's own document, or a role not
    known yet) may write everything: the server decides."""
    if role in (None, "owner", "admin"):
        return True, None
    if role == "viewer":
        return False, "viewers of this team can read its settings, not change them"
    if role == "member":
        if isinstance(path, str):
            keys = from_pointer(path) if path.startswith("/") else tuple(path.split("/"))
        else:
            keys = tuple(path)
        if not keys or keys[0] == "api_keys":
            return False, "only the team's admins and owners can set its API keys"
        return True, None
    return False, f"{role!r} is not a team role"


def _segment(value: str) -> str:
    return quote(value, safe="")


def _subject(token: str) -> str | None:
    """The ``sub`` of a JWT, read without checking it (only to name the caller in a URL;
    the server checks the token)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) and sub else None


class TeamMethods:
    """The team methods of :class:`~.core.AsyncClient` (a mixin: HTTP, as the token's user)."""

    _http: httpx.AsyncClient | None
    _token_source: TokenSource
    _user_id: str | None

    async def teams(self) -> list[Team]:
        """The caller's teams, each with the caller's role."""
        body = await self._team_request("GET", "/v1/teams")
        teams = [Team.from_body(item) for item in body.get("teams") or []]
        self._learn_roles(teams)
        return teams

    async def create_team(self, name: str) -> Team:
        """Create a team, of which the caller is the owner."""
        return Team.from_body(await self._team_request("POST", "/v1/teams", {"name": name}))

    async def delete_team(self, team_id: str) -> None:
        """Delete a team with its document and secrets (owners only)."""
        await self._team_request("DELETE", f"/v1/teams/{_segment(team_id_of(team_id))}")

    async def members(self, team_id: str) -> list[Member]:
        """The team's members and their roles (any member may look)."""
        path = f"/v1/teams/{_segment(team_id_of(team_id))}/members"
        return _members(await self._team_request("GET", path))

    async def set_member(
        self,
        team_id: str,
        role: TeamRole,
        *,
        user_id: str | None = None,
        username: str | None = None,
    ) -> list[Member]:
        """Add a member, or change their role, named by ``user_id`` or by ``username`` (a
        built-in user's); return the members as they are then. Admins manage members below
        owner, owners anyone."""
        who = user_id or username
        if not who:
            raise BadRequest("set_member needs a user_id or a username")
        body: dict[str, Any] = {"role": role} if user_id else {"username": username, "role": role}
        path = f"/v1/teams/{_segment(team_id_of(team_id))}/members/{_segment(who)}"
        return _members(await self._team_request("PUT", path, body))

    async def remove_member(self, team_id: str, user_id: str) -> None:
        """Remove a member (admins and owners; anyone may remove themselves). The last owner
        stays: ``Conflict`` with code ``last_owner``."""
        if not user_id:
            raise BadRequest("remove_member needs a user_id")
        path = f"/v1/teams/{_segment(team_id_of(team_id))}/members/{_segment(user_id)}"
        await self._team_request("DELETE", path)

    async def leave_team(self, team_id: str) -> None:
        """Leave a team (the last owner cannot: ``Conflict`` with code ``last_owner``)."""
        user_id = self._user_id or _subject(await resolve_token(self._token_source))
        if user_id is None:
            raise BadRequest("cannot tell the token's user: connect first, then leave")
        await self.remove_member(team_id, user_id)

    async def effective_settings(self, team_id: str) -> dict[str, Any]:
        """What the caller sees inside a team: their own value over the team's over the
        default (``preferences`` and ``ai_providers`` leaf by leaf, keys by name, masked).
        Returns ``{"settings", "team_id", "team_revision", "revision"}``."""
        path = f"/v1/settings/effective?team={_segment(team_id_of(team_id))}"
        return await self._team_request("GET", path)

    # -- internals ------------------------------------------------------------------------
    def _learn_roles(self, teams: list[Team]) -> None:
        """A hook: the core notes its team document's role."""

    async def _team_request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        http = self._http
        if http is None:
            raise ConnectionClosed("the client is not started: call start() or 'async with'")
        bearer = await resolve_token(self._token_source)
        try:
            response = await http.request(
                method, path, json=body, headers={"Authorization": f"Bearer {bearer}"}
            )
        except httpx.TransportError as exc:
            raise ConnectionClosed(f"cannot reach {http.base_url}: {exc}") from exc
        if response.status_code == 204:
            return {}
        return read_response(response)


def _members(body: dict[str, Any]) -> list[Member]:
    members = body.get("members")
    if not isinstance(members, list):
        raise LiveSettingsError("the server's answer holds no members", code="bad_response")
    return [Member.from_body(item) for item in members]
