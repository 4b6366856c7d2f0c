"""supabase-py and realtime-py (the async client) against a real server: GoTrue sign-up and
sign-in, PostgREST select/update/upsert and PGRST116, and realtime subscriptions over vsn
1.0.0 (JSON objects, as realtime-py speaks it): another client's UPDATE arrives, another
user's filter is refused, and a refreshed token keeps a channel past the old token's expiry."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from postgrest.exceptions import APIError
from realtime import AsyncRealtimeChannel, RealtimeSubscribeStates
from supabase import AsyncClient, AsyncClientOptions, acreate_client
from supabase_auth.errors import AuthApiError

from tests.compat.conftest import COMPAT_SERVER_SETTINGS, anon_key_of, new_email
from tests.support.server import ServerProcess

PASSWORD = "correct horse 1"
SECRET = "sk-test-plaintext-0123456789wxyz"
SHORT_TTL = 5  # seconds an access token lives on the server of the token refresh test


@asynccontextmanager
async def supabase_client(server: ServerProcess, anon_key: str) -> AsyncIterator[AsyncClient]:
    """``acreate_client(url, anon_key)``, on an httpx client this test closes. No refresh
    timer: the tests that refresh a session do it by hand."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        options = AsyncClientOptions(httpx_client=http, auto_refresh_token=False)
        client = await acreate_client(server.url, anon_key, options)
        try:
            yield client
        finally:
            await client.remove_all_channels()
            await client.realtime.close()


async def sign_up(client: AsyncClient) -> tuple[str, str]:
    """A new user signed up (and so signed in) on ``client``: its email and id."""
    email = new_email("py")
    response = await client.auth.sign_up({"email": email, "password": PASSWORD})
    assert response.user is not None
    assert response.session is not None, "sign_up returned no session"
    return email, response.user.id


@dataclass
class Subscription:
    """A channel with the seed's UPDATE binding, its events and its subscribe statuses."""

    channel: AsyncRealtimeChannel
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    statuses: list[tuple[RealtimeSubscribeStates, Exception | None]] = field(default_factory=list)

    @property
    def states(self) -> list[RealtimeSubscribeStates]:
        return [status for status, _ in self.statuses]


async def subscribe(client: AsyncClient, user_id: str, topic: str | None = None) -> Subscription:
    """Subscribe ``client`` to the UPDATEs of ``user_id``'s row, as the seed does; returns
    once the server has answered the join."""
    made = Subscription(client.channel(topic or f"user_preferences:{user_id}"))
    await made.channel.on_postgres_changes(
        "UPDATE",
        schema="public",
        table="user_preferences",
        filter=f"user_id=eq.{user_id}",
        callback=lambda payload: made.events.put_nowait(dict(payload)),
    ).subscribe(lambda status, err: made.statuses.append((status, err)))
    return made


async def write_marker(writer: AsyncClient, user_id: str) -> str:
    """``writer`` updates ``user_id``'s row with a fresh marker; the marker."""
    marker = uuid.uuid4().hex
    await (
        writer.table("user_preferences")
        .update({"preferences": {"marker": marker}})
        .eq("user_id", user_id)
        .execute()
    )
    return marker


async def test_sign_up_and_sign_in(compat_server: ServerProcess, anon_key: str) -> None:
    async with (
        supabase_client(compat_server, anon_key) as first,
        supabase_client(compat_server, anon_key) as second,
    ):
        email, user_id = await sign_up(first)
        uuid.UUID(user_id)
        signed_in = await second.auth.sign_in_with_password({"email": email, "password": PASSWORD})
        assert signed_in.user is not None and signed_in.user.id == user_id
        assert signed_in.user.email == email
        assert signed_in.session is not None and signed_in.session.token_type == "bearer"
        me = await second.auth.get_user()
        assert me is not None and me.user.id == user_id

        with pytest.raises(AuthApiError) as refused:
            await second.auth.sign_in_with_password({"email": email, "password": "wrong pass 1"})
        assert refused.value.status == 400


async def test_select_update_upsert(compat_server: ServerProcess, anon_key: str) -> None:
    async with (
        supabase_client(compat_server, anon_key) as client,
        supabase_client(compat_server, anon_key) as other,
    ):
        _, user_id = await sign_up(client)
        _, other_id = await sign_up(other)
        table = client.table

        upserted = (
            await table("user_preferences")
            .upsert({"user_id": user_id, "theme": "dark", "language": "fr"}, on_conflict="user_id")
            .execute()
        )
        assert [row["theme"] for row in upserted.data] == ["dark"]

        read = await table("user_preferences").select("*").eq("user_id", user_id).single().execute()
        assert isinstance(read.data, dict)
        assert read.data["user_id"] == user_id
        assert (read.data["theme"], read.data["language"]) == ("dark", "fr")

        updated = (
            await table("user_preferences")
            .update({"preferences": {"fontSize": 16}, "api_keys": {"openai": SECRET}})
            .eq("user_id", user_id)
            .execute()
        )
        assert len(updated.data) == 1
        row = updated.data[0]
        assert row["preferences"] == {"fontSize": 16}
        assert row["api_keys"]["openai"]["set"] is True
        assert SECRET not in repr(updated.data)

        merged = (
            await table("user_preferences")
            .upsert({"user_id": user_id, "theme": "system"}, on_conflict="user_id")
            .execute()
        )
        assert merged.data[0]["theme"] == "system"
        assert merged.data[0]["language"] == "fr"
        assert merged.data[0]["id"] == read.data["id"]

        with pytest.raises(APIError) as none:
            await table("user_preferences").select("*").eq("user_id", other_id).single().execute()
        assert none.value.code == "PGRST116"


async def test_a_realtime_subscription_receives_another_clients_update(
    compat_server: ServerProcess, anon_key: str
) -> None:
    async with (
        supabase_client(compat_server, anon_key) as listener,
        supabase_client(compat_server, anon_key) as writer,
        supabase_client(compat_server, anon_key) as stranger,
    ):
        email, user_id = await sign_up(listener)
        await writer.auth.sign_in_with_password({"email": email, "password": PASSWORD})
        await stranger.auth.sign_up({"email": new_email("py"), "password": PASSWORD})
        await (
            writer.table("user_preferences")
            .upsert({"user_id": user_id}, on_conflict="user_id")
            .execute()
        )

        mine = await subscribe(listener, user_id)
        assert mine.states == [RealtimeSubscribeStates.SUBSCRIBED], mine.statuses
        assert "vsn=1.0.0" in listener.realtime.endpoint_url()

        marker = await write_marker(writer, user_id)
        payload = await asyncio.wait_for(mine.events.get(), 8)
        data = payload["data"]
        assert data["type"] == "UPDATE"
        assert (data["schema"], data["table"]) == ("public", "user_preferences")
        assert data["record"]["user_id"] == user_id
        assert data["record"]["preferences"] == {"marker": marker}
        assert set(data["old_record"]) == {"id"}
        assert payload["ids"] == [mine.channel.postgres_changes_callbacks[0].id]

        theirs = await subscribe(stranger, user_id, topic="theirs")
        assert theirs.states[:1] == [RealtimeSubscribeStates.CHANNEL_ERROR], theirs.statuses
        # A refused join (realtime-py raises the reply's response as JSON), not a lost socket.
        assert isinstance(json.loads(str(theirs.statuses[0][1])), dict), theirs.statuses
        assert stranger.realtime.is_connected


@pytest.fixture(scope="module")
def short_lived_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose access tokens live SHORT_TTL seconds."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("short") / "data",
        **COMPAT_SERVER_SETTINGS,
        access_token_ttl=SHORT_TTL,
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_a_refreshed_token_keeps_the_channel_past_the_old_tokens_expiry(
    short_lived_server: ServerProcess,
) -> None:
    server, anon_key = short_lived_server, anon_key_of(short_lived_server)
    async with (
        supabase_client(server, anon_key) as listener,
        supabase_client(server, anon_key) as stale,
        supabase_client(server, anon_key) as writer,
    ):
        email, user_id = await sign_up(listener)
        for other in (stale, writer):
            await other.auth.sign_in_with_password({"email": email, "password": PASSWORD})
        await (
            writer.table("user_preferences")
            .upsert({"user_id": user_id}, on_conflict="user_id")
            .execute()
        )
        mine = await subscribe(listener, user_id)
        old = await subscribe(stale, user_id)
        assert mine.states == old.states == [RealtimeSubscribeStates.SUBSCRIBED]

        session = await listener.auth.get_session()
        assert session is not None
        old_exp = jwt.decode(session.access_token, options={"verify_signature": False})["exp"]
        await asyncio.sleep(2.1)  # a later iat: the new token outlives the old by 2 s or more
        refreshed = await listener.auth.refresh_session()
        assert refreshed.session is not None
        fresh = refreshed.session.access_token
        assert fresh != session.access_token
        for _ in range(250):  # set_auth runs as a task
            if listener.realtime.access_token == fresh:
                break
            await asyncio.sleep(0.02)
        assert listener.realtime.access_token == fresh, "realtime never got the new token"

        new_exp = jwt.decode(fresh, options={"verify_signature": False})["exp"]
        assert new_exp >= old_exp + 2

        # Past the first token's expiry: the server has closed the channel that kept it.
        await asyncio.sleep(max(0.0, old_exp + 0.5 - time.time()))
        assert RealtimeSubscribeStates.CHANNEL_ERROR in old.states, old.statuses
        assert mine.channel.is_joined, "the refreshed channel was closed"
        await writer.auth.refresh_session()  # the writer's first token has expired too
        marker = await write_marker(writer, user_id)
        payload = await asyncio.wait_for(mine.events.get(), 8)
        assert payload["data"]["record"]["preferences"] == {"marker": marker}
        await asyncio.sleep(0.3)
        assert old.events.empty(), "a channel whose token expired still received"
