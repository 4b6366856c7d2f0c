"""Rate limits, built-in sign-up with refreshing tokens, and a cache left by another user."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from livesettings.client import ConnectionState, OfflineCache, RefreshingToken, sign_in, sign_up
from livesettings.client.cache import QueuedMutation
from livesettings.errors import Conflict, Unauthorized
from tests.client.helpers import MakeClient, Proxy, eventually, new_user, token_for
from tests.support.server import ServerProcess

MakeProxy = Callable[[ServerProcess], Awaitable[Proxy]]


async def test_rate_limited_replays_wait_and_keep_their_order(
    tmp_path: Path,
    make_client: MakeClient,
    make_proxy: MakeProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = ServerProcess(tmp_path / "data", write_rate=10, write_burst=2)
    server.start()
    try:
        user = new_user()
        proxy = await make_proxy(server)
        client = await make_client(proxy.url, token_for(user))
        proxy.cut()
        await eventually(lambda: client.status.connection is not ConnectionState.ONLINE)
        handles = [client.set("/preferences/step", n) for n in range(6)]
        with caplog.at_level(logging.INFO, logger="livesettings.client"):
            proxy.restore()
            acks = [await h for h in handles]
        assert "rate_limited; sending it again" in caplog.text
        assert [a.revision for a in acks] == [1, 2, 3, 4, 5, 6]
        await eventually(lambda: client.revision == 6)
        assert client.get("/preferences/step") == 5
        assert client.status.unsaved == 0
        assert client.status.error is None  # waiting out a rate limit is not a failure
    finally:
        server.stop()


async def test_signed_up_users_keep_their_socket_with_a_refreshing_token(
    live_server: ServerProcess, make_client: MakeClient
) -> None:
    url = live_server.url
    name = new_user()
    tokens = await sign_up(url, name, "correct horse battery staple")
    with pytest.raises(Conflict) as taken:
        await sign_up(url, name, "correct horse battery staple")
    assert taken.value.code == "username_taken"
    with pytest.raises(Unauthorized):
        await sign_in(url, name, "wrong password entirely")
    assert (await sign_in(url, name, "correct horse battery staple")).user_id == tokens.user_id

    provider = RefreshingToken(url, tokens, margin=10**6)  # every call refreshes
    client = await make_client(url, provider)
    assert provider.refreshes == 1
    assert client.user_id == tokens.user_id
    assert (await client.update({"theme": "system"})).revision == 1
    await provider()
    assert provider.refreshes == 2
    assert provider.tokens.refresh_token != tokens.refresh_token
    # Refresh tokens rotate: replaying the first one is refused (and revokes its family).
    with pytest.raises(Unauthorized):
        await RefreshingToken(url, tokens, margin=10**6)()


async def test_a_cache_left_by_another_user_is_not_replayed_for_this_one(
    live_server: ServerProcess,
    make_client: MakeClient,
    cache_path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ann, bob = new_user(), new_user()
    ann_client = await make_client(live_server.url, token_for(ann), cache_path=cache_path)
    await ann_client.update({"theme": "dark"})
    await ann_client.flush()
    await ann_client.close()
    with OfflineCache.open(cache_path) as cache:
        cache.add_pending(QueuedMutation("", "ann-edit", 1, {"language": "sv"}, 1))

    with caplog.at_level(logging.WARNING, logger="livesettings.client"):
        bob_client = await make_client(live_server.url, token_for(bob), cache_path=cache_path)
    assert "belonged to another user" in caplog.text
    assert bob_client.user_id == bob
    assert bob_client.get("/theme") == "light"
    assert bob_client.get("/language") == "en"
    assert bob_client.revision == 0
    await bob_client.flush()
    await bob_client.close()
    with OfflineCache.open(cache_path) as cache:
        assert cache.get_meta("user_id") == bob
        assert cache.load_pending() == []
