"""The blocking client: the async core running on a background thread.

:class:`Client` owns one event loop on a daemon thread and forwards each call to the
:class:`~.core.AsyncClient` running there, so plain threaded code (scripts, Flask or Django
views, notebooks) gets live settings without an event loop of its own. Nothing is implemented
twice: every method is a one-line hop onto the loop.

Callbacks (``subscribe``, ``on_status``, ``on_api_keys_update``, ``on_conflict``,
``on_error``, ``on_membership``) run on the client's thread: keep them short, and do not wait
there for a result (``handle.result()``, ``flush()``) — that would block the very loop that
produces it, so it raises ``RuntimeError`` instead.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from .core import AsyncClient
from .events import (
    ApiKeysCallback,
    ChangeCallback,
    ConflictCallback,
    ErrorCallback,
    MembershipCallback,
    StatusCallback,
)
from .handles import Subscription, UpdateHandle
from .state import Ack, Change
from .status import Status
from .teams import Member, Team, TeamRole
from .tokens import TokenSource

__all__ = ["Client", "SyncUpdateHandle"]

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever on a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="livesettings-client", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def on_loop(self) -> bool:
        return threading.current_thread() is self.thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def wait(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self.on_loop():
            coro.close()
            raise RuntimeError(
                "a livesettings Client call that waits cannot run inside one of its callbacks"
            )
        return self.submit(coro).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a non-blocking core method on the loop (directly when already there)."""
        if self.on_loop():
            return fn(*args)

        async def invoke() -> T:
            return fn(*args)

        return self.submit(invoke()).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.on_loop():
            self.thread.join()


class SyncUpdateHandle:
    """One submitted edit; :meth:`result` blocks until the server acknowledged it."""

    def __init__(self, handle: UpdateHandle) -> None:
        # Built on the loop thread: the asyncio future's outcome is copied into a thread-safe
        # one, so result() works from any thread, even after the client closed.
        self._handle = handle
        self._outcome: Future[Ack] = Future()
        self.mutation_id = handle.mutation_id
        self.queued = handle.queued
        handle.add_done_callback(self._settled)

    def _settled(self, handle: UpdateHandle) -> None:
        try:
            self._outcome.set_result(handle.result())
        except BaseException as exc:  # the server's error, or ConnectionClosed
            self._outcome.set_exception(exc)

    def done(self) -> bool:
        """Whether the edit is settled (acknowledged, refused, or the client closed)."""
        return self._outcome.done()

    def result(self, timeout: float | None = None) -> Ack:
        """The :class:`Ack`; raises the server's error, or ``TimeoutError`` after ``timeout``
        (the edit stays queued)."""
        return self._outcome.result(timeout)

    def __repr__(self) -> str:
        return repr(self._handle).replace("UpdateHandle", "SyncUpdateHandle")


class Client:
    """Live settings for code without an event loop — same API as :class:`AsyncClient`.

    Example::

        with Client("http://127.0.0.1:8000", token, cache_path="settings.db") as client:
            client.subscribe(lambda change: print("changed:", change.patch))
            client.update({"theme": "dark"}).result(timeout=5)
            print(client.get("/theme"))

    Takes the same arguments as :class:`AsyncClient`.
    """

    def __init__(self, url: str, token: TokenSource, **options: Any) -> None:
        self._core = AsyncClient(url, token, **options)
        self._runner: _LoopThread | None = None
        self._iterators: set[queue.Queue[Change | None]] = set()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background thread and connect (see :meth:`AsyncClient.start`)."""
        if self._runner is not None:
            return
        runner = _LoopThread()
        try:
            runner.wait(self._core.start())
        except BaseException:
            runner.stop()
            raise
        self._runner = runner

    def close(self) -> None:
        """Disconnect, end :meth:`changes` iterators and stop the thread (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            runner.wait(self._core.close())
        finally:
            for items in list(self._iterators):
                items.put(None)
            runner.stop()

    def __enter__(self) -> Client:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def _loop(self) -> _LoopThread:
        if self._runner is None:
            raise RuntimeError("the client is not started: call start() or use 'with'")
        return self._runner

    # -- reading (thread-safe reads of immutable snapshots: no hop needed) -----------------
    @property
    def client_id(self) -> str | None:
        """See :attr:`AsyncClient.client_id`."""
        return self._core.client_id

    @property
    def user_id(self) -> str | None:
        """See :attr:`AsyncClient.user_id`."""
        return self._core.user_id

    @property
    def revision(self) -> int | None:
        """See :attr:`AsyncClient.revision`."""
        return self._core.revision

    @property
    def status(self) -> Status:
        """See :attr:`AsyncClient.status`."""
        return self._core.status

    @property
    def doc(self) -> str | None:
        """See :attr:`AsyncClient.doc`."""
        return self._core.doc

    @property
    def role(self) -> TeamRole | None:
        """See :attr:`AsyncClient.role`."""
        return self._core.role

    def get(self, path: str | tuple[str, ...] | None = None, default: Any = None) -> Any:
        """See :meth:`AsyncClient.get`."""
        return self._core.get(path, default)

    # -- writing --------------------------------------------------------------------------
    def update(self, patch: dict[str, Any]) -> SyncUpdateHandle:
        """See :meth:`AsyncClient.update`; ``.result(timeout)`` waits for the ack."""
        return self._loop.call(lambda: SyncUpdateHandle(self._core.update(patch)))

    def set(self, path: str | tuple[str, ...], value: Any) -> SyncUpdateHandle:
        """See :meth:`AsyncClient.set`."""
        return self._loop.call(lambda: SyncUpdateHandle(self._core.set(path, value)))

    def flush(self, timeout: float | None = None) -> None:
        """See :meth:`AsyncClient.flush` (``TimeoutError`` after ``timeout``)."""
        self._loop.wait(self._core.flush(), timeout)

    # -- subscribing ----------------------------------------------------------------------
    def subscribe(self, callback: ChangeCallback) -> Subscription:
        """See :meth:`AsyncClient.subscribe`; ``callback`` runs on the client's thread."""
        return self._hop(self._loop.call(self._core.subscribe, callback))

    def on_status(self, callback: StatusCallback) -> Subscription:
        """See :meth:`AsyncClient.on_status`; ``callback`` runs on the client's thread."""
        return self._hop(self._loop.call(self._core.on_status, callback))

    def on_api_keys_update(self, callback: ApiKeysCallback) -> Subscription:
        """See :meth:`AsyncClient.on_api_keys_update`; ``callback`` runs on the client's
        thread."""
        return self._hop(self._loop.call(self._core.on_api_keys_update, callback))

    def on_conflict(self, callback: ConflictCallback) -> Subscription:
        """See :meth:`AsyncClient.on_conflict`; ``callback`` runs on the client's thread."""
        return self._hop(self._loop.call(self._core.on_conflict, callback))

    def on_error(self, callback: ErrorCallback) -> Subscription:
        """See :meth:`AsyncClient.on_error`; ``callback`` runs on the client's thread."""
        return self._hop(self._loop.call(self._core.on_error, callback))

    def on_membership(self, callback: MembershipCallback) -> Subscription:
        """See :meth:`AsyncClient.on_membership`; ``callback`` runs on the client's thread."""
        return self._hop(self._loop.call(self._core.on_membership, callback))

    def changes(self, timeout: float | None = None) -> Iterator[Change]:
        """``for change in client.changes():`` — every change from this call on (subscribed
        at once); blocks for each, ends when the client closes.

        Raises ``TimeoutError`` when no change arrives within ``timeout`` seconds.
        """
        items: queue.Queue[Change | None] = queue.Queue()
        subscription = self.subscribe(items.put)
        self._iterators.add(items)

        def stream() -> Iterator[Change]:
            try:
                while True:
                    try:
                        item = items.get(timeout=timeout)
                    except queue.Empty:
                        raise TimeoutError(f"no change within {timeout} s") from None
                    if item is None:
                        return
                    yield item
            finally:
                self._iterators.discard(items)
                subscription.unsubscribe()

        return stream()

    # -- the seed's service names ---------------------------------------------------------
    def subscribe_to_settings_changes(
        self, user_id: str | None, callback: ChangeCallback, *, doc: str | None = None
    ) -> Subscription:
        """See :meth:`AsyncClient.subscribe_to_settings_changes`."""
        core = self._core.subscribe_to_settings_changes(user_id, callback, doc=doc)
        return self._hop(self._loop.wait(core))

    def update_settings_realtime(
        self,
        user_id: str | None,
        settings: dict[str, Any],
        timeout: float | None = None,
        *,
        doc: str | None = None,
    ) -> Ack:
        """See :meth:`AsyncClient.update_settings_realtime` (blocks for the ack)."""
        core = self._core.update_settings_realtime(user_id, settings, doc=doc)
        return self._loop.wait(core, timeout)

    def get_latest_settings(
        self, user_id: str | None = None, *, doc: str | None = None
    ) -> dict[str, Any]:
        """See :meth:`AsyncClient.get_latest_settings`."""
        return self._loop.wait(self._core.get_latest_settings(user_id, doc=doc))

    # -- teams (as the token's user) -------------------------------------------------------
    def teams(self) -> list[Team]:
        """See :meth:`AsyncClient.teams`."""
        return self._loop.wait(self._core.teams())

    def create_team(self, name: str) -> Team:
        """See :meth:`AsyncClient.create_team`."""
        return self._loop.wait(self._core.create_team(name))

    def delete_team(self, team_id: str) -> None:
        """See :meth:`AsyncClient.delete_team`."""
        self._loop.wait(self._core.delete_team(team_id))

    def members(self, team_id: str) -> list[Member]:
        """See :meth:`AsyncClient.members`."""
        return self._loop.wait(self._core.members(team_id))

    def set_member(
        self,
        team_id: str,
        role: TeamRole,
        *,
        user_id: str | None = None,
        username: str | None = None,
    ) -> list[Member]:
        """See :meth:`AsyncClient.set_member`."""
        core = self._core.set_member(team_id, role, user_id=user_id, username=username)
        return self._loop.wait(core)

    def remove_member(self, team_id: str, user_id: str) -> None:
        """See :meth:`AsyncClient.remove_member`."""
        self._loop.wait(self._core.remove_member(team_id, user_id))

    def leave_team(self, team_id: str) -> None:
        """See :meth:`AsyncClient.leave_team`."""
        self._loop.wait(self._core.leave_team(team_id))

    def effective_settings(self, team_id: str) -> dict[str, Any]:
        """See :meth:`AsyncClient.effective_settings`."""
        return self._loop.wait(self._core.effective_settings(team_id))

    # -- the account (as the token's user) -------------------------------------------------
    def delete_account(self, password: str | None = None) -> None:
        """See :meth:`AsyncClient.delete_account` (the client is closed after it)."""
        self._loop.wait(self._core.delete_account(password))
        self.close()

    def export_account(self) -> dict[str, Any]:
        """See :meth:`AsyncClient.export_account`."""
        return self._loop.wait(self._core.export_account())

    def _hop(self, subscription: Subscription) -> Subscription:
        """A subscription whose ``unsubscribe()`` may be called from any thread."""
        loop = self._loop.loop
        return Subscription(lambda: _call_soon(loop, subscription.unsubscribe))


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    if not loop.is_closed():
        loop.call_soon_threadsafe(fn)
