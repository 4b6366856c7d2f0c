"""``/v1/realtime``: the WebSocket protocol of DESIGN §5.

A :class:`Session` reads frames in order and answers in order: a frame is written to the socket
at once when nothing is waiting before it (the usual case: no task wake-up), else it joins one
outbound queue, which a sender task writes out in one go. So the writer can send an ``ack``
(synchronously, at commit) strictly before the hub sends the matching ``change``.

Team documents (DESIGN §11): ``subscribe``, ``unsubscribe`` and ``update`` with ``doc`` reach a
team's document; each such frame reads the user's membership first (404 ``not_found`` for a
non-member, so existence does not leak), and every frame about it carries ``doc``. One socket
holds any number of subscriptions. When the user's role changes the socket gets a
``membership`` frame; when they are removed, its subscription to that document ends with an
``error`` frame ``forbidden`` carrying ``doc``, and nothing more about it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import protocol
from ..auth import Claims
from ..errors import Forbidden, LiveSettingsError, RateLimited, TokenExpired, Unauthorized
from ..store.base import CommitOutcome
from ..teams import is_team_key, parse_team_id, team_id_of, team_not_found
from .dependencies import client_address, draining
from .hub import Subscriber
from .mutations import Edit, Member, check_write_rate, enqueue, patch_mutation
from .services import Services

__all__ = ["Session", "SessionState", "realtime_endpoint", "transition"]

log = logging.getLogger("livesettings.realtime")

_QUEUE_LIMIT = 10_000

_Outbound = str | tuple[int, str] | BaseException
"""A frame, a close ``(code, reason)``, or the failure of a direct write (ends the sender)."""
_STRIKES_BEFORE_CLOSE = 100
_STRIKE_WINDOW = 10.0


async def realtime_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    # Host and Origin were checked before the upgrade (perimeter.HostGuard).
    if services.draining:
        await _deny(websocket, draining())
        return
    address = client_address(websocket, services)
    wait = services.connect_limiter.take(services.address_key(address))
    if wait > 0:
        await _deny(websocket, RateLimited("too many connection attempts", retry_after=wait))
        return
    await websocket.accept()
    await Session(websocket, services, address=address).run()


async def _deny(websocket: WebSocket, error: LiveSettingsError) -> None:
    """Refuse before the upgrade with the error's HTTP status (429, 503)."""
    retry_after = error.retry_after if isinstance(error, RateLimited) else None
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
    response = JSONResponse(
        {"error": error.to_payload()}, status_code=error.status, headers=headers
    )
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:
        await websocket.close(code=protocol.CLOSE_POLICY)


class SessionState(enum.Enum):
    """Where a :class:`Session` is: ``AUTHENTICATING`` until its first valid ``auth`` frame,
    then ``OPEN`` (a later ``auth`` refreshes the token), and ``CLOSING`` once a close is
    queued. Nothing leaves ``CLOSING``."""

    AUTHENTICATING = "authenticating"
    OPEN = "open"
    CLOSING = "closing"


_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.AUTHENTICATING: frozenset({SessionState.OPEN, SessionState.CLOSING}),
    SessionState.OPEN: frozenset({SessionState.CLOSING}),
    SessionState.CLOSING: frozenset(),
}


def transition(current: SessionState, to: SessionState) -> SessionState:
    """``to``, when a session in ``current`` may move there; else a ``RuntimeError`` naming
    both (a bug in the session, never the peer's doing)."""
    allowed = _TRANSITIONS[current]
    if to not in allowed:
        expected = " or ".join(sorted(s.value for s in allowed)) or "nothing"
        raise RuntimeError(
            f"a session cannot go from {current.value} to {to.value} (expected {expected})"
        )
    return to


class Session:
    """One WebSocket connection, from ``auth`` to close."""

    def __init__(self, websocket: WebSocket, services: Services, *, address: str = "") -> None:
        self.ws = websocket
        self.services = services
        self.address = address
        self.state = SessionState.AUTHENTICATING
        self.claims: Claims | None = None  # set when the state becomes OPEN
        self.client_id = "ws-" + uuid.uuid4().hex[:16]
        self.subscriptions: dict[str, Subscriber] = {}  # by document key
        self.team_roles: dict[str, str | None] = {}  # the last role known (sent) per team doc
        self.outbound: asyncio.Queue[_Outbound] = asyncio.Queue()
        self._sending = False  # the sender task holds frames taken from the queue
        self._blocked: asyncio.Future[None] | None = None  # a direct write left waiting
        self._direct = True  # direct writes allowed (off once one failed)
        self._conn: Any = None
        self._expiry: asyncio.TimerHandle | None = None
        self._strikes: list[float] = []

    def _enter(self, state: SessionState) -> None:
        self.state = transition(self.state, state)

    # -- sending --------------------------------------------------------------------------
    def send(self, frame: str) -> None:
        if self.state is SessionState.CLOSING:
            return
        if self._direct and not self._sending and self._blocked is None and self.outbound.empty():
            self._write_now(frame)
            return
        if self.outbound.qsize() >= _QUEUE_LIMIT:
            self.close(protocol.CLOSE_POLICY, "too slow: resubscribe with since")
            return
        self.outbound.put_nowait(frame)

    def _write_now(self, frame: str) -> None:
        """Write ``frame`` without waking the sender: the ASGI send runs to completion here
        unless the transport pushes back; then a task finishes it and later frames queue."""
        write = self.ws.send({"type": "websocket.send", "text": frame})
        try:
            waiting = write.send(None)
        except StopIteration:
            return
        except BaseException as exc:  # the peer is gone: the sender ends the session
            self._direct = False
            self.outbound.put_nowait(exc)
            return
        blocked = self._blocked = asyncio.ensure_future(_finish(write, waiting))
        blocked.add_done_callback(self._unblocked)

    def _unblocked(self, blocked: asyncio.Future[None]) -> None:
        """A direct write that had to wait is done; if it failed, the sender ends the session."""
        if self._blocked is blocked:
            self._blocked = None
        if not blocked.cancelled() and (exc := blocked.exception()) is not None:
            self._direct = False
            self.outbound.put_nowait(exc)

    def close(self, code: int, reason: str = "") -> None:
        """Queue the close after the frames already queued; a second close does nothing."""
        if self.state is not SessionState.CLOSING:
            self._enter(SessionState.CLOSING)
            self.outbound.put_nowait((code, reason))

    async def _close_async(self, code: int, reason: str) -> None:
        self.close(code, reason)

    async def _sender(self) -> None:
        outbound = self.outbound
        while True:
            item = await outbound.get()
            self._sending = True
            try:
                while True:  # everything queued, in one go
                    blocked = self._blocked
                    if blocked is not None:  # a direct write still going goes first
                        await asyncio.wait({blocked})
                    if isinstance(item, tuple):
                        with contextlib.suppress(Exception):
                            await self.ws.close(code=item[0], reason=item[1][:120])
                        return
                    if isinstance(item, BaseException):
                        raise item
                    await self.ws.send({"type": "websocket.send", "text": item})
                    if outbound.empty():
                        break
                    item = outbound.get_nowait()
            finally:
                self._sending = False

    # -- main loop ------------------------------------------------------------------------
    async def run(self) -> None:
        sender = asyncio.create_task(self._sender())
        reader = asyncio.create_task(self._reader())
        try:
            done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done and not sender.done():
                # The peer went away or the reader ended: let queued frames go out, briefly.
                self.close(protocol.CLOSE_GOING_AWAY, "bye")
                with contextlib.suppress(asyncio.TimeoutError, Exception):
                    await asyncio.wait_for(sender, timeout=1.0)
        finally:
            blocked = self._blocked
            tasks = (sender, reader) if blocked is None else (sender, reader, blocked)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._cleanup()

    def _cleanup(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        for sub in self.subscriptions.values():
            self.services.hub.unsubscribe(sub)
        self.subscriptions.clear()
        if self._conn is not None:
            self.services.connections.remove(self._conn)
            self._conn = None

    async def _reader(self) -> None:
        timeout = self.services.config.auth_timeout
        try:
            first = await asyncio.wait_for(self.ws.receive(), timeout=timeout)
        except TimeoutError:
            self.send(protocol.error_frame(Unauthorized("no auth frame within the time allowed")))
            self.close(protocol.CLOSE_UNAUTHORIZED, "auth timeout")
            return
        message: Any = first
        while True:
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = message.get("bytes") or b""
            await self._handle(text)
            if self.state is SessionState.CLOSING:
                return
            try:
                message = await self.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return

    async def _handle(self, text: str | bytes) -> None:
        config = self.services.config
        if len(text) > config.max_frame_bytes:
            self.close(protocol.CLOSE_TOO_BIG, "frame too big")
            return
        try:
            frame = protocol.parse_client_frame(text, max_patch_bytes=config.max_patch_bytes)
        except LiveSettingsError as exc:
            self._error(exc)
            if self.state is SessionState.AUTHENTICATING:
                self.close(protocol.CLOSE_UNAUTHORIZED, "auth first")
            return
        if isinstance(frame, protocol.AuthFrame):
            await self._auth(frame)
            return
        if self.state is SessionState.AUTHENTICATING or self.claims is None:
            self._error(Unauthorized("send an auth frame first"))
            self.close(protocol.CLOSE_UNAUTHORIZED, "auth first")
            return
        if isinstance(frame, protocol.PingFrame):
            self.send(protocol.PongFrame().to_json())
        elif isinstance(frame, protocol.SubscribeFrame):
            await self._subscribe(frame)
        elif isinstance(frame, protocol.UnsubscribeFrame):
            target = frame.doc or frame.user_id or self.claims.sub
            sub = self.subscriptions.pop(target, None)
            if sub is not None:
                self.services.hub.unsubscribe(sub)
        elif isinstance(frame, protocol.UpdateFrame):
            member = None
            if frame.doc is not None:
                try:
                    member = await self._member(frame.doc)
                except LiveSettingsError as exc:
                    self._error(exc, frame.mutation_id, frame.doc)
                    return
            self._update(frame, member)

    def _error(
        self, exc: LiveSettingsError, mutation_id: str | None = None, doc: str | None = None
    ) -> None:
        self.services.metrics.errors.inc(code=exc.code)
        self.send(protocol.error_frame(exc, mutation_id, doc))

    # -- team documents -------------------------------------------------------------------
    async def _member(self, doc: str) -> Member:
        """The socket user's membership of ``doc``'s team; 404 when there is none."""
        assert self.claims is not None
        team_id = parse_team_id(team_id_of(doc) or "")
        if self.claims.is_service:
            raise Forbidden("a team's document is followed by its members (service: user_id)")
        team = await self.services.store.teams.membership(team_id, self.claims.sub)
        if team is None or team.role is None:
            raise team_not_found()
        self.team_roles[doc] = team.role
        return Member(self.claims.sub, team.role)

    def _team_docs(self) -> list[str]:
        """The team documents this socket relies on (re-read after a bus reconnect)."""
        return [doc for doc, role in self.team_roles.items() if role is not None]

    def _membership(self, doc: str, role: str | None) -> None:
        """The user's role in ``doc``'s team changed (None: removed), on any node."""
        if doc in self.team_roles and self.team_roles[doc] == role:
            return  # already told (an event may arrive twice: locally and from the bus)
        self.team_roles[doc] = role
        self.send(protocol.MembershipFrame(doc, role).to_json())
        if role is None:
            sub = self.subscriptions.pop(doc, None)
            if sub is not None:
                self.services.hub.unsubscribe(sub)
                gone = Forbidden("you are no longer a member of this team")
                self._error(gone, doc=doc)

    # -- frames ---------------------------------------------------------------------------
    async def _auth(self, frame: protocol.AuthFrame) -> None:
        try:
            claims = await self.services.authenticate(
                frame.token, address=self.address, via="websocket"
            )
        except LiveSettingsError as exc:
            self._error(exc)
            self.close(protocol.CLOSE_UNAUTHORIZED, "invalid token")
            return
        if self.state is SessionState.CLOSING:
            return  # closed (a drain, a revocation) while the token was being checked
        if self.claims is not None and claims.sub != self.claims.sub:
            self._error(Unauthorized("a socket stays with the user it signed in as"))
            self.close(protocol.CLOSE_UNAUTHORIZED, "user changed")
            return
        first = self.state is SessionState.AUTHENTICATING
        self.claims = claims
        if first:
            self._enter(SessionState.OPEN)
            if frame.client_id:
                self.client_id = frame.client_id
            limit = self.services.config.max_connections_per_user
            if not claims.is_service and self.services.connections.count(claims.sub) >= limit:
                self._error(RateLimited(f"more than {limit} connections for this user"))
                self.close(protocol.CLOSE_RATE_LIMITED, "too many connections")
                return
            self._conn = self.services.connections.add(
                claims.sub,
                self._close_async,
                jti=claims.jti,
                on_membership=self._membership,
                team_docs=self._team_docs,
            )
        elif self._conn is not None:
            self._conn.jti = claims.jti  # `token revoke --jti` now ends it with the new token
        self._arm_expiry(claims.exp)
        self.send(protocol.AuthOkFrame(claims.sub, claims.exp).to_json())

    def _arm_expiry(self, exp: int) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        delay = max(0.0, exp - self.services.clock.time())
        self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        self._error(TokenExpired("token expired; send a fresh auth frame before it runs out"))
        self.close(protocol.CLOSE_UNAUTHORIZED, "token expired")

    def _target(self, user_id: str | None, doc: str | None = None) -> str:
        assert self.claims is not None
        if doc is not None:
            return doc  # a team's document: the membership was read by _member
        if user_id is None or user_id == self.claims.sub:
            return self.claims.sub
        if not self.claims.is_service:
            raise Forbidden("a user token can only reach its own settings")
        if len(user_id) > 128 or is_team_key(user_id):
            raise Forbidden("not a user id (a team's document is named by doc)")
        return user_id

    async def _subscribe(self, frame: protocol.SubscribeFrame) -> None:
        doc = frame.doc
        try:
            member = await self._member(doc) if doc is not None else None
            target = self._target(frame.user_id, doc)
        except LiveSettingsError as exc:
            self._error(exc, doc=doc)
            return
        old = self.subscriptions.pop(target, None)
        if old is not None:
            self.services.hub.unsubscribe(old)
        if member is not None:
            sub = Subscriber(target, self.send, doc=doc, actor=member.user_id)
        else:
            sub = Subscriber(target, self.send, with_user_id=frame.user_id is not None)
        self.subscriptions[target] = sub
        try:
            await self.services.hub.subscribe(sub, frame.since)
        except LiveSettingsError as exc:
            self.subscriptions.pop(target, None)
            self._error(exc, doc=doc)
            return
        removed = doc is not None and self.team_roles.get(doc) is None
        if removed and self.subscriptions.get(target) is sub:
            # Removed while the first read was in flight: end it as _membership would have.
            del self.subscriptions[target]
            self.services.hub.unsubscribe(sub)
            self._error(Forbidden("you are no longer a member of this team"), doc=doc)

    def _update(self, frame: protocol.UpdateFrame, member: Member | None = None) -> None:
        services = self.services
        edit = Edit(frame.mutation_id, self.client_id, frame.base_revision, frame.edited_at)
        doc = frame.doc
        try:
            target = self._target(frame.user_id, doc)
            check_write_rate(services, target, member)
            pending = patch_mutation(services, target, frame.patch, edit, member)
        except LiveSettingsError as exc:
            self._error(exc, frame.mutation_id, doc)
            if isinstance(exc, RateLimited):
                self._strike()
            return
        user_id = target if frame.user_id is not None else None

        def ack(outcome: CommitOutcome) -> None:
            conflicts = list(outcome.conflict_payloads)
            answer = protocol.AckFrame(
                frame.mutation_id, outcome.revision, conflicts, user_id, doc=doc
            )
            self.send(answer.to_json())

        def refuse(error: LiveSettingsError) -> None:
            self._error(error, frame.mutation_id, doc)

        try:
            enqueue(services, pending, ack, refuse)
        except LiveSettingsError as exc:
            self._error(exc, frame.mutation_id, doc)

    def _strike(self) -> None:
        now = self.services.clock.monotonic()
        self._strikes = [t for t in self._strikes if t > now - _STRIKE_WINDOW]
        self._strikes.append(now)
        if len(self._strikes) >= _STRIKES_BEFORE_CLOSE:
            self.close(protocol.CLOSE_RATE_LIMITED, "rate limited")


async def _finish(write: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Drive a write that :meth:`Session._write_now` started and that had to wait for
    ``waiting`` (the future it yielded) to its end; closed unfinished if cancelled."""
    try:
        while True:
            if isinstance(waiting, asyncio.Future):
                await asyncio.wait({waiting})
            else:  # a bare yield: give the loop one turn
                await asyncio.sleep(0)
            try:
                waiting = write.send(None)
            except StopIteration:
                return
    finally:
        write.close()
