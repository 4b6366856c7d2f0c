"""The seed's service names on :class:`~.core.AsyncClient` (a mixin), for any document.

``subscribe_to_settings_changes``, ``update_settings_realtime`` and ``get_latest_settings``
name a user's document by ``user_id`` (a service token reaching any user; a user token only
its own), or a team's document by ``doc="team:<team_id>"`` (a member's token: the server
refuses a service token a team's document, since membership is what grants it).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from livesettings.errors import BadRequest, LiveSettingsError

from .events import ChangeCallback
from .handles import Subscription, UpdateHandle
from .session import Session
from .state import Ack, Documents, DocumentState, copy_json
from .status import ConnectionState
from .teams import check_doc, team_id_of
from .tokens import TokenSource, get_json

__all__ = ["ServiceNames", "settings_path"]


def settings_path(user_id: str | None, doc: str | None) -> str:
    """The HTTP route of a document's settings."""
    if doc is not None:
        return f"/v1/teams/{quote(team_id_of(doc), safe='')}/settings"
    if user_id is None:
        return "/v1/settings"
    return f"/v1/users/{quote(user_id, safe='')}/settings"


class ServiceNames:
    """The seed's service names (mixed into :class:`~.core.AsyncClient`)."""

    _docs: Documents
    _main: DocumentState
    _session: Session | None
    _connection: ConnectionState
    _connect_timeout: float
    _subscribe_errors: dict[str, LiveSettingsError]
    _http: httpx.AsyncClient | None
    _token_source: TokenSource

    if TYPE_CHECKING:

        def _require_started(self) -> None: ...
        def _restore(self, doc: DocumentState) -> DocumentState: ...
        def _listen(self, key: str, callback: ChangeCallback) -> Subscription: ...
        def _submit(self, doc: DocumentState, patch: dict[str, Any]) -> UpdateHandle: ...
        def _begin_catch_up(self, session: Session, doc: DocumentState) -> asyncio.Event: ...

    async def subscribe_to_settings_changes(
        self, user_id: str | None, callback: ChangeCallback, *, doc: str | None = None
    ) -> Subscription:
        """Follow ``user_id``'s document (service token), or the team document ``doc``
        (``user_id`` None), and call ``callback`` on each change.

        Returns once the catch-up is done (or at once while offline: it happens on connect).
        A refusal (a user token asking for someone else, a team the user is not a member of)
        raises the server's error.
        """
        self._require_started()
        state = self._document(user_id, doc)
        subscription = self._listen(state.key, callback)
        if not state.followed:
            state.followed = True
            state.refused = None
            session = self._session
            if session is not None and session.authed:
                waiter = self._begin_catch_up(session, state)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), self._connect_timeout)
                error = self._subscribe_errors.pop(state.key, None)
                if error is not None:
                    subscription.unsubscribe()
                    raise error
        return subscription

    async def update_settings_realtime(
        self, user_id: str | None, settings: dict[str, Any], *, doc: str | None = None
    ) -> Ack:
        """Merge ``settings`` (a merge patch) into ``user_id``'s document, or into the team
        document ``doc`` (``user_id`` None), over the socket.

        Returns the :class:`Ack` once durable; while disconnected the edit waits in the queue.
        """
        self._require_started()
        return await self._submit(self._document(user_id, doc), settings)

    async def get_latest_settings(
        self, user_id: str | None = None, *, doc: str | None = None
    ) -> dict[str, Any]:
        """The latest settings of ``user_id`` (service token; None: the token's own user), or
        of the team document ``doc``.

        Served from the live document when this client follows it and is online, else read
        over HTTP (``GET /v1/users/{user_id}/settings``, ``/v1/teams/{team_id}/settings``).
        """
        self._require_started()
        if doc is not None:
            state = self._docs.get(self._key(user_id, doc))
        elif user_id is None:
            personal = self._main.user_id is None and self._main.doc is None
            state = self._main if personal else None
        else:
            state = self._docs.get(user_id)
        if (
            state is not None
            and state.followed
            and state.revision is not None
            and self._connection is ConnectionState.ONLINE
        ):
            return copy_json(state.view)  # type: ignore[no-any-return]
        assert self._http is not None
        body = await get_json(self._http, self._token_source, settings_path(user_id, doc))
        settings = body.get("settings")
        if not isinstance(settings, dict):
            raise LiveSettingsError("the server's answer holds no settings", code="bad_response")
        return settings

    def _key(self, user_id: str | None, doc: str | None) -> str:
        if doc is None:
            if not user_id:
                raise BadRequest("name a document: a user_id, or doc='team:<team_id>'")
            return user_id
        if user_id is not None:
            raise BadRequest("name one document: a user_id or a doc, not both")
        return check_doc(doc)

    def _document(self, user_id: str | None, doc: str | None) -> DocumentState:
        key = self._key(user_id, doc)
        found = self._docs.get(key)
        if found is not None:
            return found
        return self._restore(DocumentState(user_id, followed=False, doc=doc))
