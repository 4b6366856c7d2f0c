"""Durable storage of documents, change logs, users, tokens and data keys.

:func:`open_store` picks the backend by URL scheme: ``sqlite:///path`` (embedded, the default)
or ``postgresql://…``. A backend's driver is imported only when its scheme is used.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import (
    SCHEMA_VERSION,
    AppliedMutation,
    ChangeRow,
    ChangesPage,
    CommitOutcome,
    ExportedUser,
    PendingMutation,
    RefreshResult,
    Store,
    StoredDocument,
    UserRow,
)

__all__ = [
    "SCHEMA_VERSION",
    "AppliedMutation",
    "ChangeRow",
    "ChangesPage",
    "CommitOutcome",
    "ExportedUser",
    "PendingMutation",
    "RefreshResult",
    "Store",
    "StoredDocument",
    "UserRow",
    "open_store",
]


def open_store(url: str, **kwargs: Any) -> Store:
    """A store for ``url`` (not yet opened: call ``setup()`` and/or ``open()``).

    ``kwargs`` go to the backend (``keyring``, ``limits``, ``schema``, ``changelog_retain``, …).
    """
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore(url, **kwargs)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]

        store: Store = PostgresStore(url, **kwargs)
        return store
    raise ConfigError(
        f"unsupported database URL {url!r}: use sqlite:///path/to/file.db or postgresql://…"
    )
