"""One WebSocket connection of the async client, and how its failures are classified."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from livesettings.errors import ConnectionClosed, LiveSettingsError, error_from_payload

__all__ = ["Lifecycle", "Refused", "Session", "as_error", "cancel_and_wait", "refusal", "ws_url"]

log = logging.getLogger("livesettings.client")


class Lifecycle(enum.Enum):
    """Where a client stands: made, started, or closed (for good)."""

    NEW = "new"
    STARTED = "started"
    CLOSED = "closed"


class Session:
    """One live connection: frames go out in order through one queue and one sender task."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.outbound: asyncio.Queue[str] = asyncio.Queue()
        self.authed = False
        self.waiting: list[str] = []  # keys of documents whose catch-up is under way
        self.last_error: LiveSettingsError | None = None

    def send(self, text: str) -> None:
        """Queue a frame; the sender task writes frames in the order they were queued."""
        self.outbound.put_nowait(text)

    async def sender(self) -> None:
        """Write queued frames until cancelled or the connection fails."""
        while True:
            text = await self.outbound.get()
            await self.ws.send(text)


class Refused(Exception):
    """The server refused this connection (auth, origin): not a network failure."""

    def __init__(self, error: LiveSettingsError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def ws_url(url: str) -> str:
    """The ``/v1/realtime`` URL of a server's base URL (``http`` → ``ws``, ``https`` → ``wss``)."""
    base = url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + "/v1/realtime"


def refusal(exc: InvalidStatus) -> Refused:
    """A handshake the server refused (403 Origin, 429 connect rate, 503 draining)."""
    status = exc.response.status_code
    try:
        body = json.loads(bytes(exc.response.body or b"").decode("utf-8"))
    except ValueError:
        body = None
    retry = exc.response.headers.get("Retry-After")
    return Refused(
        error_from_payload(body, status), float(retry) if retry and retry.isdigit() else None
    )


def as_error(exc: BaseException) -> LiveSettingsError:
    """A failed connection attempt as an error of the tree, for ``Status.error``."""
    if isinstance(exc, LiveSettingsError):
        return exc
    if isinstance(exc, InvalidStatus):
        return refusal(exc).error
    return ConnectionClosed(f"cannot reach the server: {exc or type(exc).__name__}")


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel tasks and wait for them to end.

    ``asyncio.wait`` rather than ``await task`` under ``suppress(CancelledError)``: that would
    also swallow a cancellation of the *calling* task, which then carries on as if nothing
    had happened.
    """
    pending = {task for task in tasks if task is not None}
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled() and task.exception() is not None:
            log.debug("a task ended with an error while closing", exc_info=task.exception())
