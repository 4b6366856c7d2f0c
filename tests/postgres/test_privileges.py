"""What the app role may do, and nothing more: no password hash through the listing function,
a prune that cannot forget recent mutation ids, and no membership in a role that row-level
security cannot confine (superuser, BYPASSRLS, the tables' owner) — refused by ``setup``,
by the store (``serve``) and reported by ``verify``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from livesettings.errors import ConfigError
from livesettings.merge import Mutation
from livesettings.store import PendingMutation
from livesettings.store.planning import body_hash
from livesettings.store.postgres import PostgresStore

from .cluster import Scratch, superuser

pytestmark = pytest.mark.postgres

BIG = 2**63 - 1
DAY_MS = 24 * 3600 * 1000


def edit(user: str, mutation_id: str, patch: dict[str, Any]) -> PendingMutation:
    return PendingMutation(
        user, Mutation(mutation_id, "c1", None, patch, 1_000), body_hash("patch", patch)
    )


async def as_app(scratch: Scratch, database: str) -> Any:
    return await asyncpg.connect(scratch.app_url(database))


async def test_the_app_role_lists_users_without_their_password_hashes(scratch: Scratch) -> None:
    store = await scratch.store()
    await store.create_user("u1", "alice", "argon2-hash-of-alice")
    conn = await as_app(scratch, scratch.databases["main"])
    try:
        rows = [dict(row) for row in await conn.fetch("SELECT * FROM livesettings_list_users()")]
    finally:
        await conn.close()
    assert [row["username"] for row in rows] == ["alice"]
    assert "password_hash" not in rows[0]
    assert "argon2-hash-of-alice" not in repr(rows)
    assert [user.password_hash for user in await store.list_users()] == [""]
    # Sign-in still finds the hash it must verify, by username only.
    found = await store.get_user_by_username("alice")
    assert found is not None and found.password_hash == "argon2-hash-of-alice"


async def test_an_upgrade_replaces_the_old_listing_function(scratch: Scratch) -> None:
    """A database set up before: its livesettings_list_users() returned the hashes."""
    store = await scratch.store()
    await store.create_user("u1", "alice", "argon2-hash-of-alice")
    database = scratch.databases["main"]
    owner = await asyncpg.connect(scratch.admin_url(database))
    try:
        await owner.execute("DROP FUNCTION public.livesettings_list_users()")
        await owner.execute(
            "CREATE FUNCTION public.livesettings_list_users() RETURNS TABLE (user_id text, "
            "username text, password_hash text, created_at timestamptz) LANGUAGE sql "
            "AS $$ SELECT 'x', 'y', 'old-hash', now() $$"
        )
    finally:
        await owner.close()
    lines = await store.setup()
    assert "replaced function livesettings_list_users" in lines
    conn = await as_app(scratch, database)
    try:
        rows = await conn.fetch("SELECT * FROM livesettings_list_users()")
    finally:
        await conn.close()
    assert [list(row.keys()) for row in rows] == [["user_id", "username", "created_at"]]


async def test_prune_with_huge_arguments_keeps_recent_mutation_ids(scratch: Scratch) -> None:
    store = await scratch.store()
    assert [o.error for o in await store.commit([edit("u1", "recent", {"theme": "dark"})])] == [
        None
    ]
    await store.create_user("u1", "alice", "h")
    now_s = int(time.time())
    await store.add_refresh_token("live-token", "u1", "f1", now_s + 3600)
    database = scratch.databases["main"]
    admin = await superuser(database)
    try:
        # An old mutation id and a long-expired token, which prune must still forget.
        await admin.execute(
            "INSERT INTO public.applied_mutations VALUES ('u1', 'old', 'h', 1, '[]', $1)",
            int(time.time() * 1000) - 8 * DAY_MS,
        )
        await admin.execute(
            "INSERT INTO public.refresh_tokens (token_hash, user_id, family_id, expires_at) "
            "VALUES ('dead-token', 'u1', 'f0', $1)",
            now_s - 8 * 24 * 3600,
        )
        conn = await as_app(scratch, database)
        try:
            await conn.execute("SELECT public.livesettings_prune($1, $1)", BIG)
        finally:
            await conn.close()
        kept = await admin.fetch("SELECT mutation_id FROM public.applied_mutations")
        tokens = await admin.fetch("SELECT token_hash FROM public.refresh_tokens")
    finally:
        await admin.close()
    assert [row["mutation_id"] for row in kept] == ["recent"]
    assert [row["token_hash"] for row in tokens] == ["live-token"]


# --- memberships -----------------------------------------------------------------------------


@pytest.fixture
async def extra_roles(scratch: Scratch) -> AsyncIterator[list[str]]:
    """Roles a test creates besides the scratch's own; dropped after it."""
    made: list[str] = []
    yield made
    conn = await superuser()
    try:
        for role in reversed(made):
            await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await conn.close()


async def _grant(scratch: Scratch, made: list[str], attributes: str, *, via: bool = False) -> str:
    """A role with ``attributes``, granted to the app role (``via``: through a plain role
    in between)."""
    role = f"ls_risky_{scratch.tag}_{len(made)}"
    conn = await superuser()
    try:
        await conn.execute(f'CREATE ROLE "{role}" NOLOGIN {attributes}')
        made.append(role)
        member = scratch.app
        if via:
            middle = f"{role}_mid"
            await conn.execute(f'CREATE ROLE "{middle}" NOLOGIN')
            made.append(middle)
            await conn.execute(f'GRANT "{middle}" TO "{scratch.app}"')
            member = middle
        await conn.execute(f'GRANT "{role}" TO "{member}"')
    finally:
        await conn.close()
    return role


@pytest.mark.parametrize(
    ("attributes", "via", "noinherit", "phrase"),
    [
        ("BYPASSRLS", False, False, "which has BYPASSRLS"),
        ("BYPASSRLS", True, False, "which has BYPASSRLS"),
        ("SUPERUSER", False, False, "a member of the superuser role"),
        ("SUPERUSER", False, True, "a member of the superuser role"),
        ("SUPERUSER", True, True, "a member of the superuser role"),
    ],
    ids=["bypassrls", "bypassrls-via-another", "superuser", "superuser-noinherit", "nested"],
)
async def test_an_app_role_that_can_set_role_out_of_rls_is_refused(
    scratch: Scratch,
    extra_roles: list[str],
    attributes: str,
    via: bool,
    noinherit: bool,
    phrase: str,
) -> None:
    store = await scratch.store()
    await store.close()
    role = await _grant(scratch, extra_roles, attributes, via=via)
    if noinherit:
        conn = await superuser()
        try:
            await conn.execute(f'ALTER ROLE "{scratch.app}" NOINHERIT')
        finally:
            await conn.close()
    database = scratch.databases["main"]
    fresh = PostgresStore(scratch.app_url(database), admin_url=scratch.admin_url(database))
    with pytest.raises(ConfigError) as refused:
        await fresh.open()
    assert f"refusing to connect as '{scratch.app}'" in refused.value.message
    assert phrase in refused.value.message and repr(role) in refused.value.message
    # setup (as the owner) refuses such an app role as well, naming the fix.
    with pytest.raises(ConfigError, match="revoke that membership"):
        await fresh.setup()


async def test_an_app_role_that_is_a_member_of_the_owner_is_refused(scratch: Scratch) -> None:
    store = await scratch.store()
    await store.close()
    conn = await superuser()
    try:
        await conn.execute(f'GRANT "{scratch.owner}" TO "{scratch.app}"')
    finally:
        await conn.close()
    database = scratch.databases["main"]
    fresh = PostgresStore(scratch.app_url(database), admin_url=scratch.admin_url(database))
    with pytest.raises(ConfigError, match="which owns the livesettings tables"):
        await fresh.open()
    with pytest.raises(ConfigError, match="which owns the livesettings tables"):
        await fresh.setup()


def _cli(
    *args: str, env: dict[str, str], timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livesettings", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_serve_refuses_and_verify_reports_a_bypassrls_membership(
    scratch: Scratch, extra_roles: list[str], tmp_path: Any
) -> None:
    store = await scratch.store()
    await store.close()
    role = await _grant(scratch, extra_roles, "BYPASSRLS")
    env = {
        "LIVESETTINGS_DATABASE_URL": scratch.app_url(scratch.databases["main"]),
        "LIVESETTINGS_MASTER_KEYS": "k1:" + "A" * 43 + "=",
        "LIVESETTINGS_JWT_SECRET": "privileges-test-secret-0123456789abcdef",
        "LIVESETTINGS_DATA_DIR": str(tmp_path),
        "LIVESETTINGS_PORT": "0",
    }
    served = _cli("serve", env=env)
    assert served.returncode != 0
    assert "livesettings is running" not in served.stdout
    assert f"refusing to connect as '{scratch.app}'" in served.stderr
    assert f"a member of the role '{role}', which has BYPASSRLS" in served.stderr
    verified = _cli("verify", env=env)
    assert verified.returncode == 1
    assert verified.stdout.startswith(f"FAIL database: refusing to connect as '{scratch.app}'")
    assert "which has BYPASSRLS" in verified.stdout
