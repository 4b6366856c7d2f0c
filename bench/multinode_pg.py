"""The scratch PostgreSQL database of ``bench/multinode.py`` and the pinning of its backends."""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from procs import _cpu_seconds

if TYPE_CHECKING:
    pass

PG_HOST, PG_PORT, SUPERUSER = "127.0.0.1", 5432, "postgres"
_SCAN_INTERVAL = 0.5  # seconds between scans for new PostgreSQL backends to pin


# -- PostgreSQL ---------------------------------------------------------------------------


def _pg_url(role: str, database: str) -> str:
    return f"postgresql://{role}@{PG_HOST}:{PG_PORT}/{database}"


def _superuser_sql(*statements: str, database: str = "postgres") -> list[list[dict[str, Any]]]:
    """Run statements one by one as the superuser on a fresh connection; each one's rows."""

    async def go() -> list[list[dict[str, Any]]]:
        conn = await asyncpg.connect(_pg_url(SUPERUSER, database), timeout=10)
        try:
            return [[dict(r) for r in await conn.fetch(s, timeout=30)] for s in statements]
        finally:
            await conn.close()

    return asyncio.run(go())


@dataclass(frozen=True)
class Database:
    """The scratch database, its owner role and the app role ``setup`` creates."""

    name: str
    owner: str
    app_role: str
    master_keys: str

    @property
    def owner_url(self) -> str:
        """The owner's URL (trust authentication: no password)."""
        return _pg_url(self.owner, self.name)

    @property
    def app_url(self) -> str:
        """The app role's URL, which the nodes use."""
        return _pg_url(self.app_role, self.name)


def create_database() -> Database:
    """A fresh database owned by a fresh non-superuser owner (CREATEROLE, for the app role)."""
    tag = uuid.uuid4().hex[:10]
    db = Database(
        name=f"ls_bench_{tag}",
        owner=f"ls_bench_owner_{tag}",
        app_role=f"ls_bench_app_{tag}",
        master_keys="k1:" + base64.b64encode(os.urandom(32)).decode(),
    )
    _superuser_sql(f'CREATE ROLE "{db.owner}" LOGIN CREATEROLE')
    try:
        _superuser_sql(f'CREATE DATABASE "{db.name}" OWNER "{db.owner}"')
    except BaseException:
        _superuser_sql(f'DROP ROLE IF EXISTS "{db.owner}"')
        raise
    return db


def drop_database(db: Database) -> list[str]:
    """Drop the database (ending whatever is still connected) and both roles; what failed."""
    failed: list[str] = []
    for statement in (
        f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)',
        f'DROP ROLE IF EXISTS "{db.app_role}"',
        f'DROP ROLE IF EXISTS "{db.owner}"',
    ):
        try:
            _superuser_sql(statement)
        except Exception as exc:  # keep going: the roles must go even if the database did not
            failed.append(f"{statement}: {exc!r}")
    return failed


def pg_settings() -> dict[str, str]:
    """The cluster settings that decide what a durable commit costs."""
    names = ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "commit_delay")
    listed = ", ".join(f"'{n}'" for n in names)
    rows = _superuser_sql(
        f"SELECT name, setting FROM pg_catalog.pg_settings WHERE name IN ({listed})"
    )[0]
    return {r["name"]: r["setting"] for r in rows}


class Backends:
    """The PostgreSQL backend processes serving one database: pinned, reniced, CPU read.

    Found by their process title (``postgres: 15/main: <role> <database> <address> …``), so no
    SQL connection of our own is needed and nothing of other people's is touched.
    """

    def __init__(self, database: str, core: int | None, nice: int) -> None:
        self.needle = f" {database} ".encode()
        self.core = core
        self.nice = nice
        self.seen: set[int] = set()
        self.failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pids(self) -> list[int]:
        """The pids of the backends connected to the database now."""
        out: list[int] = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    title = fh.read(512)
            except OSError:
                continue  # ended meanwhile
            if title.startswith(b"postgres: ") and self.needle in title:
                out.append(int(entry.name))
        return out

    def pin_new(self) -> None:
        """Pin and renice the backends not seen before."""
        for pid in self.pids():
            if pid in self.seen:
                continue
            self.seen.add(pid)
            try:
                if self.core is not None:
                    os.sched_setaffinity(pid, {self.core})
                if self.nice:
                    os.setpriority(os.PRIO_PROCESS, pid, self.nice)
            except OSError:
                self.failed += 1

    def cpu(self) -> dict[int, tuple[float, float]]:
        """Per backend: CPU seconds, and seconds spent runnable but waiting for a CPU."""
        return {pid: (_cpu_seconds(pid), _runq_seconds(pid)) for pid in self.pids()}

    def watch(self) -> None:
        """Pin new backends every ``_SCAN_INTERVAL`` until :meth:`close`."""

        def loop() -> None:
            while not self._stop.wait(_SCAN_INTERVAL):
                self.pin_new()

        self.pin_new()
        self._thread = threading.Thread(target=loop, name="pin-backends", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the watcher."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def _runq_seconds(pid: int) -> float:
    """Seconds a (single-threaded) process has waited runnable for a CPU (schedstat)."""
    try:
        with open(f"/proc/{pid}/schedstat") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0
