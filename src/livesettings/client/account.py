"""The account methods of the Python clients: delete the token's account, or export it.

:class:`AccountMethods` is mixed into :class:`~.core.AsyncClient`; both methods act over HTTP
as the token's user and raise the server's errors as
:class:`~livesettings.errors.LiveSettingsError` subclasses: ``Forbidden`` with code
``wrong_password``, or ``reauthentication_required`` when no password is given and the token
is not from a recent sign-in; ``Conflict`` with code ``last_owner`` when the user alone owns a
team (nothing is deleted then).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cache import OfflineCache
from .documents import forget_own

__all__ = ["AccountMethods"]


class AccountMethods:
    """``delete_account`` and ``export_account`` (a mixin of :class:`~.core.AsyncClient`)."""

    _cache: OfflineCache | None

    if TYPE_CHECKING:

        async def _team_request(
            self, method: str, path: str, body: dict[str, Any] | None = None
        ) -> dict[str, Any]: ...
        async def close(self) -> None: ...

    async def delete_account(self, password: str | None = None) -> None:
        """Delete the token's account with its settings, secrets, history and sessions.

        ``password`` is a built-in user's; without it, the token must come from a sign-in a
        few minutes ago (the server's ``LIVESETTINGS_FRESH_TOKEN_MAX_AGE``). Once deleted,
        the offline cache drops what it held of the account and the client closes: its
        sessions are over.
        """
        body = {"password": password} if password is not None else None
        await self._team_request("DELETE", "/v1/account", body)
        if self._cache is not None:
            forget_own(self._cache)
        await self.close()

    async def export_account(self) -> dict[str, Any]:
        """The account's data as the server exports it (``GET /v1/account/export``): the
        user, the settings and the retained change history with secrets masked, the team
        memberships, and ``exported_at``."""
        return await self._team_request("GET", "/v1/account/export")
