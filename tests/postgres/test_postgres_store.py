"""PostgreSQL specifics of the store: row-level security, roles, setup and seed adoption, the
one NOTIFY per commit, and what an operator sees when the database misbehaves.

The storage suite itself (``tests/store/test_store.py``) runs on PostgreSQL too; these tests
look inside the database, as the app role, the owner or the superuser.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from livesettings.bus.notify import decode_events
from livesettings.crypto import Keyring, generate_master_key, open_secret, unwrap_data_key
from livesettings.document import default_document, rfc3339
from livesettings.errors import ConfigError, StorageError, ValidationError
from livesettings.merge import Mutation
from livesettings.store import SCHEMA_VERSION, PendingMutation, StoredDocument
from livesettings.store.planning import body_hash
from livesettings.store.postgres import (
    NOTIFY_CHANNEL,
    NOTIFY_PAYLOAD_LIMIT,
    PostgresStore,
    notify_payloads,
    parse_notify_payload,
)
from livesettings.store.postgres_schema import APP_PRIVILEGES, DEFINER_FUNCTIONS, TABLES

from .cluster import Scratch, superuser, url

pytestmark = pytest.mark.postgres

NOW_MS = 1_764_349_200_000
CANARY = "sk-canary-pg-5e0b7a1c93d2"
CANARY_2 = "sk-second-canary-44c1d9e7"
CANARY_3 = "sk-orphan-canary-0aa3b6f1"
U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"
U3 = "33333333-3333-4333-8333-333333333333"
SEARCH_PATH = "search_path=pg_catalog, public, pg_temp"


def edit(user: str, mutation_id: str, patch: dict[str, Any], **kwargs: Any) -> PendingMutation:
    return PendingMutation(
        user,
        Mutation(mutation_id, kwargs.get("client", "c1"), None, patch, 1_000),
        body_hash("patch", patch),
    )


def now() -> int:
    return NOW_MS


@pytest.fixture
def keyring() -> Keyring:
    return Keyring([generate_master_key()])


async def fill(store: PostgresStore) -> None:
    """Two users with a document, a secret, an account, a token and a revocation each."""
    await store.create_user("A", "alice", "hash-a")
    await store.create_user("B", "bob", "hash-b")
    outcomes = await store.commit(
        [
            edit("A", "a1", {"theme": "dark", "api_keys": {"k": CANARY}}),
            edit("B", "b1", {"language": "fr", "api_keys": {"k": CANARY_2}}),
        ]
    )
    assert [o.error for o in outcomes] == [None, None]
    await store.add_refresh_token("ta", "A", "fa", NOW_MS // 1000 + 60)
    await store.add_refresh_token("tb", "B", "fb", NOW_MS // 1000 + 60)
    await store.revoke_sessions("A", 1)
    await store.revoke_sessions("B", 2)
    for user_id in ("A", "B"):
        assert await store.set_admin(user_id, True)


# --- row-level security -------------------------------------------------------------------


async def test_row_level_security_not_the_app_confines_the_app_role(
    scratch: Scratch, keyring: Keyring
) -> None:
    store = await scratch.store(keyring=keyring, now_ms=now)
    await fill(store)
    database = scratch.databases["main"]
    app = await asyncpg.connect(scratch.app_url(database))
    try:
        # teams has no user_id: its rows show by membership (tests/teams/test_postgres.py).
        user_tables = [t for t in APP_PRIVILEGES if t not in ("livesettings_meta", "teams")]
        counts = {t: await app.fetchval(f"SELECT count(*) FROM public.{t}") for t in user_tables}
        assert counts == dict.fromkeys(user_tables, 0)
        # Token revocations are reached only through their SECURITY DEFINER functions.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.fetchval("SELECT count(*) FROM public.token_revocations")
        # The owner's switch does nothing for the app role.
        await app.execute("SET livesettings.scope = 'all'")
        assert await app.fetchval("SELECT count(*) FROM public.users") == 0

        await app.execute("SELECT set_config('livesettings.user_id', 'A', false)")
        seen = {
            t: sorted(r[0] for r in await app.fetch(f"SELECT user_id FROM public.{t}"))
            for t in user_tables
        }
        assert seen == {
            "user_preferences": ["A"],
            "settings_changes": ["A"],
            "applied_mutations": ["A"],
            "users": ["A"],
            "refresh_tokens": ["A"],
            "session_revocations": ["A"],
            "data_keys": ["A"],
            "team_members": [],
            "admins": ["A"],
        }
        # The admin flag is granted only through livesettings_set_admin.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute("INSERT INTO public.admins (user_id, granted_at) VALUES ('A', now())")
        assert await app.fetchval("SELECT value FROM public.livesettings_meta") == str(
            SCHEMA_VERSION
        )
        # Writing another user's rows: refused by the policy, or nothing to touch.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await app.execute(
                "INSERT INTO public.session_revocations (user_id, at_ms) VALUES ('B', 5)"
            )
        assert await app.execute("UPDATE public.users SET password_hash = 'x'") == "UPDATE 1"
        assert await app.execute("DELETE FROM public.data_keys WHERE user_id = 'B'") == "DELETE 0"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
            await app.execute("ALTER TABLE public.users DISABLE ROW LEVEL SECURITY")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute("TRUNCATE public.users")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute(f'SET ROLE "{scratch.owner}"')
        # A transaction-local user is gone once the transaction is.
        await app.execute("RESET livesettings.user_id")
        async with app.transaction():
            await app.execute("SELECT set_config('livesettings.user_id', 'B', true)")
            assert await app.fetchval("SELECT user_id FROM public.users") == "B"
        assert await app.fetchval("SELECT count(*) FROM public.users") == 0
    finally:
        await app.close()

    # The owner is subject to RLS too (FORCE): it sees rows only in scope 'all'.
    owner = await asyncpg.connect(scratch.admin_url(database))
    try:
        assert await owner.fetchval("SELECT count(*) FROM public.users") == 0
        await owner.execute("SET livesettings.scope = 'all'")
        assert await owner.fetchval("SELECT count(*) FROM public.users") == 2
    finally:
        await owner.close()
    # B's rows were untouched by A's session; A's password hash was the one changed.
    assert (await store.get_user("B")) is not None
    assert (await store.get_user("B")).password_hash == "hash-b"  # type: ignore[union-attr]
    assert (await store.get_user("A")).password_hash == "x"  # type: ignore[union-attr]


async def test_setup_creates_a_confined_app_role_with_only_what_it_needs(
    scratch: Scratch,
) -> None:
    database = await scratch.database()
    store = PostgresStore(
        url(scratch.app, database, "s3cret-pw"), admin_url=scratch.admin_url(database)
    )
    scratch.stores.append(store)
    lines = await store.setup()
    assert lines == [
        *(f"created table {t}" for t in TABLES),
        *(f"enabled and forced row-level security on {t}" for t in sorted(TABLES)),
        *(f"created policy livesettings_owner_scope on {t}" for t in TABLES),
        "created policy livesettings_owner_member_of on team_members",
        "created index applied_mutations_created",
        "created index refresh_tokens_user",
        "created index refresh_tokens_family",
        "created index data_keys_master",
        "created index session_revocations_user",
        "created index team_members_user",
        "created index sql_writes_user",
        *(f"created function {s.partition('(')[0]}" for s in DEFINER_FUNCTIONS),
        "created function livesettings_lock_users",
        "created trigger livesettings_sql_writes on user_preferences (writes made in SQL are "
        "pushed)",
        f"created role {scratch.app} (LOGIN, NOBYPASSRLS, owning nothing)",
        "created policy livesettings_app_read on livesettings_meta",
        *(
            line
            for t in APP_PRIVILEGES
            if t != "livesettings_meta"
            for line in (
                f"created policy livesettings_app_user on {t}",
                f"created policy livesettings_app_user_only on {t}",
            )
        ),
        f"recorded schema version {SCHEMA_VERSION}",
    ]
    assert await store.setup() == [f"schema is up to date (version {SCHEMA_VERSION})"]

    conn = await superuser(database)
    try:
        role = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolcanlogin, "
            "rolreplication, rolpassword LIKE 'SCRAM-SHA-256$%' AS hashed "
            "FROM pg_authid WHERE rolname = $1",
            scratch.app,
        )
        assert dict(role) == {
            "rolsuper": False,
            "rolbypassrls": False,
            "rolcreaterole": False,
            "rolcreatedb": False,
            "rolcanlogin": True,
            "rolreplication": False,
            "hashed": True,
        }
        owned = await conn.fetchval(
            "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid) "
            "+ (SELECT count(*) FROM pg_proc WHERE proowner = r.oid) "
            "+ (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid) "
            "FROM pg_roles r WHERE rolname = $1",
            scratch.app,
        )
        assert owned == 0
        grants = await conn.fetch(
            "SELECT table_name, string_agg(privilege_type, ', ' ORDER BY privilege_type) AS p "
            "FROM information_schema.role_table_grants WHERE grantee = $1 "
            "GROUP BY table_name",
            scratch.app,
        )
        expected = {
            table: ", ".join(sorted(privileges.split(", ")))
            for table, privileges in APP_PRIVILEGES.items()
        }
        assert {row["table_name"]: row["p"] for row in grants} == expected
        functions = await conn.fetch(
            "SELECT proname, prosecdef, proconfig, "
            "has_function_privilege($1, oid, 'EXECUTE') AS app, "
            "has_function_privilege('public', oid, 'EXECUTE') AS public_execute "
            "FROM pg_proc WHERE pronamespace = 'public'::regnamespace "
            "AND proname LIKE 'livesettings%' ORDER BY proname",
            scratch.app,
        )
        assert {row["proname"]: tuple(row.values())[1:] for row in functions} == {
            **{s.partition("(")[0]: (True, [SEARCH_PATH], True, False) for s in DEFINER_FUNCTIONS},
            "livesettings_lock_users": (False, ["search_path=pg_catalog, pg_temp"], True, False),
            # The SQL-write trigger's (pg_triggers): no role needs to call them.
            "livesettings_sql_write": (True, [SEARCH_PATH], False, False),
            "livesettings_json_patch": (False, ["search_path=pg_catalog, pg_temp"], False, False),
        }
    finally:
        await conn.close()


async def test_a_second_app_role_joins_the_policies(scratch: Scratch) -> None:
    store = await scratch.store()
    database = scratch.databases["main"]
    other = f"{scratch.app}_b"
    second = PostgresStore(url(other, database), admin_url=scratch.admin_url(database))
    scratch.stores.append(second)
    try:
        lines = await second.setup()
        assert lines[0] == f"created role {other} (LOGIN, NOBYPASSRLS, owning nothing)"
        assert f"added role {other} to policy livesettings_app_user on users" in lines
        assert len(lines) == 1 + 1 + 2 * (len(APP_PRIVILEGES) - 1)
        await second.open()
        await store.create_user("A", "alice", "h")
        assert await second.get_user_by_username("alice") == await store.get_user("A")
    finally:
        await second.close()
        await store.close()
        admin = await superuser()
        try:
            await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
            scratch.databases.pop("main")
            await admin.execute(f'DROP ROLE "{other}"')
        finally:
            await admin.close()


# --- open() refuses what RLS cannot confine -----------------------------------------------


async def test_open_refuses_a_superuser_a_bypassrls_role_and_the_owner(scratch: Scratch) -> None:
    await scratch.store()
    database = scratch.databases["main"]
    bypass = f"{scratch.app}_bypass"
    member = f"{scratch.app}_member"
    conn = await superuser()
    try:
        await conn.execute(f'CREATE ROLE "{bypass}" LOGIN BYPASSRLS')
        await conn.execute(f'CREATE ROLE "{member}" LOGIN IN ROLE "{scratch.owner}"')
        cases = {
            url("postgres", database): "'postgres': it is a superuser",
            url(bypass, database): "it has BYPASSRLS",
            scratch.admin_url(database): "it owns the livesettings tables",
            url(member, database): f"member of the role '{scratch.owner}', which owns the",
        }
        for role_url, message in cases.items():
            store = PostgresStore(role_url)
            with pytest.raises(ConfigError, match=message) as caught:
                await store.open()
            assert "LIVESETTINGS_DATABASE_URL" in caught.value.message
    finally:
        for role in (bypass, member):
            await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        await conn.close()


async def test_open_refuses_a_missing_outdated_or_unprotected_schema(scratch: Scratch) -> None:
    store = await scratch.store()
    database = scratch.databases["main"]
    await store.close()
    bare = await scratch.database("bare")  # the app role exists (cluster-wide), no schema here
    with pytest.raises(ConfigError, match="has no livesettings schema; run `livesettings setup`"):
        await PostgresStore(scratch.app_url(bare)).open()

    owner = await asyncpg.connect(scratch.admin_url(database))
    try:
        await owner.execute("SET livesettings.scope = 'all'")
        await owner.execute("UPDATE livesettings_meta SET value = '99'")
        with pytest.raises(ConfigError, match="schema version 99, newer than this livesettings"):
            await PostgresStore(scratch.app_url(database)).open()
        with pytest.raises(ConfigError, match="newer"):
            await store.setup()
        await owner.execute("UPDATE livesettings_meta SET value = '0'")
        with pytest.raises(
            ConfigError,
            match=rf"run `livesettings migrate` \(or `livesettings setup`\) to upgrade it to "
            rf"{SCHEMA_VERSION}",
        ):
            await PostgresStore(scratch.app_url(database)).open()
        await owner.execute(f"UPDATE livesettings_meta SET value = '{SCHEMA_VERSION}'")
        await owner.execute("ALTER TABLE users NO FORCE ROW LEVEL SECURITY")
        with pytest.raises(ConfigError, match="not enabled and forced on users; run"):
            await PostgresStore(scratch.app_url(database)).open()
        assert await store.setup() == ["enabled and forced row-level security on users"]
    finally:
        await owner.close()
    await store.open()
    await store.ping()


async def test_connection_failures_are_clear(scratch: Scratch) -> None:
    database = await scratch.database()
    with pytest.raises(StorageError, match=r"cannot reach PostgreSQL at 127\.0\.0\.1:1/x"):
        await PostgresStore("postgresql://someone@127.0.0.1:1/x", connect_timeout=2).open()
    with pytest.raises(ConfigError, match='database "ls_nope_db" does not exist'):
        await PostgresStore(url("postgres", "ls_nope_db")).open()
    with pytest.raises(ConfigError, match=r"run `livesettings setup`.*to create it"):
        await PostgresStore(scratch.app_url(database)).open()
    with pytest.raises(StorageError, match="not open"):
        await PostgresStore(scratch.app_url(database)).get_document("u1")


# --- setup adopts a seed-style table ----------------------------------------------------------

SEED_TABLE = """
CREATE TABLE public.user_preferences (
    id uuid DEFAULT gen_random_uuid() PRIMARY KEY,
    user_id uuid,
    preferences jsonb DEFAULT '{}',
    api_keys jsonb DEFAULT '{}',
    ai_providers jsonb DEFAULT '{}',
    theme text DEFAULT 'light',
    language text DEFAULT 'en',
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);
ALTER TABLE public.user_preferences ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Users can view own preferences" ON public.user_preferences
    FOR SELECT USING (user_id::text = current_setting('request.jwt.claim.sub', true));
CREATE FUNCTION public.notify_preferences() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('user_preferences_changed', NEW.user_id::text);
    RETURN NEW;
END $$;
CREATE TRIGGER notify_preferences AFTER INSERT OR UPDATE ON public.user_preferences
    FOR EACH ROW EXECUTE FUNCTION public.notify_preferences();
"""

SEED_ROWS: list[tuple[Any, ...]] = [
    # user_id, preferences, api_keys, ai_providers, theme, language, created_at, updated_at
    (
        U1,
        {"font": 12, "a": 1},
        {"openai": CANARY},
        None,
        "dark",
        "en",
        "2024-01-01 10:00:00+00",
        "2024-01-01 10:00:00+00",
    ),
    (
        U1,
        {"font": 14},
        {"anthropic": CANARY_2},
        {"default": "openai"},
        None,
        "fr",
        "2024-01-05 10:00:00+00",
        "2024-02-01 10:00:00+00",
    ),
    (
        U2,
        "oops",
        {"k": 42},
        {"default": "anthropic"},
        "purple",
        "not a tag!",
        "2024-03-01 10:00:00+00",
        None,
    ),
    (U3, None, None, None, None, None, "2024-04-01 10:00:00+00", "2024-04-02 10:00:00+00"),
    (None, {"orphan": True}, {"x": CANARY_3}, None, "dark", "en", None, None),
]


async def seed(database: str, owner_url: str) -> None:
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute(SEED_TABLE)
        await conn.executemany(
            "INSERT INTO public.user_preferences (user_id, preferences, api_keys, ai_providers, "
            "theme, language, created_at, updated_at) VALUES ($1::uuid, $2::jsonb, $3::jsonb, "
            "$4::jsonb, $5, $6, $7::text::timestamptz, $8::text::timestamptz)",
            [
                (
                    uid,
                    None if prefs is None else json.dumps(prefs),
                    None if keys is None else json.dumps(keys),
                    None if ai is None else json.dumps(ai),
                    theme,
                    language,
                    created,
                    updated,
                )
                for uid, prefs, keys, ai, theme, language, created, updated in SEED_ROWS
            ],
        )
    finally:
        await conn.close()


async def files_holding(database: str, needles: list[str]) -> dict[str, list[str]]:
    """Which of the database's relation files hold which needle (after a checkpoint): what
    someone reading the data directory would find."""
    conn = await superuser(database)
    try:
        await conn.execute("CHECKPOINT")
        found: dict[str, list[str]] = {}
        for row in await conn.fetch(
            "SELECT c.relname, pg_relation_filepath(c.oid) AS path FROM pg_class c "
            "WHERE c.relkind IN ('r', 't', 'i', 'm') AND pg_relation_filepath(c.oid) IS NOT NULL "
            "AND pg_relation_size(c.oid) > 0"
        ):
            data = await conn.fetchval("SELECT pg_read_binary_file($1)", row["path"])
            hits = [needle for needle in needles if needle.encode() in data]
            if hits:
                found[row["relname"]] = hits
        return found
    finally:
        await conn.close()


async def test_setup_adopts_a_seed_table_and_leaves_no_plaintext(
    scratch: Scratch, keyring: Keyring
) -> None:
    database = await scratch.database("seed")
    await seed(database, scratch.admin_url(database))
    conn = await superuser(database)
    try:
        await conn.execute("ANALYZE public.user_preferences")  # as autovacuum would
    finally:
        await conn.close()
    canaries = [CANARY, CANARY_2, CANARY_3]
    before = await files_holding(database, canaries)
    # The check can see them: in the rows, and sampled into the column statistics.
    assert before == {"user_preferences": canaries, "pg_statistic": canaries}

    # Without the master keys the plaintext cannot be sealed: nothing changes.
    keyless = await scratch.store("seed", setup=False)
    with pytest.raises(ConfigError, match=r"plaintext API keys.*LIVESETTINGS_MASTER_KEYS"):
        await keyless.setup()
    conn = await superuser(database)
    try:
        assert await conn.fetchval("SELECT to_regclass('public.livesettings_meta')") is None
        assert await conn.fetchval("SELECT count(*) FROM public.user_preferences") == 5
    finally:
        await conn.close()

    store = await scratch.store("seed", setup=False, keyring=keyring, now_ms=now)
    lines = await store.setup()
    reported = [
        line
        for line in lines
        if line.startswith(("user ", "adopted", "cleared", "kept", "added", "rewrote"))
    ]
    assert reported == [
        "added column user_preferences.revision",
        "added column user_preferences.leaf_meta",
        "kept existing trigger notify_preferences on user_preferences: review it",
        "kept existing policy Users can view own preferences on user_preferences "
        "(livesettings' restrictive policy still confines the app role to its user)",
        "cleared the api_keys of 1 user_preferences row(s) without a user_id",
        f"user {U1}: merged 2 duplicate rows (the latest updated_at wins)",
        f"user {U1}: sealed 2 API key(s)",
        f"user {U2}: reset invalid theme to its default",
        f"user {U2}: reset invalid language to its default",
        f"user {U2}: reset invalid preferences to its default",
        f"user {U2}: reset invalid api_keys to its default",
        "adopted 3 existing user_preferences row(s)",
        "rewrote user_preferences (VACUUM FULL): no dead row version keeps an old value "
        "such as a plaintext API key",
        "rewrote pg_statistic (VACUUM FULL): no statistic sampled before keeps one",
    ]
    assert "created unique index user_preferences_user_id_key" in lines
    assert "created table user_preferences" not in lines
    assert lines[-3] == f"recorded schema version {SCHEMA_VERSION}"
    await store.open()
    assert (await store.info())["user_id_type"] == "uuid"

    # Every user's settings are there, merged; the secrets are sealed and still open.
    one = await store.get_document(U1)
    keys = one.settings["api_keys"]
    assert sorted(keys) == ["anthropic", "openai"]
    assert one == StoredDocument(
        U1,
        0,
        {
            "theme": "dark",
            "language": "fr",
            "preferences": {"font": 14, "a": 1},
            "ai_providers": {"default": "openai"},
            "api_keys": keys,
        },
        {},
        updated_at="2024-02-01T10:00:00.000Z",
        created_at="2024-01-01T10:00:00.000Z",
    )
    wrapped = await store.get_wrapped_key(U1)
    assert wrapped is not None
    data_key = unwrap_data_key(keyring, U1, wrapped)
    assert open_secret(U1, "openai", keys["openai"], data_key) == CANARY
    assert open_secret(U1, "anthropic", keys["anthropic"], data_key) == CANARY_2
    two = await store.get_document(U2)
    assert two.settings == {**default_document(), "ai_providers": {"default": "anthropic"}}
    assert (two.created_at, two.updated_at) == ("2024-03-01T10:00:00.000Z", None)
    three = await store.get_document(U3)
    assert (three.revision, three.settings) == (0, default_document())

    # The plaintext is gone: from every row and from the table's files.
    conn = await superuser(database)
    try:
        dump = await conn.fetchval("SELECT string_agg(t::text, ' ') FROM user_preferences t")
        assert not [c for c in canaries if c in dump]
        assert await conn.fetchval("SELECT count(*) FROM user_preferences") == 4
    finally:
        await conn.close()
    assert await files_holding(database, canaries) == {}

    # The store goes on from there, keyed by the uuid column; other ids are refused.
    new_user = "44444444-4444-4444-8444-444444444444"
    [won, fresh, refused] = await store.commit(
        [
            edit(U1, "m1", {"theme": "system"}),
            edit(new_user, "m1", {"api_keys": {"k": CANARY}}),  # the seed's id default fills id
            edit("auth0|x", "m1", {"theme": "dark"}),
        ]
    )
    assert (won.revision, won.error, fresh.revision, fresh.error) == (1, None, 1, None)
    assert isinstance(refused.error, ValidationError)
    assert refused.error.code == "invalid_user_id"
    assert await store.get_document("auth0|x") == StoredDocument(
        "auth0|x", 0, default_document(), {}
    )
    assert [c.revision for c in (await store.changes_since(U1, 0, 10)).changes] == [1]
    assert [u.user_id async for u in store.export_users()] == [U1, U2, U3, new_user]
    assert await store.setup() == [f"schema is up to date (version {SCHEMA_VERSION})"]


# --- notifications ------------------------------------------------------------------------


async def test_one_notification_per_commit_carries_every_revision(scratch: Scratch) -> None:
    store = await scratch.store(now_ms=now)
    quiet = await scratch.store(notify=False)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(scratch.app_url(scratch.databases["main"]))
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: heard.put_nowait(args[3]))
    try:
        outcomes = await store.commit(
            [
                edit("u1", "a", {"theme": "dark"}),
                edit("u2", "a", {"language": "fr"}),
                edit("u1", "b", {"theme": "blue"}),  # refused: no revision
                edit("u1", "c", {"preferences": {"x": 1}}),
            ]
        )
        assert [o.revision for o in outcomes] == [1, 1, 1, 2]
        payload = await asyncio.wait_for(heard.get(), 5)
        assert parse_notify_payload(payload) == [("u1", 1), ("u2", 1), ("u1", 2)]
        carried = [
            (e.user_id, e.revision, [c.patch for c in e.changes]) for e in decode_events(payload)
        ]
        assert carried == [
            ("u1", 1, [{"theme": "dark"}]),
            ("u2", 1, [{"language": "fr"}]),
            ("u1", 2, [{"preferences": {"x": 1}}]),
        ]
        # A repeat creates nothing, and a store without notify stays silent.
        await store.commit([edit("u1", "a", {"theme": "dark"})])
        await quiet.commit([edit("u3", "q", {"theme": "dark"})])
        await asyncio.sleep(0.3)
        assert heard.empty()
        await store.commit([edit("u1", "d", {"theme": "light"})])
        assert parse_notify_payload(await asyncio.wait_for(heard.get(), 5)) == [("u1", 3)]
    finally:
        await listener.close()


def test_notify_payloads_stay_under_the_limit_and_keep_every_pair() -> None:
    pairs = [(f"user-{n:04d}-" + "x" * 100, n) for n in range(300)]
    payloads = notify_payloads(pairs)
    assert len(payloads) == 6  # 300 entries of 117 or 118 bytes
    assert all(len(p.encode()) <= NOTIFY_PAYLOAD_LIMIT for p in payloads)
    assert [pair for p in payloads for pair in parse_notify_payload(p)] == pairs
    assert notify_payloads([]) == []
    assert notify_payloads([("é", 1)]) == ['[["\\u00e9",1]]']
    for bad in ('{"u": 1}', '[["u"]]', '[["u", "1"]]', "[[1, 1]]", '[["u", true]]'):
        with pytest.raises(ValueError):
            parse_notify_payload(bad)


async def test_notify_round_trip(scratch: Scratch) -> None:
    store = await scratch.store()
    assert 0 < await store.notify_round_trip() < 5


# --- several stores, failures -------------------------------------------------------------


async def test_two_nodes_writing_the_same_users_never_collide_or_deadlock(
    scratch: Scratch,
) -> None:
    one = await scratch.store()
    two = await scratch.store()
    batches = [
        [edit("u1", f"x{n}", {"preferences": {f"a{n}": n}}), edit("u2", f"x{n}", {"theme": "dark"})]
        if n % 2
        else [edit("u2", f"x{n}", {"language": "de"}), edit("u1", f"x{n}", {"theme": "system"})]
        for n in range(20)
    ]
    results = await asyncio.gather(
        *((one if n % 2 else two).commit(batch) for n, batch in enumerate(batches))
    )
    assert [o.error for outcomes in results for o in outcomes] == [None] * 40
    for user in ("u1", "u2"):
        page = await one.changes_since(user, 0, 100)
        assert [c.revision for c in page.changes] == list(range(1, 21))


async def test_connections_are_the_app_roles(scratch: Scratch) -> None:
    store = await scratch.store()
    await asyncio.gather(*(store.get_document(f"u{n}") for n in range(6)))
    conn = await superuser()
    try:
        roles = await conn.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = $1 "
            "AND application_name = 'livesettings'",
            scratch.databases["main"],
        )
    finally:
        await conn.close()
    assert [row["usename"] for row in roles] == [scratch.app]


async def test_info_and_ping(scratch: Scratch) -> None:
    store = await scratch.store()
    conn = await superuser()
    try:
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    info = await store.info()
    assert info == {
        "backend": "postgresql",
        "server_version": version,
        "database": scratch.databases["main"],
        "schema_version": SCHEMA_VERSION,
        "role": scratch.app,
        "role_superuser": False,
        "role_bypassrls": False,
        "role_owns_tables": False,
        "synchronous_commit": "on",
        "user_id_type": "text",
        "rls": {t: {"enabled": True, "forced": True} for t in sorted(TABLES)},
        "definer_functions": {
            name: {"security_definer": True, "config": [SEARCH_PATH]}
            for name in sorted(s.partition("(")[0] for s in DEFINER_FUNCTIONS)
        },
        "notify_channel": NOTIFY_CHANNEL,
        "pool": {"size": 4, "open": 1, "in_use": 0, "waits": 0},
    }
    await store.ping()


async def test_a_stalled_database_fails_writes_quickly_and_service_resumes(
    scratch: Scratch,
) -> None:
    store = await scratch.store(command_timeout=0.5)
    [first] = await store.commit([edit("u1", "m1", {"theme": "dark"})])
    assert first.error is None
    locker = await superuser(scratch.databases["main"])
    try:
        async with locker.transaction():
            await locker.execute("LOCK TABLE public.user_preferences IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            [stalled] = await store.commit([edit("u1", "m2", {"theme": "system"})])
            assert time.monotonic() - started < 3
            assert isinstance(stalled.error, StorageError)
            assert "did not answer within 0.5 s" in stalled.error.message
            with pytest.raises(StorageError, match="did not answer"):
                await store.get_document("u1")
    finally:
        await locker.close()
    # Nothing half-written, and the next write goes through.
    assert (await store.get_document("u1")).revision == 1
    [retry] = await store.commit([edit("u1", "m2", {"theme": "system"})])
    assert (retry.revision, retry.error) == (2, None)


async def test_killed_connections_give_errors_then_recover(scratch: Scratch) -> None:
    store = await scratch.store()
    await store.commit([edit("u1", "m1", {"theme": "dark"})])
    conn = await superuser()
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND usename = $2",
            scratch.databases["main"],
            scratch.app,
        )
    finally:
        await conn.close()
    assert killed >= 1
    outcomes = []
    for n in range(3):  # a dead connection may be noticed by the first call, not later ones
        [outcome] = await store.commit([edit("u1", f"k{n}", {"preferences": {"n": n}})])
        outcomes.append(outcome.error)
    assert outcomes[-1] is None
    assert all(e is None or isinstance(e, StorageError) for e in outcomes)
    await store.ping()


async def test_values_postgresql_cannot_store_are_refused_alone(scratch: Scratch) -> None:
    store = await scratch.store()
    [bad, good] = await store.commit(
        [edit("u1", "m1", {"preferences": {"a": "x\u0000y"}}), edit("u1", "m2", {"theme": "dark"})]
    )
    assert isinstance(bad.error, ValidationError)
    assert (bad.error.code, bad.revision) == ("invalid_value", 0)
    assert (good.revision, good.error) == (1, None)
    [nul_user, long_user] = await store.commit(
        [edit("u\u0000", "m1", {"theme": "dark"}), edit("u" * 1001, "m1", {"theme": "dark"})]
    )
    assert isinstance(nul_user.error, ValidationError)
    assert isinstance(long_user.error, ValidationError)
    assert long_user.error.code == "invalid_user_id"


async def test_the_owner_url_as_app_url_sets_up_no_app_role(scratch: Scratch) -> None:
    database = await scratch.database()
    store = PostgresStore(scratch.admin_url(database))
    lines = await store.setup()
    assert lines[-2] == (
        f"no app role set up: LIVESETTINGS_DATABASE_URL names the owner '{scratch.owner}', "
        "which serve refuses; name another role there and run setup again"
    )
    assert not [line for line in lines if "livesettings_app" in line]
    with pytest.raises(ConfigError, match="owns the livesettings tables"):
        await store.open()


async def test_timestamps_round_trip_through_timestamptz(scratch: Scratch) -> None:
    store = await scratch.store(now_ms=now)
    user = await store.create_user("u1", "alice", "h")
    assert user.created_at == rfc3339(NOW_MS)
    assert await store.get_user_by_username("alice") == user
    assert await store.list_users() == [replace(user, password_hash="")]
