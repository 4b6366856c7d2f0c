"""Parity with the browser client: masked API keys, typed conflicts, refused edits.

Against a real server process: API-key listeners only ever see masked keys, conflicts reach
both writers as :class:`EditConflict` objects, and an edit the server refuses is dropped,
counted and told — with the field it names — without putting the client in error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from livesettings.client import (
    Client,
    ConnectionState,
    EditConflict,
    ErrorEvent,
    Status,
)
from livesettings.errors import TooLarge, ValidationError
from tests.client.helpers import (
    MakeClient,
    Proxy,
    eventually,
    fast_delays,
    new_user,
    server_settings,
    token_for,
)
from tests.support.server import ServerProcess

MakeProxy = Callable[[ServerProcess], Awaitable[Proxy]]

SCHEMA = {
    "type": "object",
    "properties": {"page_size": {"type": "integer", "minimum": 10, "maximum": 100}},
}


@pytest.fixture(scope="module")
def schema_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with an operator's preferences schema: values only it can refuse."""
    root = tmp_path_factory.mktemp("schema-server")
    schema_file = root / "preferences.schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    proc = ServerProcess(root / "data", preferences_schema=str(schema_file))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


# --- API keys ----------------------------------------------------------------------------------


async def test_api_keys_listeners_get_the_masked_keys_on_each_change_and_only_then(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    user = new_user()
    secret = "sk-live-0123456789abcdef"
    a = await make_client(live_server.url, token_for(user))
    b = await make_client(live_server.url, token_for(user))
    seen_a: list[dict[str, Any]] = []
    seen_b: list[dict[str, Any]] = []
    a.on_api_keys_update(seen_a.append)
    subscription = b.on_api_keys_update(seen_b.append)

    await a.update({"api_keys": {"openai": secret}})
    await eventually(lambda: len(seen_b) == 1)
    # The writer hears its own edit at once (masked locally), and maybe again as confirmed.
    for keys in (seen_a[0], seen_b[0]):
        assert keys["openai"]["set"] is True
        assert keys["openai"]["last4"] == "cdef"
    assert set(seen_b[0]) == {"openai"}

    # Another field's change is no API-keys event.
    await a.update({"theme": "dark"})
    await eventually(lambda: b.get("/theme") == "dark")
    assert len(seen_b) == 1

    # Removing the key is one more event, from the server too.
    await a.update({"api_keys": {"openai": None}})
    await eventually(lambda: len(seen_b) == 2)
    assert seen_b[1] == {}
    assert seen_a[-1] == {}

    # No plaintext anywhere in what the listeners received.
    received = json.dumps([seen_a, seen_b])
    assert secret not in received
    assert secret[:-4] not in received

    # After unsubscribing, nothing more arrives.
    subscription.unsubscribe()
    await a.update({"api_keys": {"mistral": "mk-9876543210zyxw"}})
    await eventually(lambda: b.get("/api_keys/mistral/last4") == "zyxw")
    assert len(seen_b) == 2


# --- conflicts ---------------------------------------------------------------------------------


async def test_conflicts_reach_both_writers_as_edit_conflicts(
    live_server: ServerProcess, make_client: MakeClient, make_proxy: MakeProxy
) -> None:
    user = new_user()
    proxy = await make_proxy(live_server)
    late = await make_client(proxy.url, token_for(user))
    early = await make_client(live_server.url, token_for(user))
    told_late: list[EditConflict] = []
    told_early: list[EditConflict] = []
    late.on_conflict(told_late.append)
    early.on_conflict(told_early.append)

    # A later offline edit of the same field wins over an earlier online one.
    proxy.cut()
    await eventually(lambda: late.status.connection is not ConnectionState.ONLINE)
    assert (await early.update({"theme": "dark", "language": "de"})).revision == 1
    await asyncio.sleep(0.01)  # the offline edit is made later, on an older base
    winning = late.update({"theme": "system"})
    proxy.restore()
    assert (await winning).revision == 2
    await eventually(lambda: early.revision == 2 and told_early)

    assert told_late == [
        EditConflict("/theme", "system", "system", False, "yours", 2, winning.mutation_id)
    ]
    assert told_early == [
        EditConflict("/theme", "dark", "system", True, "theirs", 2, winning.mutation_id)
    ]
    assert all(isinstance(c, EditConflict) for c in told_late + told_early)
    with pytest.raises(dataclasses.FrozenInstanceError):
        told_early[0].lost = False  # type: ignore[misc]

    # An offline edit older than a concurrent one loses: its writer is told, nothing applies.
    proxy.cut()
    await eventually(lambda: late.status.connection is not ConnectionState.ONLINE)
    stale = late.update({"language": "fr"})
    await asyncio.sleep(0.01)
    assert (await early.update({"language": "it"})).revision == 3
    proxy.restore()
    assert (await stale).revision == 3
    assert told_late[1:] == [
        EditConflict("/language", "fr", "it", True, "theirs", 3, stale.mutation_id)
    ]
    assert len(told_early) == 1  # the winner's edit met no concurrent one when it committed
    await eventually(lambda: late.revision == 3)
    assert late.get("/language") == "it"


async def test_two_online_clients_editing_one_field_at_once_tell_the_loser(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    user = new_user()
    a = await make_client(live_server.url, token_for(user))
    b = await make_client(live_server.url, token_for(user))
    told: dict[str, list[EditConflict]] = {"a": [], "b": []}
    a.on_conflict(told["a"].append)
    b.on_conflict(told["b"].append)

    # Both edits are based on revision 0; which one commits first is up to the network.
    handles = [a.update({"language": "fr"}), b.update({"language": "es"})]
    await asyncio.gather(*handles)
    await eventually(lambda: a.revision == b.revision and a.revision is not None)
    final = server_settings(live_server, user)["settings"]["language"]
    await eventually(lambda: a.get("/language") == b.get("/language") == final)

    lost = [(name, c) for name, items in told.items() for c in items if c.lost]
    assert len(lost) == 1, told
    loser, conflict = lost[0]
    assert conflict.path == "/language"
    assert conflict.mine == {"a": "fr", "b": "es"}[loser]
    assert conflict.winner == final != conflict.mine
    assert conflict.kept == "theirs"
    won = [c for items in told.values() for c in items if not c.lost]
    assert all((c.kept, c.mine, c.winner) == ("yours", final, final) for c in won)


async def test_two_clients_writing_the_same_value_at_once_are_told_nothing(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    user = new_user()
    a = await make_client(live_server.url, token_for(user))
    b = await make_client(live_server.url, token_for(user))
    told: list[EditConflict] = []
    a.on_conflict(told.append)
    b.on_conflict(told.append)

    # The server reports a conflict (DESIGN §3), but neither side lost a value: not told.
    acks = await asyncio.gather(a.update({"theme": "dark"}), b.update({"theme": "dark"}))
    assert any(ack.conflicts for ack in acks), "both edits share base 0: one met the other"
    await a.update({"language": "pt"})  # a later change reaches both, after any conflict
    await eventually(lambda: a.get("/language") == b.get("/language") == "pt")
    assert told == []


# --- refused edits -----------------------------------------------------------------------------


async def test_a_refused_edit_is_counted_and_told_without_putting_the_client_in_error(
    schema_server: ServerProcess, make_client: MakeClient
) -> None:
    user = new_user()
    client = await make_client(schema_server.url, token_for(user))
    errors: list[ErrorEvent] = []
    statuses: list[Status] = []
    client.on_error(errors.append)
    client.on_status(statuses.append)
    before = client.status.error_count

    # The client cannot know the operator's schema: only the server refuses this value.
    valid = client.update({"theme": "dark"})
    refused = client.set("/preferences/page_size", 500)
    assert client.get("/preferences/page_size") == 500  # shown at once, as any edit
    with pytest.raises(ValidationError) as raised:
        await refused
    assert (await valid).revision == 1

    assert client.get("/preferences/page_size") is None  # dropped, not left pending
    assert len(errors) == 1
    event = errors[0]
    assert (event.path, event.mutation_id, event.error) == (
        "/preferences/page_size",
        refused.mutation_id,
        raised.value,
    )
    assert event.code == raised.value.code
    assert "maximum" in event.message
    await eventually(lambda: client.status.unsaved == 0)
    status = client.status
    assert status.error_count == before + 1
    assert status.error is None
    assert status.connection is ConnectionState.ONLINE
    assert all(s.error is None for s in statuses)

    # Later edits still save.
    assert (await client.set("/preferences/page_size", 50)).revision == 2
    assert server_settings(schema_server, user)["settings"]["preferences"] == {"page_size": 50}
    assert client.status.error_count == before + 1
    assert len(errors) == 1


async def test_a_refused_edit_about_the_whole_document_names_no_field(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    user = new_user()
    client = await make_client(live_server.url, token_for(user))
    errors: list[ErrorEvent] = []
    client.on_error(errors.append)
    # Each patch is under the 64 KiB limit, so only the server sees the document grow too big.
    for i in range(4):
        await client.set(f"/preferences/k{i}", "x" * 60_000)
    too_big = client.set("/preferences/k4", "x" * 60_000)
    with pytest.raises(TooLarge):
        await too_big
    assert [(e.code, e.path, e.mutation_id) for e in errors] == [
        ("too_large", None, too_big.mutation_id)
    ]
    assert client.status.error is None
    assert (await client.update({"theme": "light"})).revision == 5


# --- the blocking client -----------------------------------------------------------------------


def test_the_sync_client_tells_api_keys_conflicts_and_errors_on_its_thread(
    schema_server: ServerProcess,
) -> None:
    user = new_user()
    options: dict[str, Any] = {"reconnect_delays": fast_delays, "connect_timeout": 5.0}
    keys: queue.Queue[dict[str, Any]] = queue.Queue()
    conflicts: queue.Queue[EditConflict] = queue.Queue()
    errors: queue.Queue[ErrorEvent] = queue.Queue()
    threads: set[str] = set()

    def on_conflict(conflict: EditConflict) -> None:
        threads.add(threading.current_thread().name)
        conflicts.put(conflict)

    with (
        ProxyThread(schema_server) as proxy,
        Client(schema_server.url, token_for(user), **options) as a,
        Client(proxy.url, token_for(user), **options) as b,
    ):
        a.on_api_keys_update(keys.put)
        a.on_error(errors.put)
        a.on_conflict(on_conflict)

        b.update({"api_keys": {"openai": "sk-sync-abcdefgh1234"}}).result(timeout=10)
        masked = keys.get(timeout=10)
        assert (masked["openai"]["set"], masked["openai"]["last4"]) == (True, "1234")
        assert "abcdefgh" not in json.dumps(masked)

        with pytest.raises(ValidationError) as raised:
            a.set("/preferences/page_size", 5).result(timeout=10)
        event = errors.get(timeout=10)
        assert (event.path, event.error) == ("/preferences/page_size", raised.value)
        assert a.status.error is None

        # b edits offline, later than a: b's value wins and a is told it lost its own.
        proxy.cut()
        wait_for(lambda: b.status.connection is not ConnectionState.ONLINE)
        mine = a.update({"theme": "dark"}).result(timeout=10)
        time.sleep(0.01)  # b's edit is made later, on an older base
        winning = b.update({"theme": "light"})
        proxy.restore()
        assert winning.result(timeout=10).revision == mine.revision + 1
        told = conflicts.get(timeout=10)
        assert told == EditConflict(
            "/theme", "dark", "light", True, "theirs", mine.revision + 1, winning.mutation_id
        )
        assert threads == {"livesettings-client"}
        wait_for(lambda: a.get("/theme") == "light")


def wait_for(predicate: Callable[[], object], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


class ProxyThread:
    """A :class:`Proxy` on an event loop of its own thread, for tests without a loop."""

    def __init__(self, server: ServerProcess) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._proxy = Proxy(server.port)

    @property
    def url(self) -> str:
        return self._proxy.url

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._proxy.cut)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(self._proxy.restore)

    def __enter__(self) -> ProxyThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._proxy.start(), self._loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._proxy.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
