"""Leaf records (DESIGN §3): who last wrote or deleted each path, and how they are bounded.

A :class:`Record` is kept for every leaf a mutation wrote and, as a tombstone, for every path
it deleted — also paths that never held a value. Unbounded, tombstones would let one user grow
a document's metadata without limit while its values stay empty, and every merge over it
slower. So:

- :class:`RecordIndex` answers "which records lie under this path?" from a prefix index, in
  time proportional to the answer, never by scanning every record;
- :func:`compact_tombstones` drops tombstones older than the retained change log, then the
  oldest ones beyond a per-document byte budget. A tombstone only matters to an edit made
  before it (a concurrent one); edits based that far back are rare and, without it, are
  decided as if the delete had happened earlier.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .paths import Path

__all__ = [
    "RECORD_OVERHEAD",
    "Record",
    "RecordIndex",
    "Records",
    "compact_tombstones",
    "record_bytes",
]

RECORD_OVERHEAD: Final = 32
"""Bytes a record costs besides its path (revision, time, client id, flag) in the budget."""


@dataclass(frozen=True, slots=True)
class Record:
    """Who last wrote (or deleted, ``deleted=True``) a leaf: revision, edit time (ms), client."""

    rev: int
    at: int
    by: str
    deleted: bool = False

    def to_json(self) -> list[Any]:
        return [self.rev, self.at, self.by, 1 if self.deleted else 0]

    @classmethod
    def from_json(cls, raw: list[Any]) -> Record:
        return cls(int(raw[0]), int(raw[1]), str(raw[2]), bool(raw[3]))


Records = dict[Path, Record]


def record_bytes(path: Path, record: Record) -> int:
    """What one record counts toward the tombstone budget: its pointer, client id, overhead."""
    return sum(len(key) + 1 for key in path) + len(record.by) + RECORD_OVERHEAD


class RecordIndex:
    """A mutable copy of a document's records with a prefix index.

    ``under(path)`` lists the records strictly below ``path`` in the order they were added,
    the order a plain scan of the records would give. The index is built on first use.
    """

    def __init__(self, records: Mapping[Path, Record]) -> None:
        self.records: Records = dict(records)
        self._under: dict[Path, dict[Path, None]] | None = None

    def get(self, path: Path) -> Record | None:
        return self.records.get(path)

    def at_and_above(self, path: Path) -> Iterator[tuple[Path, Record]]:
        """The records at ``path`` and at each of its prefixes, shortest first."""
        records = self.records
        for end in range(1, len(path) + 1):
            record = records.get(path[:end])
            if record is not None:
                yield path[:end], record

    def under(self, path: Path) -> list[tuple[Path, Record]]:
        """The records strictly below ``path``."""
        index = self._index()
        below = index.get(path)
        if not below:
            return []
        records = self.records
        return [(p, records[p]) for p in below]

    def put(self, path: Path, record: Record) -> None:
        known = path in self.records
        self.records[path] = record
        if self._under is not None and not known:
            for end in range(1, len(path)):
                self._under.setdefault(path[:end], {})[path] = None

    def remove(self, path: Path) -> None:
        del self.records[path]
        if self._under is not None:
            for end in range(1, len(path)):
                prefix = path[:end]
                below = self._under[prefix]
                del below[path]
                if not below:
                    del self._under[prefix]

    def _index(self) -> dict[Path, dict[Path, None]]:
        if self._under is None:
            index: dict[Path, dict[Path, None]] = {}
            for path in self.records:
                for end in range(1, len(path)):
                    index.setdefault(path[:end], {})[path] = None
            self._under = index
        return self._under


def compact_tombstones(records: Records, *, older_than: int, budget: int) -> Records:
    """``records`` without tombstones of revision ``<= older_than``, and without the oldest
    tombstones beyond ``budget`` bytes (:func:`record_bytes`); values are never dropped.

    Returns ``records`` itself when nothing is dropped.
    """
    tombstones = [(p, r) for p, r in records.items() if r.deleted]
    if not tombstones:
        return records
    drop = {p for p, r in tombstones if r.rev <= older_than}
    kept = [(p, r) for p, r in tombstones if p not in drop]
    size = sum(record_bytes(p, r) for p, r in kept)
    if size > budget:
        # Newest first; the oldest (by revision, then edit time) go first.
        kept.sort(key=lambda pr: (pr[1].rev, pr[1].at, pr[1].by), reverse=True)
        size = 0
        for path, record in kept:
            size += record_bytes(path, record)
            if size > budget:
                drop.add(path)
    if not drop:
        return records
    return {p: r for p, r in records.items() if p not in drop}
