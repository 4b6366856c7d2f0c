"""The async client against a real server process: sync, offline queue, reconnects, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from livesettings.client import Change, ChangeOrigin, ConnectionState, OfflineCache, Status
from livesettings.errors import (
    Forbidden,
    LiveSettingsError,
    OfflineSecret,
    TokenExpired,
    TooLarge,
    ValidationError,
)
from tests.client.helpers import (
    ISSUER,
    MakeClient,
    Proxy,
    eventually,
    new_user,
    server_changes,
    server_settings,
    token_for,
)
from tests.support.server import ServerProcess

MakeProxy = Callable[[ServerProcess], Awaitable[Proxy]]


def remote(changes: list[Change]) -> list[tuple[int | None, str | None, dict[str, Any]]]:
    return [
        (c.revision, c.mutation_id, c.patch) for c in changes if c.origin is ChangeOrigin.REMOTE
    ]


# --- two clients of one user -------------------------------------------------------------------


async def test_two_clients_see_each_others_updates_once_in_order(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    user = new_user()
    a = await make_client(live_server.url, token_for(user))
    b = await make_client(live_server.url, token_for(user))
    assert a.status.connection is ConnectionState.ONLINE
    assert a.client_id != b.client_id
    seen_a: list[Change] = []
    seen_b: list[Change] = []
    a.subscribe(seen_a.append)
    b.subscribe(seen_b.append)

    handles = []
    for i in range(3):  # interleaved: a0 b0 a1 b1 a2 b2
        handles.append(a.update({"preferences": {"a": i}}))
        handles.append(b.set("/preferences/b", i))
    acks = [await h for h in handles]
    revision_of = {ack.mutation_id: ack.revision for ack in acks}
    assert sorted(revision_of.values()) == [1, 2, 3, 4, 5, 6]
    await eventually(lambda: a.revision == 6 and b.revision == 6)

    a_ids = [h.mutation_id for h in handles[0::2]]
    b_ids = [h.mutation_id for h in handles[1::2]]
    assert remote(seen_a) == [
        (revision_of[m], m, {"preferences": {"b": i}}) for i, m in enumerate(b_ids)
    ]
    assert remote(seen_b) == [
        (revision_of[m], m, {"preferences": {"a": i}}) for i, m in enumerate(a_ids)
    ]
    # Own edits were shown at once (LOCAL) and never echoed back.
    assert [c.mutation_id for c in seen_a if c.origin is ChangeOrigin.LOCAL] == a_ids
    assert {c.origin for c in seen_a} == {ChangeOrigin.LOCAL, ChangeOrigin.REMOTE}
    expected = {"preferences": {"a": 2, "b": 2}}
    assert a.get("/preferences") == b.get("/preferences") == expected["preferences"]
    assert server_settings(live_server, user)["settings"] == a.get()
    assert a.status.unsaved == 0
    assert a.status.last_sync_at is not None
    assert a.status.syncs_per_minute == 4  # one catch-up and three acks


async def test_changes_async_iterator_and_status_events(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    user = new_user()
    a = await make_client(live_server.url, token_for(user))
    b = await make_client(live_server.url, token_for(user))
    statuses: list[Status] = []
    a.on_status(statuses.append)

    stream = b.changes()  # subscribed from here on

    async def collect() -> list[Change]:
        got = []
        async for change in stream:
            got.append(change)
            if len(got) == 2:
                break
        return got

    reader = asyncio.create_task(collect())
    first = await a.update({"theme": "dark"})
    second = await a.update({"language": "fr-CA"})
    got = await asyncio.wait_for(reader, 5)
    assert [(c.revision, c.patch) for c in got] == [
        (1, {"theme": "dark"}),
        (2, {"language": "fr-CA"}),
    ]
    assert [c.mutation_id for c in got] == [first.mutation_id, second.mutation_id]
    assert [c.client_id for c in got] == [a.client_id, a.client_id]
    # Each edit: unsaved 1 and syncing while in flight, then back to 0.
    assert [(s.unsaved, s.syncing) for s in statuses] == [(1, True), (0, False)] * 2
    assert all(s.connection is ConnectionState.ONLINE for s in statuses)

    leftover = b.changes()
    await b.close()
    assert [c async for c in leftover] == []  # streams end when their client closes


# --- the server stopped and restarted ---------------------------------------------------------


async def test_updates_queued_while_the_server_is_stopped_apply_once_after_restart(
    server: ServerProcess, make_client: MakeClient, cache_path: str
) -> None:
    user = new_user()
    a = await make_client(server.url, token_for(user), cache_path=cache_path)
    b = await make_client(server.url, token_for(user))
    first = await a.update({"theme": "dark"})
    await eventually(lambda: b.revision == 1)
    seen_b: list[Change] = []
    b.subscribe(seen_b.append)

    server.stop()
    await eventually(lambda: a.status.connection is not ConnectionState.ONLINE)
    await eventually(lambda: b.status.connection is not ConnectionState.ONLINE)
    queued = [
        a.update({"language": "fr"}),
        a.update({"preferences": {"volume": 3}}),
        a.set("/preferences/volume", 4),
    ]
    assert all(h.queued for h in queued)
    assert a.status.unsaved == 3
    assert a.get("/preferences/volume") == 4  # shown at once
    with pytest.raises(OfflineSecret) as refused:
        a.update({"api_keys": {"openai": "sk-offline-0123456789"}})
    assert refused.value.code == "offline_secret"
    assert a.status.unsaved == 3

    server.restart()
    acks = [await asyncio.wait_for(h, 15) for h in queued]
    assert [ack.revision for ack in acks] == [2, 3, 4]
    await eventually(lambda: b.revision == 4)
    assert remote(seen_b) == [
        (2, queued[0].mutation_id, {"language": "fr"}),
        (3, queued[1].mutation_id, {"preferences": {"volume": 3}}),
        (4, queued[2].mutation_id, {"preferences": {"volume": 4}}),
    ]
    log = server_changes(server, user)
    assert [c["mutation_id"] for c in log] == [
        first.mutation_id,
        *(h.mutation_id for h in queued),
    ]
    assert server_settings(server, user)["settings"] == a.get() == b.get()
    await eventually(lambda: a.status.connection is ConnectionState.ONLINE)
    assert a.status.unsaved == 0
    assert a.status.error is None
    assert a.status.error_count >= 1  # the lost connection was reported


# --- missed changes: catch-up, or one reset --------------------------------------------------


async def _miss_ten_changes(
    server: ServerProcess, make_client: MakeClient, make_proxy: MakeProxy
) -> tuple[list[Change], list[str], Any]:
    user = new_user()
    proxy = await make_proxy(server)
    writer = await make_client(server.url, token_for(user))
    await writer.update({"theme": "dark"})
    reader = await make_client(proxy.url, token_for(user))
    assert reader.revision == 1
    seen: list[Change] = []
    reader.subscribe(seen.append)

    proxy.cut()
    await eventually(lambda: reader.status.connection is not ConnectionState.ONLINE)
    ids = [(await writer.set("/preferences/n", n)).mutation_id for n in range(10)]
    assert writer.revision == 11 or await eventually(lambda: writer.revision == 11)
    proxy.restore()
    await eventually(lambda: reader.revision == 11)
    await eventually(lambda: reader.status.connection is ConnectionState.ONLINE)
    assert reader.get() == writer.get()
    return seen, ids, reader


async def test_a_client_that_missed_ten_changes_receives_all_ten_in_order(
    live_server: ServerProcess, make_client: MakeClient, make_proxy: MakeProxy
) -> None:
    seen, ids, _ = await _miss_ten_changes(live_server, make_client, make_proxy)
    assert remote(seen) == [(2 + n, ids[n], {"preferences": {"n": n}}) for n in range(10)]
    assert not any(c.reset for c in seen)


async def test_when_the_log_no_longer_has_them_the_client_gets_one_reset(
    tmp_path: Path, make_client: MakeClient, make_proxy: MakeProxy
) -> None:
    server = ServerProcess(tmp_path / "data", changelog_retain=5)
    server.start()
    try:
        seen, _, reader = await _miss_ten_changes(server, make_client, make_proxy)
    finally:
        server.stop()
    assert [(c.origin, c.revision) for c in seen] == [(ChangeOrigin.SNAPSHOT, 11)]
    assert seen[0].reset
    assert seen[0].patch == {"preferences": {"n": 9}}
    assert seen[0].settings == reader.get()


async def test_a_restarted_client_resumes_from_its_cache(
    live_server: ServerProcess, make_client: MakeClient, cache_path: str
) -> None:
    user = new_user()
    writer = await make_client(live_server.url, token_for(user))
    first = await make_client(live_server.url, token_for(user), cache_path=cache_path)
    await writer.update({"language": "de"})
    await eventually(lambda: first.revision == 1)
    client_id = first.client_id
    await first.close()
    for n in range(3):
        await writer.set("/preferences/n", n)

    second = await make_client(live_server.url, token_for(user), cache_path=cache_path, start=False)
    seen: list[Change] = []
    second.subscribe(seen.append)
    await second.start()
    assert second.client_id == client_id
    assert [(c.origin, c.revision) for c in seen] == [(ChangeOrigin.REMOTE, r) for r in (2, 3, 4)]
    assert second.get() == writer.get()


async def test_the_cache_serves_offline_reads_and_survives_corruption(
    live_server: ServerProcess,
    make_client: MakeClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = new_user()
    path = tmp_path / "cache.db"
    online = await make_client(live_server.url, token_for(user), cache_path=str(path))
    await online.update({"theme": "system"})
    await eventually(lambda: online.revision == 1)
    await online.close()

    unreachable = "http://127.0.0.1:9"  # nothing listens on the discard port
    offline = await make_client(unreachable, token_for(user), cache_path=str(path))
    assert offline.status.connection is ConnectionState.OFFLINE
    assert offline.revision == 1
    assert offline.get("/theme") == "system"
    await offline.close()

    path.write_bytes(b"\x00garbage" * 512)
    revived = await make_client(live_server.url, token_for(user), cache_path=str(path))
    assert "moved it to" in caplog.text
    assert revived.status.connection is ConnectionState.ONLINE
    assert revived.get("/theme") == "system"


# --- secrets ---------------------------------------------------------------------------------


async def test_secrets_are_sent_online_shown_masked_and_never_cached(
    live_server: ServerProcess, make_client: MakeClient, cache_path: str
) -> None:
    user = new_user()
    secret = "sk-live-0123456789abcdef"
    client = await make_client(live_server.url, token_for(user), cache_path=cache_path)
    handle = client.update({"api_keys": {"openai": secret}, "theme": "dark"})
    assert client.get("/api_keys/openai/last4") == "cdef"
    ack = await handle
    assert ack.revision == 1
    await eventually(lambda: client.revision == 1)
    shown = client.get("/api_keys/openai")
    assert (shown["set"], shown["last4"]) == (True, "cdef")
    await client.close()
    for file in Path(cache_path).parent.iterdir():
        assert secret.encode() not in file.read_bytes(), file


# --- errors ----------------------------------------------------------------------------------


async def test_bad_input_raises_at_once_and_is_never_queued(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    client = await make_client(live_server.url, token_for(new_user()))
    with pytest.raises(ValidationError) as error:
        client.update({"theme": "purple"})
    assert (error.value.code, error.value.path) == ("invalid_value", "/theme")
    with pytest.raises(ValidationError) as error:
        client.update({"colour": "red"})
    assert error.value.code == "unknown_field"
    assert isinstance(error.value, LiveSettingsError)
    assert client.status.unsaved == 0


async def test_a_queued_mutation_the_server_rejects_fails_its_handle_and_leaves_the_queue(
    live_server: ServerProcess, make_client: MakeClient, make_proxy: MakeProxy, cache_path: str
) -> None:
    user = new_user()
    proxy = await make_proxy(live_server)
    client = await make_client(proxy.url, token_for(user), cache_path=cache_path)
    seen: list[Change] = []
    client.subscribe(seen.append)
    proxy.cut()
    await eventually(lambda: client.status.connection is not ConnectionState.ONLINE)
    # Each patch is under the 64 KiB limit, so only the server sees the document grow too big.
    handles = [client.set(f"/preferences/k{i}", "x" * 60_000) for i in range(5)]
    last = client.update({"theme": "dark"})
    proxy.restore()
    acks = [await asyncio.wait_for(h, 10) for h in handles[:4]]
    assert [a.revision for a in acks] == [1, 2, 3, 4]
    with pytest.raises(TooLarge) as error:
        await asyncio.wait_for(handles[4], 10)
    assert error.value.code == "too_large"
    assert (await last).revision == 5
    await eventually(lambda: client.revision == 5)
    assert client.get("/preferences/k4") is None  # rolled back
    assert client.get("/theme") == "dark"
    assert [c.mutation_id for c in seen if c.origin is ChangeOrigin.ROLLBACK] == [
        handles[4].mutation_id
    ]
    assert client.status.error is error.value or client.status.error is None
    assert client.status.error_count >= 2  # the cut connection and the refusal
    assert client.status.unsaved == 0
    await client.close()
    with OfflineCache.open(cache_path) as cache:
        assert cache.load_pending() == []


async def test_an_expired_static_token_puts_the_client_in_error(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    import time

    token = token_for(new_user(), ttl_seconds=60, now=time.time() - 120)
    client = await make_client(live_server.url, token)
    status = client.status
    assert status.connection is ConnectionState.ERROR
    assert isinstance(status.error, TokenExpired)
    assert status.error.code == "token_expired"
    assert status.error_count == 1
    await asyncio.sleep(0.3)  # a refused static token is not retried
    assert client.status.error_count == 1


async def test_a_token_provider_refreshes_the_live_socket_before_expiry(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    import time

    user = new_user()
    issued: list[tuple[str, int]] = []

    def provider() -> str:
        issued.append(ISSUER.issue(user, ttl_seconds=3))
        return issued[-1][0]

    client = await make_client(live_server.url, provider, refresh_margin=60)
    statuses: list[Status] = []
    client.on_status(statuses.append)
    # A server process keeps its own clock, so the first token must really run out: poll
    # until it has (a short lifetime, no fixed sleep), by when a fresh one has replaced it.
    first_expiry = issued[0][1]
    await eventually(lambda: time.time() > first_expiry + 0.25, within=10)
    assert len(issued) >= 2
    ack = await asyncio.wait_for(client.update({"theme": "dark"}), 5)
    assert ack.revision == 1
    assert all(s.connection is ConnectionState.ONLINE for s in statuses)


# --- service tokens and the seed's names -----------------------------------------------------


async def test_service_names(live_server: ServerProcess, make_client: MakeClient) -> None:
    from tests.client.helpers import service_token

    alice, bob = new_user(), new_user()
    service = await make_client(live_server.url, service_token(), follow=False)
    app = await make_client(live_server.url, token_for(alice))
    seen: list[Change] = []
    subscription = await service.subscribe_to_settings_changes(alice, seen.append)

    await app.update({"theme": "dark"})
    await eventually(lambda: len(seen) == 1)
    assert (seen[0].user_id, seen[0].revision, seen[0].patch) == (alice, 1, {"theme": "dark"})

    ack = await service.update_settings_realtime(alice, {"language": "it"})
    assert (ack.revision, ack.user_id) == (2, alice)
    await eventually(lambda: app.get("/language") == "it")
    assert (await service.get_latest_settings(alice))["language"] == "it"  # the live document
    assert (await service.get_latest_settings(bob))["theme"] == "light"  # over HTTP
    ack = await service.update_settings_realtime(bob, {"theme": "system"})
    assert (ack.revision, ack.user_id) == (1, bob)
    assert (await service.get_latest_settings(bob))["theme"] == "system"

    subscription.unsubscribe()
    await app.update({"theme": "light"})
    await asyncio.sleep(0.2)
    assert len(seen) == 2  # the service's own edit, then nothing after unsubscribing
    assert seen[1].origin is ChangeOrigin.LOCAL


async def test_a_user_token_cannot_reach_another_users_settings(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    client = await make_client(live_server.url, token_for(new_user()))
    with pytest.raises(Forbidden) as error:
        await client.subscribe_to_settings_changes(new_user(), print)
    assert error.value.code == "forbidden"
    with pytest.raises(Forbidden):
        await client.get_latest_settings(new_user())
    assert client.status.connection is ConnectionState.ONLINE


async def test_a_service_client_can_follow_one_user_with_the_plain_api(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    from tests.client.helpers import service_token

    user = new_user()
    app = await make_client(live_server.url, token_for(user))
    await app.update({"preferences": {"beta": True}})
    backend = await make_client(live_server.url, service_token(), user_id=user)
    assert backend.revision == 1
    assert backend.get("/preferences/beta") is True
    ack = await backend.update({"preferences": {"beta": False}})
    assert (ack.revision, ack.user_id) == (2, user)
    await eventually(lambda: app.get("/preferences/beta") is False)


# --- conflicts ---------------------------------------------------------------------------------


async def test_conflicts_reach_the_writer_in_its_ack_and_the_loser_in_the_change(
    live_server: ServerProcess, make_client: MakeClient, make_proxy: MakeProxy
) -> None:
    user = new_user()
    proxy = await make_proxy(live_server)
    late = await make_client(proxy.url, token_for(user))
    early = await make_client(live_server.url, token_for(user))
    seen_early: list[Change] = []
    early.subscribe(seen_early.append)

    proxy.cut()
    await eventually(lambda: late.status.connection is not ConnectionState.ONLINE)
    assert (await early.update({"theme": "dark", "language": "de"})).revision == 1
    await asyncio.sleep(0.01)  # the offline edit is made later, on an older base
    offline_edit = late.update({"theme": "system"})
    proxy.restore()

    ack = await offline_edit
    won = {"path": "/theme", "yours": "system", "theirs": "dark", "kept": "yours"}
    assert ack.revision == 2
    assert ack.conflicts == [{**won, "lost_by": early.client_id}]
    await eventually(lambda: early.revision == 2)
    told = [c for c in seen_early if c.origin is ChangeOrigin.REMOTE]
    assert [(c.revision, c.patch, c.client_id) for c in told] == [
        (2, {"theme": "system"}, late.client_id)
    ]
    overwritten = [x for x in told[0].conflicts if x.get("lost_by") == early.client_id]
    assert overwritten == [{**won, "lost_by": early.client_id}]

    # An offline edit older than a concurrent one loses: nothing applies, no revision.
    proxy.cut()
    await eventually(lambda: late.status.connection is not ConnectionState.ONLINE)
    stale = late.update({"language": "fr"})
    await asyncio.sleep(0.01)
    assert (await early.update({"language": "it"})).revision == 3
    proxy.restore()
    ack = await stale
    assert ack.revision == 3
    assert [(x["path"], x["yours"], x["theirs"], x["kept"]) for x in ack.conflicts] == [
        ("/language", "fr", "it", "theirs")
    ]
    await eventually(lambda: late.revision == 3)
    assert late.get("/language") == "it"
    assert late.get() == early.get()
