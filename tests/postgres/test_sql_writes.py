"""Writes made in SQL to ``user_preferences``: what the triggers queue, what they refuse, and
what a ``--sql-writer`` role may reach (store/pg_triggers.py, setup's ``sql_writer``).

The server's side — applying the queue and pushing it — is tests/server/test_sql_writes.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from livesettings.crypto import Keyring, generate_master_key
from livesettings.errors import ConfigError
from livesettings.merge import Mutation
from livesettings.store import PendingMutation, open_store
from livesettings.store.pg_triggers import sql_write_status
from livesettings.store.planning import body_hash
from livesettings.store.postgres import PostgresStore

from .cluster import Scratch, superuser, url

pytestmark = pytest.mark.postgres


def edit(user: str, mutation_id: str, patch: dict[str, Any]) -> PendingMutation:
    return PendingMutation(
        user, Mutation(mutation_id, "c1", None, patch, 1_000), body_hash("patch", patch)
    )


async def commit(store: PostgresStore, user: str, mutation_id: str, patch: dict[str, Any]) -> int:
    (outcome,) = await store.commit([edit(user, mutation_id, patch)])
    assert outcome.error is None, outcome.error
    return outcome.revision


@pytest.fixture
async def writer(scratch: Scratch) -> AsyncIterator[tuple[PostgresStore, str]]:
    """A set-up store (with a keyring) and a login role granted by ``setup(sql_writer=…)``."""
    role = f"ls_sqlw_{scratch.tag}"
    admin = await superuser()
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        store = await scratch.store(keyring=Keyring([generate_master_key()]))
        lines = await store.setup(sql_writer=role)
        assert f"added role {role} to policy livesettings_app_user on user_preferences" in lines
        yield store, url(role, scratch.databases["main"])
    finally:
        for database in scratch.databases.values():
            conn = await superuser(database)
            try:
                await conn.execute(f'DROP OWNED BY "{role}"')
            finally:
                await conn.close()
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def as_writer(
    role_url: str, user: str | None, *statements: str, **settings: str
) -> list[str]:
    """Run ``statements`` in one transaction as ``user`` (the writer names it itself)."""
    conn = await asyncpg.connect(role_url, server_settings=settings or None)
    try:
        async with conn.transaction():
            if user is not None:
                await conn.execute("SELECT set_config('livesettings.user_id', $1, true)", user)
            return [await conn.execute(statement) for statement in statements]
    finally:
        await conn.close()


async def queued(scratch: Scratch) -> list[dict[str, Any]]:
    conn = await superuser(scratch.databases["main"])
    try:
        rows = await conn.fetch(
            "SELECT user_id, base_revision, patch::text AS patch, written_by "
            "FROM public.sql_writes ORDER BY id"
        )
    finally:
        await conn.close()
    return [{**dict(row), "patch": json.loads(row["patch"])} for row in rows]


async def stored_row(scratch: Scratch, user: str) -> dict[str, Any]:
    conn = await superuser(scratch.databases["main"])
    try:
        row = await conn.fetchrow(
            "SELECT theme, language, preferences::text AS preferences, revision "
            "FROM public.user_preferences WHERE user_id = $1",
            user,
        )
    finally:
        await conn.close()
    assert row is not None
    return {**dict(row), "preferences": json.loads(row["preferences"])}


async def test_update_insert_upsert_and_delete_are_queued_as_merge_patches(
    scratch: Scratch, writer: tuple[PostgresStore, str]
) -> None:
    store, role_url = writer
    role = role_url.split("//")[1].split("@")[0]
    await commit(store, "u1", "m1", {"theme": "dark", "preferences": {"a": 1, "b": {"c": 2}}})
    before = await stored_row(scratch, "u1")
    tags = await as_writer(
        role_url,
        "u1",
        "UPDATE user_preferences SET theme = 'light', "
        "preferences = jsonb_set(preferences - 'a', '{b,d}', '[3]')",
        # An upsert (supabase-style): the given columns against the stored row; NULL: not given.
        "INSERT INTO user_preferences (user_id, language, preferences, theme) "
        'VALUES (\'u1\', \'fr\', \'{"a": 1, "b": {"c": 2}, "z": true}\', NULL) '
        "ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id, "
        "language = excluded.language, preferences = excluded.preferences",
        "UPDATE user_preferences SET ai_providers = NULL, updated_at = now()",
        "DELETE FROM user_preferences",
    )
    # The row itself is the server's to change: the statements leave it as it was.
    assert tags == ["UPDATE 1", "INSERT 0 0", "UPDATE 1", "DELETE 0"]
    assert await stored_row(scratch, "u1") == before
    # A new user's INSERT builds on revision 0.
    assert await as_writer(
        role_url, "u2", "INSERT INTO user_preferences (user_id, theme) VALUES ('u2', 'system')"
    ) == ["INSERT 0 0"]
    reset = dict.fromkeys(("theme", "language", "preferences", "ai_providers", "api_keys"))
    assert await queued(scratch) == [
        {
            "user_id": "u1",
            "base_revision": 1,
            "patch": {"theme": "light", "preferences": {"a": None, "b": {"d": [3]}}},
            "written_by": role,
        },
        {
            "user_id": "u1",
            "base_revision": 1,
            "patch": {"language": "fr", "preferences": {"z": True}},
            "written_by": role,
        },
        # A column set to NULL is reset to its default (updated_at is not the document's).
        {"user_id": "u1", "base_revision": 1, "patch": {"ai_providers": None}, "written_by": role},
        {"user_id": "u1", "base_revision": 1, "patch": reset, "written_by": role},
        {"user_id": "u2", "base_revision": 0, "patch": {"theme": "system"}, "written_by": role},
    ]


async def test_the_servers_own_writes_pass_through_and_a_writer_cannot_pose_as_it(
    scratch: Scratch, writer: tuple[PostgresStore, str], tmp_path: Path
) -> None:
    store, role_url = writer
    for i in range(20):
        assert await commit(store, "u1", f"m{i}", {"preferences": {"n": i}}) == i + 1
    assert await store.remove_user("u1") is True  # the server's delete passes through too
    assert (await store.get_document("u1")).revision == 0
    status = await sql_write_status(store)
    assert status is not None
    assert (status.pending, status.oldest_age_s, status.trigger_present) == (0, None, True)
    assert await sql_write_status(open_store(f"sqlite:///{tmp_path / 'x.db'}")) is None
    await commit(store, "u3", "m", {"theme": "dark"})
    # Naming its session "livesettings" does not make a SQL writer the server.
    await as_writer(
        role_url,
        "u3",
        "UPDATE user_preferences SET theme = 'system'",
        application_name="livesettings",
    )
    # Nor is the app role's own console the server: only its livesettings sessions are.
    app = scratch.app_url(scratch.databases["main"])
    await as_writer(app, "u3", "UPDATE user_preferences SET language = 'de'")
    assert [row["patch"] for row in await queued(scratch)] == [
        {"theme": "system"},
        {"language": "de"},
    ]
    status = await store.sql_write_status()
    assert status.pending == 2 and status.oldest_age_s is not None and status.oldest_age_s < 60


async def test_api_keys_cannot_be_set_in_sql_but_can_be_removed(
    scratch: Scratch, writer: tuple[PostgresStore, str]
) -> None:
    store, role_url = writer
    await commit(store, "u1", "m1", {"api_keys": {"openai": "sk-live-0123456789", "b": "x" * 12}})
    for statement in (
        """UPDATE user_preferences SET api_keys = api_keys || '{"new": "sk-plain"}'""",
        """UPDATE user_preferences SET api_keys = jsonb_set(api_keys, '{openai}', '"sk-2"')""",
        # Moving a sealed envelope to another name is no way around it either.
        "UPDATE user_preferences SET api_keys = api_keys || "
        "jsonb_build_object('copy', api_keys -> 'openai')",
        """INSERT INTO user_preferences (user_id, api_keys) VALUES ('u1', '{"k": "v"}')""",
    ):
        with pytest.raises(asyncpg.FeatureNotSupportedError) as refused:
            await as_writer(role_url, "u1", statement)
        assert "API keys cannot be written in SQL" in str(refused.value)
        assert "PATCH /v1/users/{user_id}/settings" in (refused.value.hint or "")
    # Its current sealed value is no change; removing a key is allowed.
    assert await as_writer(
        role_url,
        "u1",
        "UPDATE user_preferences SET api_keys = api_keys",
        "UPDATE user_preferences SET api_keys = api_keys - 'openai'",
    ) == ["UPDATE 1", "UPDATE 1"]
    assert [row["patch"] for row in await queued(scratch)] == [{"api_keys": {"openai": None}}]


@pytest.mark.parametrize(
    ("statement", "error", "phrase"),
    [
        (
            "UPDATE user_preferences SET theme = 'blue'",
            asyncpg.InvalidParameterValueError,
            "theme must be light, dark or system",
        ),
        (
            f"UPDATE user_preferences SET language = '{'x' * 36}'",
            asyncpg.InvalidParameterValueError,
            "at most 35 characters",
        ),
        (
            """UPDATE user_preferences SET preferences = '"oops"'""",
            asyncpg.InvalidParameterValueError,
            "preferences must be a JSON object",
        ),
        (
            "UPDATE user_preferences SET user_id = 'u9'",
            asyncpg.FeatureNotSupportedError,
            "user_id cannot be changed",
        ),
    ],
    ids=["theme", "language", "not-an-object", "user-id"],
)
async def test_obvious_errors_fail_the_statement(
    scratch: Scratch,
    writer: tuple[PostgresStore, str],
    statement: str,
    error: type[Exception],
    phrase: str,
) -> None:
    store, role_url = writer
    await commit(store, "u1", "m1", {"theme": "dark"})
    with pytest.raises(error, match=phrase):
        await as_writer(role_url, "u1", statement)
    assert await queued(scratch) == []


async def test_row_level_security_confines_the_sql_writer(
    scratch: Scratch, writer: tuple[PostgresStore, str]
) -> None:
    store, role_url = writer
    await commit(store, "u1", "m1", {"theme": "dark"})
    await commit(store, "u2", "m1", {"theme": "dark"})
    await store.create_user("u1", "alice", "hash")
    conn = await asyncpg.connect(role_url)
    try:
        # Nobody named: nothing to see or write.
        assert await conn.fetchval("SELECT count(*) FROM user_preferences") == 0
        async with conn.transaction():
            await conn.execute("SELECT set_config('livesettings.user_id', 'u1', true)")
            assert [r[0] for r in await conn.fetch("SELECT user_id FROM user_preferences")] == [
                "u1"
            ]
            assert await conn.execute("UPDATE user_preferences SET theme = 'light' ") == "UPDATE 1"
            assert (
                await conn.execute(
                    "UPDATE user_preferences SET theme = 'system' WHERE user_id = 'u2'"
                )
                == "UPDATE 0"
            )
            assert await conn.execute("DELETE FROM user_preferences WHERE user_id = 'u2'") == (
                "DELETE 0"
            )
        for statement in (
            "INSERT INTO user_preferences (user_id, theme) VALUES ('u2', 'light')",
            "INSERT INTO user_preferences (user_id, theme) VALUES ('u9', 'light')",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
                async with conn.transaction():
                    await conn.execute("SELECT set_config('livesettings.user_id', 'u1', true)")
                    await conn.execute(statement)
        for statement in (
            "UPDATE user_preferences SET revision = 7",
            "UPDATE user_preferences SET leaf_meta = '{}'",
            "INSERT INTO user_preferences (user_id, revision) VALUES ('u1', 9)",
            "SELECT count(*) FROM sql_writes",
            "DELETE FROM sql_writes",
            "SELECT count(*) FROM settings_changes",
            "SELECT count(*) FROM users",
            "SELECT count(*) FROM data_keys",
            "SELECT * FROM livesettings_claim_sql_writes(10)",
            "SELECT livesettings_finish_sql_writes(ARRAY[1]::bigint[])",
            "SELECT livesettings_json_patch('{}', '{}')",
            "TRUNCATE user_preferences",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with conn.transaction():
                    await conn.execute("SELECT set_config('livesettings.user_id', 'u1', true)")
                    await conn.execute(statement)
    finally:
        await conn.close()
    assert [(row["user_id"], row["patch"]) for row in await queued(scratch)] == [
        ("u1", {"theme": "light"})
    ]
    # The app role reaches the queue only through its two functions.
    app = await asyncpg.connect(scratch.app_url(scratch.databases["main"]))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.fetchval("SELECT count(*) FROM sql_writes")
    finally:
        await app.close()


async def test_a_team_document_is_written_like_a_personal_one(
    scratch: Scratch, writer: tuple[PostgresStore, str]
) -> None:
    store, role_url = writer
    team = f"team:{uuid.uuid4()}"
    await commit(store, team, "m1", {"theme": "dark"})
    assert await as_writer(
        role_url,
        team,
        'UPDATE user_preferences SET ai_providers = \'{"default": "openai"}\'',
        "DELETE FROM user_preferences WHERE user_id = 'u1'",  # not this context's: untouched
    ) == ["UPDATE 1", "DELETE 0"]
    assert [
        (row["user_id"], row["base_revision"], row["patch"]) for row in await queued(scratch)
    ] == [(team, 1, {"ai_providers": {"default": "openai"}})]


async def test_claims_lease_each_users_rows_to_one_node_in_order(
    scratch: Scratch, writer: tuple[PostgresStore, str]
) -> None:
    store, role_url = writer
    for user in ("u1", "u2"):
        await commit(store, user, "m1", {"theme": "dark"})
    for i, user in enumerate(["u1", "u2", "u1"]):
        await as_writer(role_url, user, f"UPDATE user_preferences SET language = 'l{i}x'")
    first = await store.claim_sql_writes(2)
    assert [(w.user_id, json.loads(w.patch)) for w in first] == [
        ("u1", {"language": "l0x"}),
        ("u2", {"language": "l1x"}),
    ]
    # u1 has a live lease: its later row waits for it, even for another node.
    assert await store.claim_sql_writes(10) == []
    # Once u1's first row is applied (finished), its next one is free — u2's lease holds on.
    await store.finish_sql_writes([first[0].id])
    (third,) = await store.claim_sql_writes(10)
    await store.finish_sql_writes([first[1].id])
    assert (third.user_id, json.loads(third.patch), third.base_revision) == (
        "u1",
        {"language": "l2x"},
        1,
    )
    # A node that died: once its lease ran out, the row is claimed again.
    admin = await superuser(scratch.databases["main"])
    try:
        await admin.execute("UPDATE public.sql_writes SET claimed_until = now() - interval '1 s'")
    finally:
        await admin.close()
    assert [w.id for w in await store.claim_sql_writes(10)] == [third.id]
    await store.finish_sql_writes([third.id])
    assert (await store.sql_write_status()).pending == 0


async def test_setup_refuses_a_sql_writer_it_could_not_confine(scratch: Scratch) -> None:
    store = await scratch.store()
    database = scratch.databases["main"]
    made = [f"ls_sqlw_su_{scratch.tag}", f"ls_sqlw_by_{scratch.tag}", f"ls_sqlw_in_{scratch.tag}"]
    admin = await superuser()
    await admin.execute(f'CREATE ROLE "{made[0]}" LOGIN SUPERUSER')
    await admin.execute(f'CREATE ROLE "{made[1]}" LOGIN BYPASSRLS')
    await admin.execute(f'CREATE ROLE "{made[2]}" LOGIN IN ROLE "{scratch.app}"')
    try:
        cases = {
            f"ls_nobody_{scratch.tag}": "does not exist; create it first",
            made[0]: "is a superuser",
            made[1]: "is BYPASSRLS",
            made[2]: "is a member of the app role",
            scratch.app: "is the app role",
            scratch.owner: "owns the livesettings tables",
        }
        for role, phrase in cases.items():
            with pytest.raises(ConfigError, match=phrase):
                await store.setup(sql_writer=role)
        # Setup stays idempotent: the trigger is made once, and kept.
        assert not any("trigger" in line for line in await store.setup())
        assert (await store.sql_write_status()).trigger_present
    finally:
        for role in made:
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
    assert database
