"""A deliberately simple reference model of the merge rule of DESIGN §3, for property tests.

It is written from the text of the DESIGN, not from ``livesettings.merge``, and keeps the
document flat: a dict from leaf path (top-level field included) to value, and a dict from path to
record. A patch is flattened to leaf edits, taken in patch order; each edit is judged against
the records as the earlier edits of the same mutation left them.

The rule, sentence by sentence:

- competitors of an edit at P: the records at P and at every prefix of P, and, for a set, under P;
- a record is concurrent when ``rev > base`` and ``by != client``;
- the edit loses when a concurrent competitor has ``(at, by) >= (edit at, client)``;
- a winning set writes P (dropping the leaves under P and a leaf at a prefix of P), drops the
  records under P and the value records at prefixes of P (tombstones there stay);
- a winning delete removes the leaves at and under P except those whose concurrent record is
  newer than the delete, drops the records it removed under P (a kept tombstone stays too),
  creates nothing, and ``null`` on a top-level field resets it to its default;
- a winner records ``(rev, at, by)`` at P (a tombstone for a delete);
- the revision grows by one iff some edit won; a base above the current revision is the current
  one; ``edited_at`` is clamped to ``[0, now]``.

Conflicts are ``(pointer, kept)`` pairs: ``theirs`` for a lost edit; for a won delete that kept
something, ``partial``; for any other win over a concurrent record (a competitor, or a record the
delete removed under P), ``yours``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "DELETE",
    "RefOutcome",
    "RefRecord",
    "RefState",
    "flatten_patch",
    "flatten_settings",
    "ref_merge",
    "unflatten_settings",
]

Path = tuple[str, ...]

DELETE: Final = object()
"""The value of a leaf edit that deletes its path."""

_SCALAR_DEFAULTS: Final[dict[str, Any]] = {"theme": "light", "language": "en"}
_FIELDS: Final = ("theme", "language", "preferences", "ai_providers", "api_keys")


@dataclass(frozen=True)
class RefRecord:
    """``(rev, at, by)`` of the last write of a path; ``deleted`` for a tombstone."""

    rev: int
    at: int
    by: str
    deleted: bool = False


@dataclass
class RefState:
    """A document as the model sees it: revision, leaves and records, all flat."""

    revision: int = 0
    leaves: dict[Path, Any] = field(default_factory=lambda: _with_defaults({}))
    records: dict[Path, RefRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class RefOutcome:
    """What one mutation does: the new state and the ``(pointer, kept)`` conflicts."""

    state: RefState
    applied: bool
    conflicts: tuple[tuple[str, str], ...]


def _with_defaults(leaves: dict[Path, Any]) -> dict[Path, Any]:
    for name, default in _SCALAR_DEFAULTS.items():
        leaves.setdefault((name,), default)
    return leaves


def _is_secret(path: Path) -> bool:
    return len(path) >= 2 and path[0] == "api_keys"


def _is_proper_prefix(prefix: Path, path: Path) -> bool:
    return len(prefix) < len(path) and path[: len(prefix)] == prefix


def _pointer(path: Path) -> str:
    return "".join("/" + k.replace("~", "~0").replace("/", "~1") for k in path)


def flatten_patch(patch: Mapping[str, Any], prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """The leaf edits of a merge patch: ``(path, value)`` or ``(path, DELETE)``, in order.

    An object sets nothing by itself (an empty one edits nothing); ``api_keys/<name>`` is a leaf.
    """
    for key, value in patch.items():
        path = (*prefix, key)
        if value is None:
            yield path, DELETE
        elif isinstance(value, dict) and not _is_secret(path):
            yield from flatten_patch(value, path)
        else:
            yield path, value


def flatten_settings(settings: Mapping[str, Any]) -> dict[Path, Any]:
    """Nested settings → leaf path → value (empty objects vanish)."""
    leaves: dict[Path, Any] = {}

    def walk(node: Any, path: Path) -> None:
        if isinstance(node, dict) and not _is_secret(path):
            for key, child in node.items():
                walk(child, (*path, key))
        else:
            leaves[path] = node

    for name, value in settings.items():
        walk(value, (name,))
    return _with_defaults(leaves)


def unflatten_settings(leaves: Mapping[Path, Any]) -> dict[str, Any]:
    """Leaf path → value → nested settings holding all five fields."""
    out: dict[str, Any] = {name: {} for name in _FIELDS}
    out.update(_SCALAR_DEFAULTS)
    for path, value in sorted(leaves.items(), key=lambda item: len(item[0])):
        node = out
        for key in path[:-1]:
            child = node.setdefault(key, {})
            assert isinstance(child, dict), f"leaf above {path}"
            node = child
        assert path[-1] not in node or len(path) == 1, f"two leaves at {path}"
        node[path[-1]] = value
    return out


def ref_merge(
    state: RefState,
    *,
    client_id: str,
    base_revision: int | None,
    patch: Mapping[str, Any],
    edited_at: int,
    now_ms: int,
) -> RefOutcome:
    """Apply one mutation to ``state`` by the rule in the module docstring."""
    current = state.revision
    base = current if base_revision is None or base_revision > current else base_revision
    at = max(0, min(edited_at, now_ms))
    by = client_id
    key = (at, by)
    rev = current + 1
    leaves = dict(state.leaves)
    records = dict(state.records)
    conflicts: list[tuple[str, str]] = []
    won = False

    def concurrent(record: RefRecord) -> bool:
        return record.rev > base and record.by != by

    for path, value in flatten_patch(patch):
        is_delete = value is DELETE
        at_or_above = [q for q in records if q == path or _is_proper_prefix(q, path)]
        under = [q for q in records if _is_proper_prefix(path, q)]
        competitors = at_or_above if is_delete else at_or_above + under
        rivals = [q for q in competitors if concurrent(records[q])]
        if any((records[q].at, records[q].by) >= key for q in rivals):
            conflicts.append((_pointer(path), "theirs"))
            continue
        won = True
        if is_delete:
            kept = {
                q for q in under if concurrent(records[q]) and (records[q].at, records[q].by) > key
            }
            removed = [q for q in under if q not in kept]
            beaten = bool(rivals) or any(concurrent(records[q]) for q in removed)
            for leaf in list(leaves):
                if (leaf == path or _is_proper_prefix(path, leaf)) and leaf not in kept:
                    del leaves[leaf]
            for q in removed:
                del records[q]
            records[path] = RefRecord(rev, at, by, deleted=True)
            if kept:
                conflicts.append((_pointer(path), "partial"))
            elif beaten:
                conflicts.append((_pointer(path), "yours"))
        else:
            for leaf in list(leaves):
                if leaf == path or _is_proper_prefix(path, leaf) or _is_proper_prefix(leaf, path):
                    del leaves[leaf]
            leaves[path] = value
            for q in under:
                del records[q]
            for q in at_or_above:
                if q != path and not records[q].deleted:
                    del records[q]
            records[path] = RefRecord(rev, at, by)
            if rivals:
                conflicts.append((_pointer(path), "yours"))
        _with_defaults(leaves)  # a deleted top-level scalar is back at its default

    if not won:
        return RefOutcome(state, False, tuple(conflicts))
    return RefOutcome(RefState(rev, leaves, records), True, tuple(conflicts))
