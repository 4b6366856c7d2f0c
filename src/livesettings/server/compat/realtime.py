"""``/realtime/v1/websocket``: Supabase Realtime's Phoenix channels, ``postgres_changes`` only.

The handshake carries ``apikey`` (the anon key, or a user or service token; else 401 before
the upgrade, as Realtime answers) and ``vsn`` (``2.0.0``, or ``1.0.0`` when absent). Then, per
channel (topic ``realtime:<name>``):

- ``phx_join`` with ``config.postgres_changes`` bindings and the user's ``access_token`` (else
  the ``apikey``) is answered ``ok`` with the bindings echoed and their ids, then a ``system``
  "Subscribed to PostgreSQL" message once changes flow. A join with the anon key is accepted
  (supabase-js joins before the user signs in) and receives nothing until an ``access_token``
  naming a user arrives. A binding that follows another user, another table, or has no
  ``user_id=eq.`` filter is refused with Realtime's ``{"reason": …}``.
- ``access_token`` swaps the channel's token (no reply); an invalid one, or one whose user may
  not follow the channel's bindings, shuts the channel: a ``system`` error, then
  ``phx_close``. So does the token's expiry, a revocation, or the end of the user's sessions.
- ``phx_leave`` is answered, then ``phx_close``; a heartbeat on topic ``phoenix`` gets ok.

Changes come from this node's hub (:mod:`..hub`), like ``/v1/realtime``'s: every committed
change of a followed user — by livesettings clients, HTTP, the REST compat, SQL — once, in
revision order, on every node. A socket holds one hub subscription per user it follows,
shared by its channels (:class:`~.realtime_feed.Feed`).

Everything the socket sends goes through one outbound queue in order; a hub frame is turned
into events when its turn comes, so no event precedes the join reply of its channel. Only text
frames are sent. The limits of ``/v1/realtime`` apply: the handshake's Host and Origin
(``perimeter.Edge``) and connection rate, ``MAX_CONNECTIONS_PER_USER`` (a socket counts once
for each user whose token it holds; a service token is not counted), the frame size (1009),
and a socket silent for :data:`IDLE_TIMEOUT` is closed. A frame that is not a Phoenix message
is ignored; an unknown event on a joined channel too, as Realtime does.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from ... import protocol
from ...auth import ANON_ROLE, Claims
from ...errors import BadRequest, LiveSettingsError, TokenExpired, Unauthorized
from ..dependencies import client_address
from ..hub import Subscriber
from ..services import Services
from . import phoenix
from .keys import anon_claims, check_apikey, is_anon
from .phoenix import Event, Message, Ref, Vsn
from .realtime_changes import Binding, authorize, parse_bindings
from .realtime_feed import Feed, Follower, Step
from .rows import row_ids_of

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_CHANNELS",
    "Channel",
    "ChannelState",
    "PhoenixSession",
    "realtime_websocket",
]

log = logging.getLogger("livesettings.compat.realtime")

IDLE_TIMEOUT: Final = 60.0
"""A socket that sends nothing this long is closed (clients heartbeat every 25 to 30 s)."""

MAX_CHANNELS: Final = 100
"""Channels one socket may hold (Realtime's ``max_channels_per_client``)."""

_QUEUE_LIMIT: Final = 10_000
_SUBSCRIBED: Final = "Subscribed to PostgreSQL"
_NO_DATABASE: Final = (
    "UnableToConnectToProject: Realtime was unable to connect to the project database"
)


async def realtime_websocket(websocket: WebSocket) -> None:
    """The endpoint: check the handshake (draining, rate, ``vsn``, ``apikey``), then run a
    :class:`PhoenixSession`. Host and Origin were checked before (``perimeter.Edge``)."""
    services: Services = websocket.app.state.services
    if services.draining:
        await _deny(websocket, 503, "Realtime is restarting, please standby")
        return
    address = client_address(websocket, services)
    wait = services.connect_limiter.take(services.address_key(address))
    if wait > 0:
        await _deny(websocket, 429, "Too many connection attempts", retry_after=wait)
        return
    try:
        vsn = phoenix.parse_vsn(websocket.query_params.get("vsn"))
    except BadRequest as exc:
        await _deny(websocket, 400, exc.message)
        return
    apikey = websocket.query_params.get("apikey") or websocket.headers.get("x-api-key")
    if not apikey:
        await _deny(websocket, 401, "API key is missing")
        return
    try:
        await check_apikey(services, apikey, address=address, via="websocket")
    except LiveSettingsError as exc:
        await _deny(websocket, exc.status, _token_reason(exc, apikey, services))
        return
    await websocket.accept()
    await PhoenixSession(websocket, services, vsn, apikey, address=address).run()


async def _deny(
    websocket: WebSocket, status: int, message: str, *, retry_after: float | None = None
) -> None:
    """Refuse before the upgrade with ``{"error": message}``, as Realtime's handshake does."""
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
    response = JSONResponse({"error": message}, status_code=status, headers=headers)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:  # the server cannot answer a handshake with HTTP
        await websocket.close(code=protocol.CLOSE_POLICY)


def _token_reason(exc: LiveSettingsError, token: str | None, services: Services) -> str:
    """Realtime's words for a refused token."""
    if isinstance(exc, TokenExpired):
        ago = 0
        with contextlib.suppress(jwt.PyJWTError, TypeError, ValueError):
            exp: Any = jwt.decode(token or "", options={"verify_signature": False}).get("exp")
            ago = max(0, math.floor(services.clock.time() - float(exp)))
        return f"InvalidJWTToken: Token has expired {ago} seconds ago"
    return f"InvalidJWTToken: {exc.message}"


class ChannelState(enum.Enum):
    """A channel is ``JOINED`` from its ok reply until it is left or shut (``CLOSED``)."""

    JOINED = "joined"
    CLOSED = "closed"


@dataclass(eq=False)
class Channel:
    """One joined topic of a socket."""

    topic: str
    join_ref: Ref
    bindings: list[Binding]
    token: str
    claims: Claims
    follower: Follower
    state: ChannelState = ChannelState.JOINED
    following: bool = False  # its bindings' users' feeds deliver to it
    expiry: asyncio.TimerHandle | None = None

    @property
    def user(self) -> str | None:
        """Whom the channel's token names: a user (or a service), None for the anon key."""
        return None if self.claims.role == ANON_ROLE else self.claims.sub

    @property
    def users(self) -> set[str]:
        """The users its bindings follow."""
        return {b.user_id for b in self.bindings}


@dataclass
class _Action:
    """An outbound step run in its turn: hub frames become events only then."""

    run: Callable[[int], Awaitable[list[Message]]]
    position: int = 0


@dataclass
class _Close:
    code: int
    reason: str


_Outbound = str | _Action | _Close


@dataclass(eq=False)
class _Registration:
    """The socket as ``Services.connections`` counts it for one user (limits, revocations)."""

    conn: Any
    channels: set[Channel] = field(default_factory=set)


class PhoenixSession:
    """One ``/realtime/v1/websocket`` connection."""

    def __init__(
        self,
        websocket: WebSocket,
        services: Services,
        vsn: Vsn,
        apikey: str,
        *,
        address: str = "",
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.ws = websocket
        self.services = services
        self.vsn = vsn
        self.apikey = apikey
        self.address = address
        self.idle_timeout = idle_timeout
        self.channels: dict[str, Channel] = {}  # by topic
        self.feeds: dict[str, Feed] = {}  # by followed user
        self.registrations: dict[str, _Registration] = {}  # by the tokens' user
        self.outbound: asyncio.Queue[_Outbound] = asyncio.Queue()
        self.position = 0  # of the last item queued
        self.closing = False

    # -- sending --------------------------------------------------------------------------
    def _queue(self, item: _Outbound) -> int:
        if self.closing:
            return self.position
        if self.outbound.qsize() >= _QUEUE_LIMIT:
            self.close(protocol.CLOSE_POLICY, "too slow")
            return self.position
        self.position += 1
        if isinstance(item, _Action):
            item.position = self.position
        self.outbound.put_nowait(item)
        return self.position

    def send(self, message: Message) -> int:
        """Queue ``message``; its position in the outbound order."""
        return self._queue(phoenix.encode(message, self.vsn))

    def close(self, code: int, reason: str = "") -> None:
        """Close after what is queued; a second close does nothing."""
        if not self.closing:
            self.outbound.put_nowait(_Close(code, reason))
            self.closing = True

    async def _sender(self) -> None:
        while True:
            item = await self.outbound.get()
            if isinstance(item, _Close):
                with contextlib.suppress(Exception):
                    await self.ws.close(code=item.code, reason=item.reason[:120])
                return
            if isinstance(item, _Action):
                try:
                    messages = await item.run(item.position)
                except Exception:  # a failed read must not end the socket
                    log.exception("a realtime event could not be prepared")
                    continue
                for message in messages:
                    await self.ws.send_text(phoenix.encode(message, self.vsn))
                continue
            await self.ws.send_text(item)

    # -- main loop ------------------------------------------------------------------------
    async def run(self) -> None:
        """Read and answer until either side ends; then let go of every subscription."""
        sender = asyncio.create_task(self._sender())
        reader = asyncio.create_task(self._reader())
        try:
            done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done and not sender.done():
                self.close(protocol.CLOSE_NORMAL)
                with contextlib.suppress(asyncio.TimeoutError, Exception):
                    await asyncio.wait_for(sender, timeout=1.0)
        finally:
            for task in (sender, reader):
                task.cancel()
            for task in (sender, reader):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._cleanup()

    def _cleanup(self) -> None:
        for channel in list(self.channels.values()):
            self._drop(channel)
        for user in list(self.registrations):
            self._release(user, force=True)

    async def _reader(self) -> None:
        limit = self.services.config.max_frame_bytes
        while not self.closing:
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=self.idle_timeout)
            except TimeoutError:
                self.close(protocol.CLOSE_GOING_AWAY, "idle")
                return
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            text, data = message.get("text"), message.get("bytes")
            if len(text if text is not None else data or b"") > limit:
                self.close(protocol.CLOSE_TOO_BIG, "frame too big")
                return
            try:
                frame = (
                    phoenix.decode(text, self.vsn)
                    if text is not None
                    else phoenix.decode_binary(data or b"")
                )
            except BadRequest as exc:
                # Nothing to answer (no usable ref); Phoenix would drop the socket instead.
                log.debug("ignored a realtime frame: %s", exc.message)
                continue
            try:
                await self._handle(frame)
            except Exception:  # a bug or a database failure: this frame fails, not the socket
                log.exception("a realtime %s frame failed", frame.event[:40])
                if frame.event == Event.JOIN:
                    reason = "UnknownErrorOnChannel: Unknown Error on Channel"
                    self.send(phoenix.error_reply(frame.topic, frame.ref, frame.ref, reason))

    async def _handle(self, msg: Message) -> None:
        if msg.topic == phoenix.HEARTBEAT_TOPIC:
            if msg.event == Event.HEARTBEAT:
                self.send(phoenix.heartbeat_reply(msg.ref))
            else:
                self.send(phoenix.unmatched_topic(msg))
            return
        if msg.event == Event.JOIN:
            await self._join(msg)
            return
        channel = self.channels.get(msg.topic)
        if channel is None:
            self.send(phoenix.unmatched_topic(msg))
            return
        if msg.join_ref is not None and msg.join_ref != channel.join_ref:
            return  # for a channel this topic had before: Phoenix drops it too
        if msg.event == Event.LEAVE:
            self.send(phoenix.ok_reply(channel.topic, msg.ref, channel.join_ref))
            self._shut(channel)
        elif msg.event == Event.ACCESS_TOKEN:
            await self._access_token(channel, msg.payload.get("access_token"))
        elif msg.event in (Event.BROADCAST, Event.PRESENCE):
            why = f"{msg.event} is not supported by livesettings (postgres_changes only)"
            self.send(phoenix.error_reply(channel.topic, msg.ref, channel.join_ref, why))
        # Any other event is ignored, as Realtime ignores unexpected client messages.

    # -- joining --------------------------------------------------------------------------
    async def _join(self, msg: Message) -> None:
        topic, ref = msg.topic, msg.ref

        def refuse(reason: str) -> None:
            self.send(phoenix.error_reply(topic, ref, ref, reason))

        if not topic.startswith(phoenix.CHANNEL_PREFIX):
            refuse("unmatched topic")
            return
        if topic == phoenix.CHANNEL_PREFIX:
            refuse("TopicNameRequired: You must provide a topic name")
            return
        old = self.channels.get(topic)
        if old is not None:  # a second join replaces the channel, as in Phoenix
            self._shut(old)
        if len(self.channels) >= MAX_CHANNELS:
            refuse("ChannelRateLimitReached: Too many channels")
            return
        token = msg.payload.get("access_token") or msg.payload.get("user_token") or self.apikey
        try:
            bindings = parse_bindings(msg.payload.get("config"))
            if not isinstance(token, str):
                raise Unauthorized("the access_token must be a string", code="invalid_token")
            claims = await self._verify(token)
        except LiveSettingsError as exc:
            refuse(exc.message if isinstance(exc, BadRequest) else self._reason(exc, token))
            return
        channel = Channel(topic, ref, bindings, token, claims, Follower(topic, bindings))
        refusal = self._admit(channel)
        if refusal is not None:
            refuse(refusal)
            return
        opened: list[Feed] = []
        if channel.user is not None and bindings:
            try:
                opened = await self._open_feeds(channel)
            except LiveSettingsError:
                log.warning("realtime join: reading the followed document failed", exc_info=True)
                self._leave_registration(channel.user, channel)
                refuse(_NO_DATABASE)
                return
            if channel.state is ChannelState.CLOSED:
                return  # the user's sessions ended while the document was read
        self.channels[topic] = channel
        self._arm_expiry(channel)
        echo = [binding.echo() for binding in bindings]
        position = self.send(phoenix.ok_reply(topic, ref, ref, {"postgres_changes": echo}))
        if channel.user is not None and bindings:
            await self._follow(channel, opened, position)

    def _admit(self, channel: Channel) -> str | None:
        """Why ``channel``'s token may not hold its bindings (None: it may), and count the
        socket for its user."""
        user = channel.user
        if user is None:
            return None  # the anon key: nothing flows until a user's token arrives
        try:
            authorize(channel.bindings, user, service=channel.claims.is_service)
        except LiveSettingsError as exc:
            return exc.message
        if not self._register(channel.claims, channel):
            return "ConnectionRateLimitReached: Too many connected users"
        return None

    async def _verify(self, token: str) -> Claims:
        if is_anon(token):
            return await anon_claims(self.services, token)
        return await self.services.authenticate(token, address=self.address, via="websocket")

    def _reason(self, exc: LiveSettingsError, token: Any) -> str:
        return _token_reason(exc, token if isinstance(token, str) else None, self.services)

    # -- following ------------------------------------------------------------------------
    async def _open_feeds(self, channel: Channel) -> list[Feed]:
        """A feed for each user ``channel`` follows that this socket does not follow yet:
        their documents read now (the hub subscription comes after the join reply)."""
        opened: list[Feed] = []
        for user in sorted(channel.users - self.feeds.keys()):
            doc = await self.services.store.get_document(user)
            exists = doc.revision > 0 or doc.created_at is not None
            row_id = await row_ids_of(self.services.store).get(user) if exists else None
            opened.append(Feed.of(user, doc, row_id, self.services.view))
        return opened

    async def _follow(self, channel: Channel, opened: list[Feed], position: int) -> None:
        """Deliver to ``channel`` every change after outbound ``position`` (its join reply),
        say so (Realtime's "Subscribed to PostgreSQL"), and subscribe the feeds just
        ``opened`` to the hub from the revision they were read at."""
        channel.follower.since = position
        channel.following = True
        for feed in opened:
            self.feeds[feed.user_id] = feed
        for user in channel.users:
            self.feeds[user].followers.add(channel.follower)
        subscribed = phoenix.system_message(
            channel.topic,
            channel.join_ref,
            extension=Event.POSTGRES_CHANGES,
            status="ok",
            message=_SUBSCRIBED,
        )
        self.send(subscribed)
        for feed in opened:
            sub = Subscriber(feed.user_id, functools.partial(self._on_hub_frame, feed))
            feed.subscriber = sub
            try:
                await self.services.hub.subscribe(sub, feed.revision)
            except Exception:  # the database is away: this channel ends, the socket stays
                log.warning("realtime: subscribing to a user's changes failed", exc_info=True)
                feed.subscriber = None
                self._shut(channel, _NO_DATABASE)
                return

    def _unfollow(self, channel: Channel) -> None:
        if not channel.following:
            return
        channel.following = False
        for user in channel.users:
            feed = self.feeds.get(user)
            if feed is None:
                continue
            feed.followers.discard(channel.follower)
            if not feed.followers:
                self._close_feed(feed)

    def _close_feed(self, feed: Feed) -> None:
        feed.closed = True
        if self.feeds.get(feed.user_id) is feed:
            del self.feeds[feed.user_id]
        if feed.subscriber is not None:
            self.services.hub.unsubscribe(feed.subscriber)
            feed.subscriber = None

    def _on_hub_frame(self, feed: Feed, text: str) -> None:
        """A frame the hub queued for ``feed`` (synchronously): handled in its turn."""
        if feed.closed or self.closing:
            return
        try:
            frame = json.loads(text)
        except ValueError:
            return
        kind = frame.get("type")
        if kind == "change":
            self._queue(_Action(functools.partial(self._on_change, feed, frame)))
        elif kind == "snapshot":  # the hub's reset: the log no longer reached back
            self._queue(_Action(functools.partial(self._refresh, feed)))

    async def _on_change(self, feed: Feed, frame: dict[str, Any], position: int) -> list[Message]:
        if feed.closed:
            return []
        step = feed.step(int(frame["revision"]), frame["patch"], int(frame["committed_at"]))
        if step is Step.SEEN:
            return []
        if step is Step.GAP:
            return await self._refresh(feed, position)
        if feed.last_change == "INSERT":
            with contextlib.suppress(LiveSettingsError):
                feed.row_id = await row_ids_of(self.services.store).get(feed.user_id)
        return feed.events(feed.last_change, position)

    async def _refresh(self, feed: Feed, position: int) -> list[Message]:
        """Read the document again and send its row as one ``UPDATE``."""
        if feed.closed:
            return []
        doc = await self.services.store.get_document(feed.user_id)
        exists = doc.revision > 0 or doc.created_at is not None
        row_id = await row_ids_of(self.services.store).get(feed.user_id) if exists else None
        feed.reset(doc, row_id)
        return feed.events("UPDATE", position)

    # -- tokens ---------------------------------------------------------------------------
    async def _access_token(self, channel: Channel, token: Any) -> None:
        """Swap the channel's token, as Realtime does: nothing for the same token, a null one
        or a publishable ``sb_`` key; a refused token or user shuts the channel."""
        if not isinstance(token, str) or not token or token == channel.token:
            return
        if token.startswith("sb_"):
            return
        try:
            claims = await self._verify(token)
        except LiveSettingsError as exc:
            self._shut(channel, self._reason(exc, token))
            return
        if channel.state is ChannelState.CLOSED:
            return  # left or replaced while the token was being checked
        before = channel.user
        channel.token, channel.claims = token, claims
        self._arm_expiry(channel)
        user = channel.user
        if user is None:  # signed out: the anon key again; nothing flows until a user's
            self._unfollow(channel)
            if before is not None:
                self._leave_registration(before, channel)
            return
        try:
            authorize(channel.bindings, user, service=claims.is_service)
        except LiveSettingsError:
            message = (
                "You no longer have permission to read from this Channel topic: "
                f"{phoenix.sub_topic(channel.topic)}"
            )
            self._shut(channel, message)
            return
        if before is not None and before != user:
            self._leave_registration(before, channel)
        if not self._register(claims, channel):
            self._shut(channel, "ConnectionRateLimitReached: Too many connected users")
            return
        if channel.following or not channel.bindings:
            return
        try:
            opened = await self._open_feeds(channel)
        except LiveSettingsError:
            self._shut(channel, _NO_DATABASE)
            return
        if channel.state is ChannelState.JOINED:
            await self._follow(channel, opened, self.position)

    def _arm_expiry(self, channel: Channel) -> None:
        if channel.expiry is not None:
            channel.expiry.cancel()
        delay = max(0.0, channel.claims.exp - self.services.clock.time())
        loop = asyncio.get_running_loop()
        channel.expiry = loop.call_later(delay, self._expired, channel)

    def _expired(self, channel: Channel) -> None:
        if channel.state is ChannelState.JOINED:
            ago = max(0, math.floor(self.services.clock.time() - channel.claims.exp))
            self._shut(channel, f"Token has expired {ago} seconds ago")

    # -- connections (limits and revocations) ---------------------------------------------
    def _register(self, claims: Claims, channel: Channel) -> bool:
        """Count this socket once for the token's user; False past the per-user limit."""
        user = claims.sub
        found = self.registrations.get(user)
        if found is None:
            limit = self.services.config.max_connections_per_user
            connections = self.services.connections
            if not claims.is_service and connections.count(user) >= limit:
                return False
            close = functools.partial(self._ended, user)
            conn = connections.add(user, close, jti=claims.jti)
            found = self.registrations[user] = _Registration(conn)
        else:
            found.conn.jti = claims.jti  # `token revoke --jti` now names the newest token
        found.channels.add(channel)
        return True

    def _leave_registration(self, user: str, channel: Channel) -> None:
        found = self.registrations.get(user)
        if found is not None:
            found.channels.discard(channel)
            if not found.channels:
                self._release(user, force=True)

    def _release(self, user: str, *, force: bool = False) -> None:
        found = self.registrations.get(user)
        if found is not None and (force or not found.channels):
            del self.registrations[user]
            self.services.connections.remove(found.conn)

    async def _ended(self, user: str, code: int, reason: str) -> None:
        """``Services.connections`` ends the socket for ``user``: a revocation or the end of
        the user's sessions (4001) shuts that user's channels; anything else (a drain: 1001)
        closes the socket, so clients reconnect elsewhere."""
        if code != protocol.CLOSE_UNAUTHORIZED:
            self.close(code, reason)
            return
        found = self.registrations.get(user)
        for channel in list(found.channels if found is not None else ()):
            self._shut(channel, f"Unauthorized: {reason}")
        self._release(user, force=True)

    # -- ending channels ------------------------------------------------------------------
    def _shut(self, channel: Channel, error: str | None = None) -> None:
        """End ``channel``: a ``system`` error first when ``error`` says why, then
        ``phx_close``."""
        if channel.state is ChannelState.CLOSED:
            return
        if error is not None:
            self.send(
                phoenix.system_message(
                    channel.topic,
                    channel.join_ref,
                    extension="system",
                    status="error",
                    message=error,
                )
            )
        self.send(phoenix.close_message(channel.topic, channel.join_ref))
        self._drop(channel)

    def _drop(self, channel: Channel) -> None:
        channel.state = ChannelState.CLOSED
        if self.channels.get(channel.topic) is channel:
            del self.channels[channel.topic]
        if channel.expiry is not None:
            channel.expiry.cancel()
            channel.expiry = None
        self._unfollow(channel)
        for user in list(self.registrations):
            self._leave_registration(user, channel)
