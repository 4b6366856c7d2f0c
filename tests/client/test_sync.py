"""The blocking Client from plain threaded code: no event loop of the caller's."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from livesettings.client import Change, ChangeOrigin, Client, ConnectionState, Status
from livesettings.errors import ConnectionClosed, ValidationError
from tests.client.helpers import fast_delays, new_user, server_settings, token_for
from tests.support.server import ServerProcess


def test_the_sync_client_works_from_plain_threads(live_server: ServerProcess) -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # this test has no event loop
    user = new_user()
    options = {"reconnect_delays": fast_delays, "connect_timeout": 5.0}
    with (
        Client(live_server.url, token_for(user), **options) as a,
        Client(live_server.url, token_for(user), **options) as b,
    ):
        assert a.status.connection is ConnectionState.ONLINE
        called_on: set[str] = set()
        seen_by_b: list[Change] = []
        statuses: list[Status] = []

        def on_change(change: Change) -> None:
            called_on.add(threading.current_thread().name)
            seen_by_b.append(change)

        b.subscribe(on_change)
        a.on_status(statuses.append)
        stream = b.changes(timeout=10)  # subscribed from here on

        def write(n: int) -> int:
            return a.update({"preferences": {f"k{n}": n}}).result(timeout=10).revision

        with ThreadPoolExecutor(max_workers=3) as pool:
            revisions = sorted(pool.map(write, range(3)))
        assert revisions == [1, 2, 3]

        streamed = [next(stream) for _ in range(3)]
        assert [c.revision for c in streamed] == [1, 2, 3]
        remote = [c for c in seen_by_b if c.origin is ChangeOrigin.REMOTE]
        assert [c.revision for c in remote] == [1, 2, 3]
        assert [c.mutation_id for c in remote] == [c.mutation_id for c in streamed]
        assert called_on == {"livesettings-client"}

        ack = b.set("/theme", "dark").result(timeout=10)
        assert ack.revision == 4
        a.flush(timeout=10)
        b.flush(timeout=10)
        expected = {"k0": 0, "k1": 1, "k2": 2}
        assert a.get("/preferences") == expected
        assert b.get("/theme") == "dark"
        assert b.get_latest_settings() == server_settings(live_server, user)["settings"]
        assert a.status.unsaved == 0
        assert statuses[-1].unsaved == 0

        with pytest.raises(ValidationError):
            a.update({"theme": 3})

        # A callback that waits on the client would block its own loop: refused, not hung.
        errors: list[BaseException] = []

        def waits(change: Change) -> None:
            try:
                a.flush(timeout=1)
            except RuntimeError as exc:
                errors.append(exc)

        subscription = a.subscribe(waits)
        b.update({"language": "nl"}).result(timeout=10)
        a.flush(timeout=10)
        deadline = threading.Event()
        deadline.wait(0.2)
        subscription.unsubscribe()
        assert len(errors) == 1 and "callbacks" in str(errors[0])

    rest = list(stream)  # returns: the stream ended when b closed
    assert [(c.origin, c.patch) for c in rest] == [
        (ChangeOrigin.LOCAL, {"theme": "dark"}),
        (ChangeOrigin.LOCAL, {"language": "nl"}),
    ]
    with pytest.raises(RuntimeError, match="not started"):
        a.update({"theme": "light"})


def test_a_sync_handle_reports_a_closed_client(live_server: ServerProcess) -> None:
    client = Client("http://127.0.0.1:9", token_for(new_user()), reconnect_delays=fast_delays)
    client.start()
    try:
        # The first attempt failed; with fast delays the next one may already be under way.
        assert client.status.connection in (ConnectionState.OFFLINE, ConnectionState.CONNECTING)
        handle = client.update({"theme": "dark"})
        assert handle.queued and not handle.done()
        with pytest.raises(TimeoutError):
            handle.result(timeout=0.1)
        assert client.get("/theme") == "dark"
    finally:
        client.close()
    assert handle.done()
    with pytest.raises(ConnectionClosed):
        handle.result(timeout=1)
