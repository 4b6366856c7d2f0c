"""The async client: one WebSocket kept alive, documents kept in sync, edits kept safe.

:class:`AsyncClient` connects to ``/v1/realtime``, authenticates, subscribes (resuming from the
last known revision), replays the edits it has not seen acknowledged — with their original
mutation ids, so that each applies exactly once — and then applies live changes as they come.
When the connection drops it retries with the backoff passed in (``reconnect_delays=``);
meanwhile edits are queued (in the offline cache when ``cache_path=`` is given) and shown at
once. The pure state handling lives in :mod:`.state`; this module does the I/O around it.

Every method must be called on the event loop the client was started on; :class:`~.sync.Client`
runs one on a background thread for code without an event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Final

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.exceptions import InvalidStatus, WebSocketException

from livesettings.document import validate_patch
from livesettings.errors import (
    BadRequest,
    ConnectionClosed,
    Forbidden,
    LiveSettingsError,
    OfflineSecret,
    RateLimited,
    TokenExpired,
    Unauthorized,
)
from livesettings.paths import MISSING, Path, from_pointer, get_at
from livesettings.protocol import (
    CLOSE_RATE_LIMITED,
    CLOSE_UNAUTHORIZED,
    AckFrame,
    AuthFrame,
    AuthOkFrame,
    ChangeFrame,
    ErrorFrame,
    MembershipFrame,
    ServerFrame,
    SnapshotFrame,
    SubscribeFrame,
    SyncedFrame,
    UnsubscribeFrame,
    UpdateFrame,
)

from .account import AccountMethods
from .backoff import DelayFactory, backoff
from .cache import OfflineCache, QueuedMutation, carries_secret
from .documents import TeamDocuments, forget_own, queued_document
from .events import (
    ApiKeysCallback,
    ChangeCallback,
    ConflictCallback,
    ErrorCallback,
    ErrorEvent,
    Events,
    MembershipCallback,
    StatusCallback,
    discard,
)
from .handles import Subscription, UpdateHandle, consume_error
from .services import ServiceNames
from .session import Lifecycle, Refused, Session, as_error, cancel_and_wait, refusal, ws_url
from .state import Ack, Change, Documents, DocumentState, RevisionGap, copy_json
from .status import ConnectionState, Status, SyncRate
from .teams import TeamMethods, check_doc
from .tokens import TokenSource, resolve_token

__all__ = ["AsyncClient", "ChangeCallback", "StatusCallback"]

log = logging.getLogger("livesettings.client")

_MAX_MESSAGE: Final = 4 * 1024 * 1024  # a snapshot of a 256 KiB document, with room to spare
_TRANSIENT: Final = frozenset({"rate_limited", "storage_unavailable"})
_MAX_RETRIES: Final = 10
_MIN_REFRESH_INTERVAL: Final = 1.0


def _path(path: str | Path) -> Path:
    return from_pointer(path) if isinstance(path, str) else tuple(path)


class AsyncClient(TeamDocuments, TeamMethods, AccountMethods, ServiceNames):
    """Live settings of one user (or, with a service token, of any users) — async core.

    ``url`` is the server's base URL (``http://host:port``). ``token`` is an access token or a
    callable (sync or async) returning one: it is called for each connection and again before
    the token expires (``refresh_margin`` seconds early, at most half its lifetime), and the
    fresh token is sent on the live socket.

    ``user_id`` (service tokens) makes the client follow that user's document instead of the
    token's own; ``follow=False`` follows none (for a service using only the seed's service
    names); ``doc="team:<team_id>"`` follows a team's document instead (a member's token; see
    :mod:`.teams` for the team methods). ``cache_path`` enables the offline cache.
    ``reconnect_delays`` is a factory of delay iterators (default :func:`~.backoff.backoff`),
    called anew after each connection that got back in sync;
    ``connect_timeout`` bounds each attempt and how long ``start()`` waits for the first sync.
    ``clock`` (Unix seconds) dates edits and schedules refreshes.

    Example::

        async with AsyncClient("http://127.0.0.1:8000", token, cache_path="settings.db") as c:
            print(c.get("/theme"))
            await c.update({"theme": "dark"})
            async for change in c.changes():
                print(change.origin, change.patch)
    """

    def __init__(
        self,
        url: str,
        token: TokenSource,
        *,
        user_id: str | None = None,
        doc: str | None = None,
        follow: bool = True,
        client_id: str | None = None,
        cache_path: str | os.PathLike[str] | None = None,
        reconnect_delays: DelayFactory = backoff,
        connect_timeout: float = 10.0,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._ws_url = ws_url(self.url)
        self._token_source = token
        self._client_id = client_id
        self._cache_path = cache_path
        self._reconnect_delays = reconnect_delays
        self._connect_timeout = connect_timeout
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._transport = transport

        self._lifecycle = Lifecycle.NEW
        self._cache: OfflineCache | None = None
        self._http: httpx.AsyncClient | None = None
        self._runner: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._session: Session | None = None
        self._docs = Documents()
        if doc is not None and check_doc(doc) and user_id is not None:
            raise BadRequest("name one document: user_id= or doc='team:<team_id>', not both")
        self._main = DocumentState(user_id, followed=follow, doc=doc)
        self._listeners: dict[str, list[ChangeCallback]] = {}
        self._events = Events()
        self._futures: dict[str, asyncio.Future[Ack]] = {}
        self._seq = 0
        self._paused_until = 0.0
        self._user_id: str | None = None
        self._session_synced = False
        self._closers: set[Callable[[], None]] = set()

        self._connection = ConnectionState.CONNECTING
        self._error: LiveSettingsError | None = None
        self._error_count = 0
        self._last_sync_at: int | None = None
        self._rate = SyncRate(clock)
        self._status = Status()
        self._first_outcome: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._sync_waiters: dict[str, asyncio.Event] = {}
        self._subscribe_errors: dict[str, LiveSettingsError] = {}
        self._dropped: set[str] = set()  # edits of documents closed to this user, already told

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the cache, start connecting, and wait (up to ``connect_timeout``) for the
        first sync or the first failure — after which the client works offline."""
        if self._lifecycle is Lifecycle.STARTED:
            return
        if self._lifecycle is Lifecycle.CLOSED:
            raise ConnectionClosed("this client was closed; create a new one")
        if self._cache_path is not None:
            self._cache = OfflineCache.open(self._cache_path)
        self._lifecycle = Lifecycle.STARTED
        self._first_outcome = asyncio.Event()
        self._idle = asyncio.Event()
        if self._cache is not None:
            self._client_id = self._client_id or self._cache.get_meta("client_id")
        self._client_id = self._client_id or "py-" + uuid.uuid4().hex[:20]
        if self._cache is not None:
            self._cache.set_meta("client_id", self._client_id)
        self._http = httpx.AsyncClient(
            base_url=self.url, transport=self._transport, timeout=self._connect_timeout
        )
        self._restore(self._main)
        self._events.seen_keys(self._main.view, tell=False)
        if self._cache is not None:
            # Queued edits of other users' documents (a service's) are replayed too; a team
            # document's wait for a client of that document (documents.queued_document).
            for item in self._cache.load_pending():
                if item.key not in self._docs and (other := queued_document(self._main, item.key)):
                    self._restore(other)
        self._refresh_status()
        self._runner = asyncio.create_task(self._run(), name="livesettings-client")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_outcome.wait(), self._connect_timeout)

    async def close(self) -> None:
        """Disconnect and release everything. Unacknowledged edits stay in the offline cache
        (and are replayed by the next client using it); their handles fail with
        :class:`ConnectionClosed`."""
        if self._lifecycle is not Lifecycle.STARTED:
            self._lifecycle = Lifecycle.CLOSED
            return
        self._lifecycle = Lifecycle.CLOSED
        await cancel_and_wait(self._runner, self._refresher, *self._events.tasks)
        queued = {p.mutation_id for _, p in self._docs.edits() if not p.secret}
        for mutation_id, future in self._futures.items():
            if not future.done():
                message = f"the client closed before edit {mutation_id} was acknowledged"
                if self._cache is not None and mutation_id in queued:
                    message += "; it stays queued in the offline cache for the next client"
                future.set_exception(ConnectionClosed(message))
        self._futures.clear()
        for closer in list(self._closers):
            closer()
        if self._http is not None:
            await self._http.aclose()
        if self._cache is not None:
            self._cache.close()
        self._connection = ConnectionState.OFFLINE
        self._refresh_status()

    async def __aenter__(self) -> AsyncClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- reading --------------------------------------------------------------------------
    @property
    def client_id(self) -> str | None:
        """This client's id (the ``by`` of its edits); persisted in the offline cache."""
        return self._client_id

    @property
    def user_id(self) -> str | None:
        """The token's user, once the server accepted it."""
        return self._user_id

    @property
    def revision(self) -> int | None:
        """The revision of the followed document last confirmed by the server."""
        return self._main.revision

    @property
    def status(self) -> Status:
        """The current :class:`Status` (safe to read from any thread)."""
        return replace(self._status, syncs_per_minute=self._rate.count())

    def get(self, path: str | Path | None = None, default: Any = None) -> Any:
        """A copy of the settings as this client sees them (its own edits included at once).

        ``path`` is a JSON Pointer (``"/preferences/editor"``) or a tuple of keys; ``default``
        is returned when nothing is there. Secrets read as ``{"set": true, "last4": …}``.
        """
        view = self._main.view  # replaced, never modified: a consistent copy from any thread
        if path is None:
            return copy_json(view)
        value = get_at(view, _path(path))
        return default if value is MISSING else value

    # -- writing --------------------------------------------------------------------------
    def update(self, patch: dict[str, Any]) -> UpdateHandle:
        """Submit a JSON Merge Patch (``None`` deletes or resets); return its handle at once.

        The edit shows in :meth:`get` immediately. Bad input raises here
        (:class:`~livesettings.errors.ValidationError`, ``TooLarge``…); while disconnected the
        edit is queued, except a secret (``api_keys`` value), which raises
        :class:`~livesettings.errors.OfflineSecret`.
        """
        return self._submit(self._main, patch)

    def set(self, path: str | Path, value: Any) -> UpdateHandle:
        """Set one value: ``set("/preferences/fontSize", 14)``. ``None`` deletes it; an object
        is merged into what is there, as in a merge patch."""
        keys = _path(path)
        if not keys:
            raise BadRequest("set() needs a path below the root, such as '/theme'")
        patch: Any = value
        for key in reversed(keys):
            patch = {key: patch}
        return self.update(patch)

    async def flush(self) -> None:
        """Wait until every edit is acknowledged and its change received, so that the offline
        cache holds no queue (bound it with ``asyncio.timeout``)."""
        self._require_started()
        assert self._idle is not None
        while self._docs.pending_ids():
            self._idle.clear()
            await self._idle.wait()

    # -- subscribing ----------------------------------------------------------------------
    def subscribe(self, callback: ChangeCallback) -> Subscription:
        """Call ``callback(change)`` on each change of the followed document's view."""
        return self._listen(self._main.key, callback)

    def changes(self) -> AsyncIterator[Change]:
        """``async for change in client.changes()``: every change from this call on, until the
        client closes (subscribed at once, so nothing is missed before the first ``await``)."""
        self._require_started()
        queue: asyncio.Queue[Change | None] = asyncio.Queue()
        subscription = self._listen(self._main.key, queue.put_nowait)

        end = functools.partial(queue.put_nowait, None)
        self._closers.add(end)

        async def stream() -> AsyncIterator[Change]:
            try:
                while (item := await queue.get()) is not None:
                    yield item
            finally:
                subscription.unsubscribe()
                self._closers.discard(end)

        return stream()

    def on_status(self, callback: StatusCallback) -> Subscription:
        """Call ``callback(status)`` whenever the :class:`Status` changes."""
        return self._events.listen(self._events.status, callback)

    def on_api_keys_update(self, callback: ApiKeysCallback) -> Subscription:
        """Call ``callback(api_keys)`` when the followed document's ``api_keys`` change (by an
        edit here or from the server), with the masked keys: never a plaintext secret."""
        return self._events.listen(self._events.api_keys, callback)

    def on_conflict(self, callback: ConflictCallback) -> Subscription:
        """Call ``callback(conflict)`` with an :class:`~.events.EditConflict` for each edit of
        this client that met a concurrent one (in its ack), or that another client overwrote."""
        return self._events.listen(self._events.conflict, callback)

    def on_error(self, callback: ErrorCallback) -> Subscription:
        """Call ``callback(event)`` with an :class:`~.events.ErrorEvent` for each error the
        server reports in a frame — above all an edit it refused (dropped, and counted in
        ``status.error_count`` without setting ``status.error``)."""
        return self._events.listen(self._events.error, callback)

    def on_membership(self, callback: MembershipCallback) -> Subscription:
        """Call ``callback(membership)`` with a :class:`~.teams.Membership` when the user's role
        in a team changes (``role`` None: removed, and the client stops following its document:
        pending edits dropped and told to ``on_error`` with code ``forbidden``)."""
        return self._events.listen(self._events.membership, callback)

    # -- internals: documents -------------------------------------------------------------
    def _require_started(self) -> None:
        if self._lifecycle is not Lifecycle.STARTED:
            expected = "start() or 'async with' first"
            raise ConnectionClosed(f"the client is {self._lifecycle.value}: call {expected}")

    def _restore(self, doc: DocumentState) -> DocumentState:
        self._docs[doc.key] = doc
        if self._cache is not None:
            cached = self._cache.load_document(doc.key)
            self._seq = doc.restore(cached, self._cache.load_pending(doc.key), self._seq)
        return doc

    def _listen(self, key: str, callback: ChangeCallback) -> Subscription:
        listeners = self._listeners.setdefault(key, [])
        listeners.append(callback)

        def cancel() -> None:
            discard(listeners, callback)
            doc = self._docs.get(key)
            if not listeners and doc is not None and doc is not self._main and doc.followed:
                doc.followed = False
                if self._session is not None and self._session.authed:
                    frame = UnsubscribeFrame(user_id=doc.user_id, doc=doc.doc)
                    self._session.send(frame.to_json())

        return Subscription(cancel)

    def _emit(self, doc: DocumentState, change: Change | None) -> None:
        if change is None:
            return
        self._events.emit(self._listeners.get(doc.key, ()), change)
        if doc is self._main:
            self._events.seen_keys(doc.view)

    def _submit(self, doc: DocumentState, patch: dict[str, Any]) -> UpdateHandle:
        self._require_started()
        checked = validate_patch(patch)
        connected = self._session is not None and self._session.authed
        if carries_secret(checked) and not connected:
            raise OfflineSecret(
                "a secret (api_keys) cannot be saved while offline, and is never queued; "
                "retry when the client is online"
            )
        mutation_id = uuid.uuid4().hex
        edited_at = int(self._clock() * 1000)
        if self._cache is not None and not carries_secret(checked):
            base = doc.revision
            self._cache.add_pending(QueuedMutation(doc.key, mutation_id, base, checked, edited_at))
        _, change = doc.edit(checked, mutation_id, edited_at, self._seq)
        self._seq += 1
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        future.add_done_callback(consume_error)
        self._futures[mutation_id] = future
        self._emit(doc, change)
        self._flush()
        self._refresh_status()
        return UpdateHandle(mutation_id, future, queued=not connected, user_id=doc.user_id)

    def _flush(self) -> None:
        """Send every unsent edit, in the order they were made."""
        session = self._session
        if session is None or not session.authed:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._paused_until:
            # Timers may fire a clock tick early: come back rather than stall the queue.
            loop.call_later(self._paused_until - loop.time(), self._flush)
            return
        for doc, p in self._docs.unsent():
            frame = UpdateFrame(
                p.mutation_id, p.base_revision, p.patch, p.edited_at, doc.user_id, doc=doc.doc
            )
            session.send(frame.to_json())
            p.sent = True

    def _settle(self, mutation_id: str, ack: Ack | None, error: LiveSettingsError | None) -> None:
        future = self._futures.pop(mutation_id, None)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            assert ack is not None
            future.set_result(ack)

    def _persist(self, doc: DocumentState) -> None:
        if self._cache is not None and doc.revision is not None:
            self._cache.save_document(doc.key, doc.revision, doc.confirmed)

    # -- internals: status ----------------------------------------------------------------
    def _note_sync(self) -> None:
        self._last_sync_at = int(self._clock() * 1000)
        self._rate.add()

    def _note_error(self, error: LiveSettingsError) -> None:
        self._error = error
        self._error_count += 1

    def _refresh_status(self) -> None:
        session = self._session
        status = Status(
            connection=self._connection,
            syncing=session is not None and (bool(session.waiting) or self._docs.in_flight()),
            unsaved=self._docs.unsaved(),
            last_sync_at=self._last_sync_at,
            error_count=self._error_count,
            syncs_per_minute=self._rate.count(),
            error=self._error,
        )
        if self._idle is not None and not self._docs.pending_ids():
            self._idle.set()
        if status == self._status:
            return
        self._status = status
        self._events.emit(self._events.status, status)

    # -- internals: the connection --------------------------------------------------------
    async def _run(self) -> None:
        assert self._first_outcome is not None
        delays = self._reconnect_delays()
        last_delay = 1.0
        while True:
            self._connection = ConnectionState.CONNECTING
            self._refresh_status()
            reached = False
            retry_after: float | None = None
            try:
                token = await resolve_token(self._token_source)
                async with connect(
                    self._ws_url,
                    open_timeout=self._connect_timeout,
                    compression=None,
                    max_size=_MAX_MESSAGE,
                    close_timeout=2,
                ) as ws:
                    reached = True
                    await self._serve(ws, token)
                raise ConnectionClosed("the server closed the connection")
            except asyncio.CancelledError:
                self._end_session()
                raise
            except Refused as exc:
                self._end_session(exc.error, ConnectionState.ERROR)
                retry_after = exc.retry_after
                if isinstance(self._token_source, str) and isinstance(exc.error, Unauthorized):
                    log.warning("the server refused the token (%s); not retrying", exc.error)
                    self._first_outcome.set()
                    return  # retrying the same token cannot help
            except InvalidStatus as exc:  # refused before the upgrade (403, 429, 503)
                refused = refusal(exc)
                denied = exc.response.status_code in (401, 403)
                state = ConnectionState.ERROR if denied else ConnectionState.OFFLINE
                self._end_session(refused.error, state)
                retry_after = refused.retry_after
            except Unauthorized as exc:  # the token provider failed
                self._end_session(exc, ConnectionState.ERROR)
            except (OSError, TimeoutError, WebSocketException, LiveSettingsError) as exc:
                self._end_session(as_error(exc), ConnectionState.OFFLINE)
            except Exception as exc:  # a bug must not end the reconnect loop for good
                log.exception("the livesettings connection failed unexpectedly")
                self._end_session(
                    LiveSettingsError(f"unexpected error: {exc}"), ConnectionState.OFFLINE
                )
            self._first_outcome.set()
            if reached and self._session_synced:
                delays = self._reconnect_delays()
            last_delay = next(delays, last_delay)
            await asyncio.sleep(max(last_delay, retry_after or 0.0))

    async def _serve(self, ws: ClientConnection, token: str) -> None:
        session = Session(ws)
        self._session_synced = False
        sender = asyncio.create_task(session.sender())
        self._session = session
        try:
            await ws.send(AuthFrame(token, self._client_id).to_json())
            async with asyncio.timeout(self._connect_timeout):
                first = ServerFrame.from_json(await ws.recv())
            if isinstance(first, ErrorFrame):
                raise Refused(first.to_error())
            if not isinstance(first, AuthOkFrame):
                raise BadRequest(f"expected auth_ok from the server, got {first.type}")
            self._authenticated(session, first)
            async for message in ws:
                try:
                    self._handle(session, ServerFrame.from_json(message))
                except (BadRequest, KeyError, TypeError, ValueError) as exc:
                    # A frame this client cannot read is skipped, not fatal to the connection.
                    log.warning("ignored a server frame (%s): %.200s", exc, message)
                if sender.done():
                    break
        except WsConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            if code == CLOSE_UNAUTHORIZED:
                raise Refused(
                    session.last_error or Unauthorized("the server closed: 4001")
                ) from exc
            if code == CLOSE_RATE_LIMITED:
                raise RateLimited("the server closed the connection: rate limited") from exc
            raise ConnectionClosed(f"the connection closed ({code})") from exc
        finally:
            await cancel_and_wait(sender)

    def _authenticated(self, session: Session, frame: AuthOkFrame) -> None:
        self._check_identity(frame.user_id)
        self._user_id = frame.user_id
        session.authed = True
        self._schedule_refresh(frame)
        for doc in self._docs.values():
            if doc.followed:
                self._begin_catch_up(session, doc)
        if not session.waiting:
            self._went_online()
        self._flush()
        self._refresh_status()

    def _check_identity(self, user_id: str) -> None:
        cache = self._cache
        if cache is None:
            return
        known = cache.get_meta("user_id")
        if known is not None and known != user_id and self._main.user_id is None:
            dropped = forget_own(cache)
            log.warning(
                "the offline cache belonged to another user; dropped its document and %d "
                "queued edits",
                dropped,
            )
            for p in self._main.pending:
                self._settle(
                    p.mutation_id,
                    None,
                    Forbidden("this edit was made for another user; it was dropped"),
                )
            fresh = DocumentState(None, followed=self._main.followed, doc=self._main.doc)
            self._docs[fresh.key] = self._main = fresh
        cache.set_meta("user_id", user_id)

    def _begin_catch_up(self, session: Session, doc: DocumentState) -> asyncio.Event:
        session.waiting.append(doc.key)
        waiter = self._sync_waiters.setdefault(doc.key, asyncio.Event())
        waiter.clear()
        frame = SubscribeFrame(since=doc.revision, user_id=doc.user_id, doc=doc.doc)
        session.send(frame.to_json())
        return waiter

    def _went_online(self) -> None:
        assert self._first_outcome is not None
        self._session_synced = True
        refused = self._main.refused  # a team document closed to this user
        self._connection = ConnectionState.ONLINE if refused is None else ConnectionState.ERROR
        self._error = refused
        self._first_outcome.set()

    def _end_session(
        self, error: LiveSettingsError | None = None, state: ConnectionState | None = None
    ) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        was_online = self._connection is ConnectionState.ONLINE
        self._session = None
        self._docs.disconnected()
        for waiter in self._sync_waiters.values():
            waiter.set()  # release subscribe_to_settings_changes(); catch-up resumes on connect
        if error is not None:
            if was_online or state is ConnectionState.ERROR or self._error is None:
                self._error_count += 1
            self._error = error
        if state is not None:
            self._connection = state
        self._refresh_status()

    def _schedule_refresh(self, frame: AuthOkFrame) -> None:
        if isinstance(self._token_source, str):
            return
        left = frame.expires_at - self._clock()
        delay = max(_MIN_REFRESH_INTERVAL, left - min(self._refresh_margin, left / 2))
        if self._refresher is not None:
            self._refresher.cancel()
        self._refresher = asyncio.create_task(self._refresh_later(delay))

    async def _refresh_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            token = await resolve_token(self._token_source)
        except LiveSettingsError as exc:
            log.warning("could not refresh the access token: %s", exc)
            self._note_error(exc)
            self._refresh_status()
            self._refresher = asyncio.create_task(self._refresh_later(_MIN_REFRESH_INTERVAL * 5))
            return
        if self._session is not None:
            self._session.send(AuthFrame(token, self._client_id).to_json())

    # -- internals: frames ----------------------------------------------------------------
    def _handle(self, session: Session, frame: ServerFrame) -> None:
        if isinstance(frame, AuthOkFrame):
            self._schedule_refresh(frame)
            return
        before = self._docs.pending_ids()
        if isinstance(frame, ErrorFrame):
            self._on_error(session, frame)
        elif isinstance(frame, MembershipFrame):
            self._on_membership(session, frame)
        elif not isinstance(frame, SnapshotFrame | ChangeFrame | SyncedFrame | AckFrame):
            return  # pong
        elif (doc := self._docs.get(frame.doc or frame.user_id or "")) is None:
            log.debug("ignored a %s frame for a document this client does not follow", frame.type)
        elif isinstance(frame, ChangeFrame):
            self._on_change(session, doc, frame)
        elif isinstance(frame, SnapshotFrame):
            self._emit(doc, doc.on_snapshot(frame.revision, frame.settings))
            self._persist(doc)
        elif isinstance(frame, SyncedFrame):
            if doc.key in session.waiting:
                session.waiting.remove(doc.key)
                self._note_sync()
                self._sync_waiters[doc.key].set()  # made by _begin_catch_up
            if not session.waiting and self._connection is not ConnectionState.ONLINE:
                self._went_online()
        else:
            pending, change = doc.on_ack(frame.mutation_id, frame.revision)
            if pending is not None:
                self._note_sync()
                conflicts = list(frame.conflicts)
                ack = Ack(frame.mutation_id, frame.revision, conflicts, doc.user_id, doc.doc)
                self._settle(frame.mutation_id, ack, None)
                self._events.acked(frame.conflicts, frame.revision, frame.mutation_id, doc.user_id)
            self._emit(doc, change)
        if self._cache is not None:
            # An edit leaves the queue once the confirmed state includes it (or it was refused):
            # dropping it at its ack would leave a cache whose document lacks it, should the
            # process end before the change frame. Replaying an acknowledged edit is harmless.
            for mutation_id in before - self._docs.pending_ids():
                self._cache.remove_pending(mutation_id)
        self._refresh_status()

    def _on_change(self, session: Session, doc: DocumentState, frame: ChangeFrame) -> None:
        try:
            change, mine = doc.on_change(frame)
        except RevisionGap as gap:
            log.warning("missed changes after revision %d; catching up again", gap.revision)
            self._begin_catch_up(session, doc)
            return
        self._persist(doc)
        if mine is not None:
            conflicts = list(frame.conflicts)
            ack = Ack(mine.mutation_id, frame.revision, conflicts, doc.user_id, doc.doc)
            self._settle(mine.mutation_id, ack, None)
            if mine.acked is None:  # its ack did not come (it was lost with a connection)
                self._events.acked(frame.conflicts, frame.revision, mine.mutation_id, doc.user_id)
        else:
            self._events.overwritten(frame, self._client_id, doc.user_id)
        self._emit(doc, change)

    def _on_error(self, session: Session, frame: ErrorFrame) -> None:
        error = frame.to_error()
        mutation_id = frame.mutation_id
        if frame.doc is not None and mutation_id is None:
            self._on_doc_error(session, frame.doc, error)
            return
        found = self._docs.owner(mutation_id)
        if found is None and mutation_id is not None:
            if mutation_id not in self._dropped:
                self._refused(error, mutation_id, None)  # an edit no longer pending here
            return
        if found is None:
            session.last_error = error
            self._note_error(error)
            self._events.emit(self._events.error, ErrorEvent.of(error, None, None))
            if isinstance(error, TokenExpired | Unauthorized):
                return  # the server closes with 4001 next; the run loop handles it
            if session.waiting and isinstance(error, Forbidden):
                # Frames are answered in order: this refuses the oldest pending subscription.
                key = session.waiting.pop(0)
                doc = self._docs.get(key)
                if doc is not None and doc is not self._main:
                    doc.followed = False
                self._subscribe_errors[key] = error
                self._sync_waiters[key].set()
            return
        owner, pending = found
        if error.code in _TRANSIENT and pending.attempts < _MAX_RETRIES:
            pending.attempts += 1
            pending.sent = False
            wait = error.retry_after if isinstance(error, RateLimited) else 0.5 * pending.attempts
            log.info("edit %s: %s; sending it again in %.2f s", mutation_id, error.code, wait)
            loop = asyncio.get_running_loop()
            self._paused_until = max(self._paused_until, loop.time() + wait)
            loop.call_later(wait, self._flush)
            return
        # A refused edit is dropped and told, not a state of the client: status.error stays.
        _, change = owner.on_reject(pending.mutation_id)
        self._settle(pending.mutation_id, None, error)
        self._emit(owner, change)
        self._refused(error, pending.mutation_id, owner.user_id, owner.doc)

    def _refused(
        self,
        error: LiveSettingsError,
        mutation_id: str,
        user_id: str | None,
        doc: str | None = None,
    ) -> None:
        self._error_count += 1
        self._events.emit(self._events.error, ErrorEvent.of(error, mutation_id, user_id, doc))
