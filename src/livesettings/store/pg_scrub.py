"""Leaving no old secret in PostgreSQL's files: rewrites after setup adopted rows, and after a
key rotation. The WAL and backups keep old values until they are recycled.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

__all__ = ["SCRUB_LOCK_TIMEOUT", "SCRUB_STATEMENT", "scrub_after_setup", "scrub_key_tables"]

SCRUB_STATEMENT: Final = "VACUUM (FULL, ANALYZE) public.user_preferences"
"""What setup runs after its commit when it rewrote rows (a dry run shows it too)."""

SCRUB_LOCK_TIMEOUT: Final = "5s"
"""How long a rewrite waits for a table lock: serve's queries must not queue behind it."""

SNAPSHOT_WAIT_S: Final = 5.0
"""How long a rewrite waits for older snapshots in the database to end (see below)."""


SNAPSHOT_ROUNDS: Final = 3
"""How many times a rewrite is made when older snapshots outlived the wait."""


async def _after_older_snapshots(conn: Any) -> bool:
    """Wait (briefly) until no other session of this database holds a snapshot; whether none
    did by the end of the wait.

    VACUUM FULL copies row versions that a snapshot still open elsewhere might see ("recently
    dead"), so a rewrite made while, say, an autovacuum ANALYZE of a catalog runs would keep
    the very row versions it is meant to remove. Sessions between statements hold none.

    A session in a transaction holds the lock of its virtual transaction id, which
    ``pg_locks`` shows to every role (``pg_stat_activity.backend_xmin`` is hidden from a
    database owner for other roles' sessions, such as the app role's).
    """
    deadline = time.monotonic() + SNAPSHOT_WAIT_S
    while time.monotonic() < deadline:
        busy = await conn.fetchval(
            "SELECT count(*) FROM pg_catalog.pg_locks l "
            "JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'virtualxid' AND l.granted AND l.pid <> pg_backend_pid() "
            "AND a.datname = current_database()"
        )
        if not busy:
            return True
        await asyncio.sleep(0.05)
    return False


async def _rewrite(conn: Any, statement: str) -> None:
    """Run a rewrite once no older snapshot is open; when one outlived the wait (a loaded
    machine, a long query), the copy may have kept row versions it could see, so the rewrite
    is made again, up to ``SNAPSHOT_ROUNDS`` times."""
    for _ in range(SNAPSHOT_ROUNDS):
        quiet = await _after_older_snapshots(conn)
        await conn.execute(statement)
        if quiet:
            return


async def _rewrite_statistics(conn: Any, *, rewrote: str, kept: str) -> str:
    """Rewrite ``pg_statistic`` if the current user may (the database owner or a superuser);
    the report line, ``rewrote`` or ``kept`` completing it."""
    allowed = await conn.fetchval(
        "SELECT r.rolsuper OR pg_catalog.pg_has_role(current_user, d.datdba, 'USAGE') "
        "FROM pg_catalog.pg_roles r, pg_catalog.pg_database d "
        "WHERE r.rolname = current_user AND d.datname = current_database()"
    )
    if not allowed:
        return "warning: only the database owner or a superuser can rewrite pg_statistic; " + kept
    await _rewrite(conn, "VACUUM FULL pg_catalog.pg_statistic")
    return "rewrote pg_statistic" + rewrote


async def scrub_after_setup(conn: Any) -> list[str]:
    """After rows were rewritten: leave no old version of them (plaintext API keys of a seed)
    in the table's files, nor in the column statistics ANALYZE may have sampled earlier.

    VACUUM cannot run in a transaction, so this follows setup's commit. The WAL and backups
    keep old values until they are recycled.
    """
    await _rewrite(conn, SCRUB_STATEMENT)
    lines = [
        "rewrote user_preferences (VACUUM FULL): no dead row version keeps an old value "
        "such as a plaintext API key"
    ]
    # ANALYZE just replaced the table's statistics; the old rows may hold sampled values.
    lines.append(
        await _rewrite_statistics(
            conn,
            rewrote=" (VACUUM FULL): no statistic sampled before keeps one",
            kept="statistics sampled before setup may keep old values until it is vacuumed",
        )
    )
    return lines


async def scrub_key_tables(conn: Any, *, documents: bool) -> list[str]:
    """See :meth:`~livesettings.store.postgres.PostgresStore.scrub_key_tables`; ``conn`` is
    the owner's (``LockNotAvailableError`` when a table stayed locked)."""
    if not await conn.fetchval(
        "SELECT r.rolsuper OR pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') "
        "FROM pg_catalog.pg_roles r, pg_catalog.pg_class c WHERE r.rolname = current_user "
        "AND c.oid = 'public.data_keys'::regclass"
    ):
        return [
            "warning: old wrapped data keys stay in dead row versions of data_keys until "
            "the table is vacuumed; set LIVESETTINGS_ADMIN_DATABASE_URL (the owner "
            "setup runs as) and run this again to rewrite it now"
        ]
    # A long transaction must not make serve's queries queue behind VACUUM FULL.
    await conn.execute(f"SET lock_timeout = '{SCRUB_LOCK_TIMEOUT}'")
    await _rewrite(conn, "VACUUM (FULL, ANALYZE) public.data_keys")
    lines = ["rewrote data_keys (VACUUM FULL): no dead row version keeps an old key"]
    if documents:
        await conn.execute("VACUUM (ANALYZE) public.user_preferences")
        lines.append("vacuumed user_preferences: dead row versions removed")
    lines.append(
        await _rewrite_statistics(
            conn,
            rewrote=": no statistic sampled before keeps an old key",
            kept="statistics sampled before the rotation may keep old wrapped keys until "
            "it is vacuumed",
        )
    )
    return lines
