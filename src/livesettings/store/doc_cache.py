"""Decoded documents kept between group commits, so a write does not decode its whole document.

Decoding a stored document (its JSON columns, and a JSON Pointer per leaf record) costs time
in proportion to the document; a write changes a few leaves of it. The commit template keeps
the documents it decoded or wrote in a :class:`DocumentCache`, each with a *token*: what the
stored row must still show for the cached copy to be that row's decoding.

- SQLite: the token is the row's raw column values. The commit reads them anyway (a cheap
  ``SELECT``), and a copy is used only when every value is equal to those it was decoded
  from, or written as. Any other writer of the row (a CLI command on the same file, a key
  renewal, an import, a removed user) changes a value, so it is seen by the next commit.
- PostgreSQL: the token is the row version (``xmin``), which every ``INSERT``/``UPDATE``
  changes, whoever makes it (another node, a CLI command). The load sends the cached token and
  the database returns the columns only when the row is a different version.

Copies are shared, never changed: the merge and the planning build new documents (a
:class:`~livesettings.store.base.StoredDocument` is treated as immutable everywhere). Entries
are written only after their transaction committed. The cache is bounded by count and by an
estimate of its documents' memory (least recently used out first). Settings that a plan
validated are marked so: the next plan of that copy walks only the fields the merge changed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from ..paths import Path, to_pointer
from ..records import Record
from .base import StoredDocument
from .codec import document_to_columns, dumps

__all__ = [
    "DECODED_PER_STORED",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DOCUMENTS",
    "CachedDocument",
    "DocumentCache",
    "PendingDocuments",
    "document_columns",
    "records_json",
]

DEFAULT_MAX_DOCUMENTS: Final = 10_000
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
"""Of memory, estimated as :data:`DECODED_PER_STORED` times the documents' stored size."""

DECODED_PER_STORED: Final = 8
"""Bytes of memory a decoded document takes per byte of its stored JSON (measured: 9 for a
document of 2 leaves, 7.5 for 20, 6.7 for 500)."""


@dataclass(frozen=True, slots=True)
class CachedDocument:
    """A decoded document, the token of the row it equals, and the memory it is counted for
    (:data:`DECODED_PER_STORED` times its stored size); ``validated``: its settings came out
    of a plan's validation (not from decoding a row)."""

    document: StoredDocument
    token: Hashable
    size: int
    validated: bool = False


class DocumentCache:
    """Least recently used documents by key (a user id or ``team:<id>``), bounded by count and
    by estimated memory. Used by one thread at a time (the SQLite writer, or the event loop)."""

    def __init__(
        self, max_documents: int = DEFAULT_MAX_DOCUMENTS, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.max_documents = max(0, max_documents)
        self.max_bytes = max(0, max_bytes)
        self._entries: OrderedDict[str, CachedDocument] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: str, token: Hashable) -> StoredDocument | None:
        """The cached document of ``key`` if it was cached with an equal ``token``; a stale
        entry is dropped."""
        entry = self._entries.get(key)
        if entry is not None and entry.token == token:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry.document
        if entry is not None:
            self.forget(key)
        self.misses += 1
        return None

    def token_of(self, key: str) -> Hashable | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.token

    def validated(self, key: str, document: StoredDocument) -> bool:
        """Whether ``document`` is the cached copy of ``key`` and a plan validated it."""
        entry = self._entries.get(key)
        return entry is not None and entry.document is document and entry.validated

    def put(
        self,
        key: str,
        document: StoredDocument,
        token: Hashable,
        stored: int,
        *,
        validated: bool = False,
    ) -> None:
        """Cache ``document`` (``stored``: its row's size in bytes) until ``token`` changes."""
        self.forget(key)
        size = stored * DECODED_PER_STORED
        if size > self.max_bytes or self.max_documents == 0:
            return
        self._entries[key] = CachedDocument(document, token, size, validated)
        self._bytes += size
        while len(self._entries) > self.max_documents or self._bytes > self.max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.size

    def forget(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


class PendingDocuments:
    """What one transaction will cache once it has committed (nothing if it fails)."""

    def __init__(self, cache: DocumentCache | None) -> None:
        self.cache = cache
        self._entries: dict[str, CachedDocument] = {}

    def add(
        self,
        key: str,
        document: StoredDocument,
        token: Hashable,
        stored: int,
        *,
        validated: bool = False,
    ) -> None:
        if self.cache is not None:  # counted in memory when it is put in the cache
            self._entries[key] = CachedDocument(document, token, stored, validated)

    def committed(self) -> None:
        if self.cache is not None:
            for key, entry in self._entries.items():
                self.cache.put(
                    key, entry.document, entry.token, entry.size, validated=entry.validated
                )
        self._entries.clear()

    def failed(self) -> None:
        if self.cache is not None:
            for key in self._entries:
                self.cache.forget(key)
        self._entries.clear()


_pointer: Final = lru_cache(maxsize=1 << 16)(to_pointer)
"""JSON Pointers of leaf paths, remembered: most paths recur write after write."""


def document_columns(doc: StoredDocument) -> dict[str, Any]:
    """:func:`~livesettings.store.codec.document_to_columns`, with the leaf records encoded
    from remembered pointers (the same text)."""
    bare = StoredDocument(
        doc.user_id, doc.revision, doc.settings, {}, doc.updated_at, doc.created_at
    )
    columns = document_to_columns(bare)
    columns["leaf_meta"] = dumps(records_json(doc.records))
    return columns


def records_json(records: Mapping[Path, Record]) -> dict[str, list[Any]]:
    """:func:`~livesettings.store.codec.records_to_json`, from remembered pointers."""
    pointer = _pointer
    return {pointer(path): record.to_json() for path, record in records.items()}
