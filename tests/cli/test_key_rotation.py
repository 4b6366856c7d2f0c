"""`keys rotate --data-keys` and what a rotation leaves behind, on every backend.

Each user gets a new data key (a new id) and every secret is re-sealed under it; writes racing
with the rotation lose nothing; and no old wrapped key stays in the database's files: SQLite's
file and WAL are read byte by byte, PostgreSQL's heap pages through pageinspect (dead row
versions included), which is how the old wrapped keys of a plain re-wrap were found before.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx

from livesettings.auth import TokenIssuer
from livesettings.crypto import Keyring, WrappedKey, open_secret, unwrap_data_key
from livesettings.store import Store, StoredDocument, open_store
from tests.conftest import Backend
from tests.support.postgres import SUPERUSER, sql, url
from tests.support.server import TEST_JWT_SECRET, ServerProcess
from tests.support.users import User, signup

T = TypeVar("T")

SECRET = "sk-rotation-canary-5b8e2d"


def _keys() -> tuple[str, str]:
    old = "old:" + base64.b64encode(os.urandom(32)).decode()
    new = "new:" + base64.b64encode(os.urandom(32)).decode()
    return old, new


def _service_headers() -> dict[str, str]:
    token, _ = TokenIssuer(TEST_JWT_SECRET.encode()).issue("backend", role="service")
    return {"Authorization": f"Bearer {token}"}


def _database_url(backend: Backend, server: ServerProcess) -> str:
    db = backend.databases.get(id(server))
    return f"sqlite:///{server.data_dir / 'livesettings.db'}" if db is None else db.app_url


def _on_store(
    backend: Backend, server: ServerProcess, keys: str, fn: Callable[[Store], Awaitable[T]]
) -> T:
    async def go() -> T:
        store = open_store(_database_url(backend, server), keyring=Keyring.parse(keys))
        try:
            await store.open()
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


def _state(
    backend: Backend, server: ServerProcess, keys: str, users: list[str]
) -> dict[str, tuple[WrappedKey, StoredDocument]]:
    async def read(store: Store) -> dict[str, tuple[WrappedKey, StoredDocument]]:
        out = {}
        for user_id in users:
            wrapped = await store.get_wrapped_key(user_id)
            assert wrapped is not None
            out[user_id] = (wrapped, await store.get_document(user_id))
        return out

    return _on_store(backend, server, keys, read)


def _rotate(
    backend: Backend, server: ServerProcess, keys: str, *args: str, owner: bool = True
) -> subprocess.CompletedProcess[str]:
    """``livesettings keys rotate`` as an operator runs it (PostgreSQL: the owner's URL too,
    unless ``owner`` is false)."""
    env = {**server.env(), "LIVESETTINGS_MASTER_KEYS": keys}
    db = backend.databases.get(id(server))
    if db is not None and owner:
        env["LIVESETTINGS_ADMIN_DATABASE_URL"] = db.owner_url
    return subprocess.run(
        [sys.executable, "-m", "livesettings", "keys", "rotate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _pages(database: str, relation: str) -> bytes:
    """The raw heap pages of ``relation`` (pageinspect, as the superuser)."""
    on_db = url(SUPERUSER, database)
    sql("CREATE EXTENSION IF NOT EXISTS pageinspect", url=on_db)
    pages = sql(
        "SELECT pg_catalog.string_agg(public.get_raw_page($1::text, n::int), ''::bytea "
        "ORDER BY n) AS raw FROM pg_catalog.generate_series(0, pg_catalog.pg_relation_size("
        "$1::text::regclass) / pg_catalog.current_setting('block_size')::int - 1) AS n",
        relation,
        url=on_db,
    )
    return bytes(pages[0]["raw"] or b"")


def _raw_key_storage(backend: Backend, server: ServerProcess) -> bytes:
    """Every byte that may hold a wrapped key: SQLite's database file and WAL; PostgreSQL's
    heap pages of ``data_keys`` and ``pg_statistic`` (ANALYZE samples column values),
    dead row versions included."""
    db = backend.databases.get(id(server))
    if db is None:
        files = [server.data_dir / name for name in ("livesettings.db", "livesettings.db-wal")]
        return b"".join(path.read_bytes() for path in files if path.exists())
    return _pages(db.name, "public.data_keys") + _pages(db.name, "pg_catalog.pg_statistic")


def _analyze(backend: Backend, server: ServerProcess) -> bytes:
    """PostgreSQL: sample ``data_keys`` into ``pg_statistic`` now (autovacuum would, later);
    the raw bytes of ``pg_statistic`` afterwards."""
    db = backend.databases[id(server)]
    sql("ANALYZE public.data_keys", url=url(SUPERUSER, db.name))
    return _pages(db.name, "pg_catalog.pg_statistic")


def _write_secrets(server: ServerProcess, count: int) -> list[User]:
    users = []
    with server.client() as http:
        for n in range(count):
            user = signup(http)
            r = http.patch(
                "/v1/settings",
                json={
                    "theme": "dark",
                    "api_keys": {"a": f"{SECRET}-{n}-a", "b": f"{SECRET}-{n}-b"},
                },
                headers=user.headers,
            )
            assert r.status_code == 200, r.text
            users.append(user)
        # A user without secrets has no data key: the rotation leaves it alone.
        other = signup(http)
        r = http.patch("/v1/settings", json={"theme": "light"}, headers=other.headers)
        assert r.status_code == 200, r.text
    return users


def test_data_key_rotation_reseals_every_secret_and_leaves_no_old_key(
    backend: Backend, tmp_path: Path
) -> None:
    old, new = _keys()
    server = backend.server(tmp_path / "data", master_keys=old)
    server.start()
    try:
        users = _write_secrets(server, 3)
    finally:
        server.stop()
    ids = [user.user_id for user in users]
    before = _state(backend, server, old, ids)
    raw = _raw_key_storage(backend, server)
    # The check below can fail: the wrapped keys are in these bytes now.
    assert all(wrapped.blob.encode() in raw for wrapped, _ in before.values())

    done = _rotate(backend, server, f"{new},{old}", "--data-keys")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == [
        "-    active master key: new",
        "ok   new data keys: 3 users, 6 secrets re-sealed",
        "-    data keys: new: 3",
    ]
    assert "ok   old: wraps no data key now; it can be removed from the keyring" in lines
    assert lines[-1] == "rotation complete: every user has a new data key, under new"
    assert "warn" not in done.stdout
    assert SECRET not in done.stdout + done.stderr

    after = _state(backend, server, new, ids)
    for n, user_id in enumerate(ids):
        (old_wrapped, old_doc), (wrapped, doc) = before[user_id], after[user_id]
        assert wrapped.id != old_wrapped.id
        assert wrapped.master_key_id == "new"
        key = unwrap_data_key(Keyring.parse(new), user_id, wrapped)
        for name in "ab":
            envelope, old_envelope = (
                doc.settings["api_keys"][name],
                old_doc.settings["api_keys"][name],
            )
            assert envelope["kid"] == wrapped.id
            assert envelope["ct"] != old_envelope["ct"]
            # What the masked view shows is unchanged.
            assert (envelope["last4"], envelope["updated_at"]) == (
                old_envelope["last4"],
                old_envelope["updated_at"],
            )
            assert open_secret(user_id, name, envelope, key) == f"{SECRET}-{n}-{name}"
        assert doc.revision == old_doc.revision  # no new revision: the values did not change
    raw = _raw_key_storage(backend, server)
    for wrapped, _ in before.values():
        assert wrapped.blob.encode() not in raw
    for wrapped, _ in after.values():
        assert wrapped.blob.encode() in raw

    # The server, with only the new master key, serves every secret.
    server.settings["master_keys"] = new
    server.start()
    try:
        with server.client() as http:
            for n, user_id in enumerate(ids):
                r = http.get(f"/v1/users/{user_id}/secrets/b", headers=_service_headers())
                assert (r.status_code, r.json()["value"]) == (200, f"{SECRET}-{n}-b"), r.text
    finally:
        server.stop()


def test_a_master_key_rotation_vacuums_the_old_wrapped_keys_away(
    backend: Backend, tmp_path: Path
) -> None:
    """While a server runs: SQLite's WAL then outlives the rotation, with old page images."""
    old, new = _keys()
    server = backend.server(tmp_path / "data", master_keys=f"{old},{new}")
    server.start()
    try:
        users = _write_secrets(server, 2)
        ids = [user.user_id for user in users]
        before = _state(backend, server, old, ids)
        postgres = id(server) in backend.databases
        if postgres:
            # The statistics hold samples of the wrapped keys: they must go too.
            statistics = _analyze(backend, server)
            assert any(wrapped.blob.encode() in statistics for wrapped, _ in before.values())
        raw = _raw_key_storage(backend, server)
        assert all(wrapped.blob.encode() in raw for wrapped, _ in before.values())
        if postgres:
            # Without the owner's URL the app role cannot vacuum: the old keys stay in dead
            # row versions, and the command says so.
            done = _rotate(backend, server, f"{new},{old}", owner=False)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "warn old key material: old wrapped data keys stay in dead row versions" in (
                done.stdout
            )
            raw = _raw_key_storage(backend, server)
            assert all(wrapped.blob.encode() in raw for wrapped, _ in before.values())
        done = _rotate(backend, server, f"{new},{old}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "warn" not in done.stdout
        after = _state(backend, server, new, ids)
        assert [w.id for w, _ in after.values()] == [w.id for w, _ in before.values()]
        assert {w.master_key_id for w, _ in after.values()} == {"new"}
        raw = _raw_key_storage(backend, server)
        for wrapped, _ in before.values():
            assert wrapped.blob.encode() not in raw
        if postgres:
            db = backend.databases[id(server)]
            dead = sql(
                "SELECT n_dead_tup FROM pg_catalog.pg_stat_user_tables WHERE relname = 'data_keys'",
                url=url(SUPERUSER, db.name),
            )
            assert dead == [{"n_dead_tup": 0}]
        # The running server still opens every secret.
        with server.client() as http:
            r = http.get(f"/v1/users/{ids[0]}/secrets/a", headers=_service_headers())
            assert (r.status_code, r.json()["value"]) == (200, f"{SECRET}-0-a"), r.text
    finally:
        server.stop()


def test_writes_racing_with_a_data_key_rotation_lose_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    old, new = _keys()
    server = backend.server(tmp_path / "data", master_keys=f"{new},{old}")
    server.start()
    try:
        with server.client() as http:
            users = [signup(http) for _ in range(4)]
        last: dict[str, str] = {}
        errors: list[str] = []
        stop = threading.Event()

        def write(user: User) -> None:
            with httpx.Client(base_url=server.url, timeout=30.0) as http:
                n = 0
                while not stop.is_set() or n < 3:
                    value = f"{SECRET}-{user.user_id[:8]}-{n:05d}"
                    r = http.patch(
                        "/v1/settings",
                        json={"api_keys": {"main": value, f"k{n % 3}": value}},
                        headers=user.headers,
                    )
                    if r.status_code == 200:
                        last[user.user_id] = value
                    elif r.status_code != 429:
                        errors.append(r.text)
                    n += 1

        threads = [threading.Thread(target=write, args=(user,)) for user in users]
        for thread in threads:
            thread.start()
        try:
            done = _rotate(backend, server, f"{new},{old}", "--data-keys")
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert errors == []
        ids = [user.user_id for user in users]
        state = _state(backend, server, new, ids)
        with server.client() as http:
            for user_id in ids:
                r = http.get(f"/v1/users/{user_id}/secrets/main", headers=_service_headers())
                assert (r.status_code, r.json()["value"]) == (200, last[user_id]), r.text
                wrapped, doc = state[user_id]
                # Every secret, whoever wrote it last, is sealed under the current key.
                assert {env["kid"] for env in doc.settings["api_keys"].values()} == {wrapped.id}
    finally:
        server.stop()
