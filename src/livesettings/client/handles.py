"""What the clients hand back: an edit's handle and a subscription's off switch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any

from .state import Ack

__all__ = ["Subscription", "UpdateHandle", "consume_error"]


class Subscription:
    """What ``subscribe()`` returns: call :meth:`unsubscribe` (or leave its ``with`` block)."""

    __slots__ = ("_cancel",)

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._cancel: Callable[[], None] | None = cancel

    @property
    def active(self) -> bool:
        """Whether the callback is still subscribed."""
        return self._cancel is not None

    def unsubscribe(self) -> None:
        """Stop the callbacks (idempotent)."""
        cancel, self._cancel = self._cancel, None
        if cancel is not None:
            cancel()

    __call__ = unsubscribe

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.unsubscribe()


class UpdateHandle:
    """One submitted edit. ``await handle`` returns its :class:`Ack` or raises the server's error.

    ``queued`` is True when the edit was made while disconnected: it will be sent on reconnect.
    Awaiting never cancels the edit (a timeout around ``await`` leaves it queued).
    """

    __slots__ = ("_future", "mutation_id", "queued", "user_id")

    def __init__(
        self, mutation_id: str, future: asyncio.Future[Ack], *, queued: bool, user_id: str | None
    ) -> None:
        self.mutation_id = mutation_id
        self.queued = queued
        self.user_id = user_id
        self._future = future

    def __await__(self) -> Generator[Any, None, Ack]:
        return asyncio.shield(self._future).__await__()

    def done(self) -> bool:
        """Whether the server acknowledged or refused the edit (or the client closed)."""
        return self._future.done()

    def result(self) -> Ack:
        """The ack; raises the error, or ``InvalidStateError`` when not done yet."""
        return self._future.result()

    def add_done_callback(self, callback: Callable[[UpdateHandle], object]) -> None:
        """Call ``callback(handle)`` on the loop once the edit is settled."""
        self._future.add_done_callback(lambda _: callback(self))

    def __repr__(self) -> str:
        state = "done" if self.done() else "queued" if self.queued else "sent"
        return f"<UpdateHandle {self.mutation_id} {state}>"


def consume_error(future: asyncio.Future[Ack]) -> None:
    """Mark an edit's error as retrieved (a done callback on every edit's future).

    An edit nobody awaits may still fail: its error reaches the ``on_error`` listeners and
    ``Status.error_count``, so asyncio need not also log "exception was never retrieved".
    """
    if not future.cancelled():
        future.exception()
