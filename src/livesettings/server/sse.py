"""``GET /v1/settings/events``: the WebSocket's frames as Server-Sent Events.

``id:`` is the revision, so a browser's (or our client's) ``Last-Event-ID`` resumes exactly
where it stopped. The stream ends with an ``error`` event when the token expires — and, for a
team's document (``doc``), with a ``membership`` and a ``forbidden`` error event when its
user is removed from the team.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import StreamingResponse

from ..auth import Claims
from ..errors import Forbidden, TokenExpired
from ..protocol import MembershipFrame, error_frame
from .dependencies import draining
from .hub import Subscriber
from .services import Services

__all__ = ["event_stream", "sse_event"]

_KEEPALIVE_SECONDS = 15.0
_QUEUE_LIMIT = 10_000
_END = ""
_EVENTS_KEPT = 256
_EVENT_BYTES_KEPT = 16 * 1024

_events: dict[str, str] = {}
"""The events of the latest frames: a change pushed to many streams is one ``str`` shared by
all of them (the hub serialises it once), so it is turned into an event once. Frames are
what the streams send (masked); large ones are not kept."""


def sse_event(frame: str) -> str:
    """One SSE event for one frame (made once per frame text, for every stream)."""
    if len(frame) > _EVENT_BYTES_KEPT:
        return _make_event(frame)
    event = _events.get(frame)
    if event is None:
        if len(_events) >= _EVENTS_KEPT:
            _events.clear()
        event = _events[frame] = _make_event(frame)
    return event


def _make_event(frame: str) -> str:
    """One SSE event for one frame; change, snapshot and synced frames carry ``id:``."""
    kind = ""
    revision: int | None = None
    with contextlib.suppress(ValueError):
        parsed = json.loads(frame)
        kind = str(parsed.get("type", ""))
        if kind in ("change", "snapshot", "synced") and "user_id" not in parsed:
            # A team's stream follows one document: its revisions are the ids too.
            revision = int(parsed["revision"])
    head = f"id: {revision}\n" if revision is not None else ""
    return f"{head}event: {kind}\ndata: {frame}\n\n"


async def event_stream(
    request: Request,
    services: Services,
    claims: Claims,
    user_id: str,
    since: int | None,
    *,
    doc: str | None = None,
) -> StreamingResponse:
    """The stream of ``user_id``'s document (``doc``: a team's, followed by its member)."""
    if services.draining:
        raise draining()
    queue: asyncio.Queue[str] = asyncio.Queue()
    overflow = asyncio.Event()

    def send(frame: str) -> None:
        if queue.qsize() >= _QUEUE_LIMIT:
            overflow.set()  # a stalled reader: end the stream, it resumes with Last-Event-ID
            return
        queue.put_nowait(frame)

    async def close(code: int, reason: str) -> None:
        queue.put_nowait(_END)

    told: dict[str, str | None] = {}

    def on_membership(changed: str, role: str | None) -> None:
        if changed != doc or (changed in told and told[changed] == role):
            return  # another team, or told already (an event may arrive twice)
        told[changed] = role
        queue.put_nowait(MembershipFrame(changed, role).to_json())
        if role is None:
            services.hub.unsubscribe(sub)
            gone = Forbidden("you are no longer a member of this team")
            queue.put_nowait(error_frame(gone, doc=doc))
            queue.put_nowait(_END)

    if doc is not None:
        sub = Subscriber(user_id, send, doc=doc, actor=claims.sub)
    else:
        sub = Subscriber(user_id, send, with_user_id=user_id != claims.sub)
    conn = services.connections.add(
        claims.sub,
        close,
        jti=claims.jti,
        on_membership=on_membership if doc else None,
        team_docs=(lambda: [doc]) if doc else None,
        kind="sse",
    )
    try:
        await services.hub.subscribe(sub, since)
    except BaseException:
        services.connections.remove(conn)
        raise

    async def body() -> AsyncIterator[str]:
        try:
            yield "retry: 1000\n\n"
            while not overflow.is_set():
                remaining = claims.exp - services.clock.time()
                if remaining <= 0:
                    yield sse_event(error_frame(TokenExpired("token expired")))
                    return
                if queue.empty():  # wait (a task of its own): only when nothing is queued
                    try:
                        frame = await asyncio.wait_for(
                            queue.get(), timeout=min(_KEEPALIVE_SECONDS, remaining)
                        )
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield ": keepalive\n\n"
                        continue
                else:
                    frame = queue.get_nowait()
                # This frame and everything queued behind it, in one chunk.
                events: list[str] = []
                while frame != _END:
                    events.append(sse_event(frame))
                    if queue.empty():
                        break
                    frame = queue.get_nowait()
                if events:
                    yield "".join(events)
                if frame == _END:
                    return
        finally:
            services.hub.unsubscribe(sub)
            services.connections.remove(conn)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
