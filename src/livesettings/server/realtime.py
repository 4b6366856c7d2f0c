"""``/v1/realtime``: the WebSocket protocol of DESIGN §5.

A :class:`Session` reads frames in order and answers through one outbound queue, drained by a
sender task, so the writer can queue an ``ack`` (synchronously, at commit) strictly before the
hub queues the matching ``change``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..auth import Claims
from ..document import validate_patch
from ..errors import (
    Forbidden,
    LiveSettingsError,
    RateLimited,
    TokenExpired,
    Unauthorized,
)
from ..merge import Mutation
from ..protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_RATE_LIMITED,
    CLOSE_TOO_BIG,
    CLOSE_UNAUTHORIZED,
    AckFrame,
    AuthFrame,
    AuthOkFrame,
    PingFrame,
    PongFrame,
    SubscribeFrame,
    UnsubscribeFrame,
    UpdateFrame,
    error_frame,
    parse_client_frame,
)
from ..store.base import CommitOutcome, PendingMutation
from ..store.planning import body_hash
from .http import client_address
from .hub import Subscriber
from .services import Services
from .writer import rate_cost

__all__ = ["Session", "realtime_endpoint"]

log = logging.getLogger("livesettings.realtime")

_QUEUE_LIMIT = 10_000
_STRIKES_BEFORE_CLOSE = 100
_STRIKE_WINDOW = 10.0


async def realtime_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    # Host and Origin were checked before the upgrade (perimeter.HostGuard).
    if services.draining:
        await _deny(websocket, 503, "draining", "the server is shutting down")
        return
    address = client_address(websocket, services)
    wait = services.connect_limiter.take(services.address_key(address))
    if wait > 0:
        await _deny(websocket, 429, "rate_limited", "too many connection attempts", wait)
        return
    await websocket.accept()
    await Session(websocket, services, address=address).run()


async def _deny(
    websocket: WebSocket, status: int, code: str, message: str, retry_after: float | None = None
) -> None:
    """Refuse before the upgrade with an HTTP status (403, 429, 503)."""
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
    response = JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:
        await websocket.close(code=CLOSE_POLICY)


class Session:
    """One WebSocket connection, from ``auth`` to close."""

    def __init__(self, websocket: WebSocket, services: Services, *, address: str = "") -> None:
        self.ws = websocket
        self.services = services
        self.address = address
        self.claims: Claims | None = None
        self.client_id = "ws-" + uuid.uuid4().hex[:16]
        self.subscriptions: dict[str, Subscriber] = {}
        self.outbound: asyncio.Queue[str | tuple[int, str]] = asyncio.Queue()
        self._conn: Any = None
        self._expiry: asyncio.TimerHandle | None = None
        self._closing = False
        self._strikes: list[float] = []

    # -- sending --------------------------------------------------------------------------
    def send(self, frame: str) -> None:
        if self._closing:
            return
        if self.outbound.qsize() >= _QUEUE_LIMIT:
            self.close(CLOSE_POLICY, "too slow: resubscribe with since")
            return
        self.outbound.put_nowait(frame)

    def close(self, code: int, reason: str = "") -> None:
        if not self._closing:
            self._closing = True
            self.outbound.put_nowait((code, reason))

    async def _close_async(self, code: int, reason: str) -> None:
        self.close(code, reason)

    async def _sender(self) -> None:
        while True:
            item = await self.outbound.get()
            if isinstance(item, tuple):
                with contextlib.suppress(Exception):
                    await self.ws.close(code=item[0], reason=item[1][:120])
                return
            await self.ws.send_text(item)

    # -- main loop ------------------------------------------------------------------------
    async def run(self) -> None:
        sender = asyncio.create_task(self._sender())
        reader = asyncio.create_task(self._reader())
        try:
            done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done and not sender.done():
                # The peer went away or the reader ended: let queued frames go out, briefly.
                self.close(CLOSE_GOING_AWAY, "bye")
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
            self.send(error_frame(Unauthorized("no auth frame within the time allowed")))
            self.close(CLOSE_UNAUTHORIZED, "auth timeout")
            return
        message: Any = first
        while True:
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = message.get("bytes") or b""
            await self._handle(text)
            if self._closing:
                return
            try:
                message = await self.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return

    async def _handle(self, text: str | bytes) -> None:
        config = self.services.config
        if len(text) > config.max_frame_bytes:
            self.close(CLOSE_TOO_BIG, "frame too big")
            return
        try:
            frame = parse_client_frame(text, max_patch_bytes=config.max_patch_bytes)
        except LiveSettingsError as exc:
            self._error(exc)
            if self.claims is None:
                self.close(CLOSE_UNAUTHORIZED, "auth first")
            return
        if isinstance(frame, AuthFrame):
            await self._auth(frame)
            return
        if self.claims is None:
            self._error(Unauthorized("send an auth frame first"))
            self.close(CLOSE_UNAUTHORIZED, "auth first")
            return
        if isinstance(frame, PingFrame):
            self.send(PongFrame().to_json())
        elif isinstance(frame, SubscribeFrame):
            await self._subscribe(frame)
        elif isinstance(frame, UnsubscribeFrame):
            target = frame.user_id or self.claims.sub
            sub = self.subscriptions.pop(target, None)
            if sub is not None:
                self.services.hub.unsubscribe(sub)
        elif isinstance(frame, UpdateFrame):
            self._update(frame)

    def _error(self, exc: LiveSettingsError, mutation_id: str | None = None) -> None:
        self.services.metrics.errors.inc(code=exc.code)
        self.send(error_frame(exc, mutation_id))

    # -- frames ---------------------------------------------------------------------------
    async def _auth(self, frame: AuthFrame) -> None:
        try:
            claims = await self.services.authenticate(
                frame.token, address=self.address, via="websocket"
            )
        except LiveSettingsError as exc:
            self._error(exc)
            self.close(CLOSE_UNAUTHORIZED, "invalid token")
            return
        if self.claims is not None and claims.sub != self.claims.sub:
            self._error(Unauthorized("a socket stays with the user it signed in as"))
            self.close(CLOSE_UNAUTHORIZED, "user changed")
            return
        first = self.claims is None
        self.claims = claims
        if first:
            if frame.client_id:
                self.client_id = frame.client_id
            limit = self.services.config.max_connections_per_user
            if not claims.is_service and self.services.connections.count(claims.sub) >= limit:
                self._error(RateLimited(f"more than {limit} connections for this user"))
                self.close(CLOSE_RATE_LIMITED, "too many connections")
                return
            self._conn = self.services.connections.add(
                claims.sub, self._close_async, jti=claims.jti
            )
        elif self._conn is not None:
            self._conn.jti = claims.jti  # `token revoke --jti` now ends it with the new token
        self._arm_expiry(claims.exp)
        self.send(AuthOkFrame(claims.sub, claims.exp).to_json())

    def _arm_expiry(self, exp: int) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        delay = max(0.0, exp - time.time())
        self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        self._error(TokenExpired("token expired; send a fresh auth frame before it runs out"))
        self.close(CLOSE_UNAUTHORIZED, "token expired")

    def _target(self, user_id: str | None) -> str:
        assert self.claims is not None
        if user_id is None or user_id == self.claims.sub:
            return self.claims.sub
        if not self.claims.is_service:
            raise Forbidden("a user token can only reach its own settings")
        if len(user_id) > 128:
            raise Forbidden("user id too long")
        return user_id

    async def _subscribe(self, frame: SubscribeFrame) -> None:
        try:
            target = self._target(frame.user_id)
        except LiveSettingsError as exc:
            self._error(exc)
            return
        old = self.subscriptions.pop(target, None)
        if old is not None:
            self.services.hub.unsubscribe(old)
        sub = Subscriber(target, self.send, with_user_id=frame.user_id is not None)
        self.subscriptions[target] = sub
        try:
            await self.services.hub.subscribe(sub, frame.since)
        except LiveSettingsError as exc:
            self.subscriptions.pop(target, None)
            self._error(exc)

    def _limited(self, wait: float, mutation_id: str) -> bool:
        if wait <= 0:
            return False
        error = RateLimited(
            "too many writes; slow down", retry_after=wait, details={"retry_after": wait}
        )
        self._error(error, mutation_id)
        self._strike()
        return True

    def _update(self, frame: UpdateFrame) -> None:
        services = self.services
        limiter = services.write_limiter
        try:
            target = self._target(frame.user_id)
            # A user at the limit is refused before its patch is checked.
            if self._limited(limiter.wait_for(target), frame.mutation_id):
                return
            patch = validate_patch(frame.patch, services.config.limits, services.schema)
        except LiveSettingsError as exc:
            self._error(exc, frame.mutation_id)
            return
        if self._limited(limiter.take(target, rate_cost(patch)), frame.mutation_id):
            return
        now_ms = int(time.time() * 1000)
        mutation = Mutation(
            frame.mutation_id,
            self.client_id,
            frame.base_revision,
            patch,
            frame.edited_at if frame.edited_at is not None else now_ms,
        )
        pending = PendingMutation(target, mutation, body_hash("patch", patch))
        with_user = frame.user_id is not None

        def on_done(outcome: CommitOutcome) -> None:
            if outcome.error is not None:
                self._error(outcome.error, frame.mutation_id)
                return
            services.metrics.mutations.inc(outcome="repeated" if outcome.repeated else "committed")
            for conflict in outcome.conflict_payloads:
                services.metrics.conflicts.inc(kept=str(conflict.get("kept")))
            self.send(
                AckFrame(
                    frame.mutation_id,
                    outcome.revision,
                    list(outcome.conflict_payloads),
                    user_id=target if with_user else None,
                ).to_json()
            )

        try:
            services.writer.enqueue(pending, on_done)
        except LiveSettingsError as exc:
            self._error(exc, frame.mutation_id)

    def _strike(self) -> None:
        now = time.monotonic()
        self._strikes = [t for t in self._strikes if t > now - _STRIKE_WINDOW]
        self._strikes.append(now)
        if len(self._strikes) >= _STRIKES_BEFORE_CLOSE:
            self.close(CLOSE_RATE_LIMITED, "rate limited")
