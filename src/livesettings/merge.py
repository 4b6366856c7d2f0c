"""Revisions, leaf records and the merge rule of DESIGN §3 — pure functions, no I/O.

A document's state is its settings, its revision and one :class:`Record` per leaf path that
was ever written or deleted (a tombstone). :func:`merge` takes one mutation against a state and
returns the new state, the conflicts and the effective patch; the caller stores and publishes
them. Nothing here mutates its inputs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .document import FIELDS, default_for, is_secret_path, mask_patch, mask_secret
from .paths import MISSING, Path, get_at, to_pointer
from .records import Record, RecordIndex, Records

__all__ = [
    "Conflict",
    "DocState",
    "MergeResult",
    "Mutation",
    "Record",
    "clamp_edited_at",
    "effective_base",
    "leaf_edits",
    "merge",
    "settings_diff",
    "state_at",
]

Kept = Literal["theirs", "yours", "partial"]

_DELETE: Final = object()


@dataclass(frozen=True, slots=True)
class Mutation:
    """One client edit: an RFC 7386 patch made on top of ``base_revision``.

    ``base_revision=None`` means "the revision current when it commits" (HTTP without
    ``X-Base-Revision``); ``edited_at`` is the client clock in ms, clamped by :func:`merge`.
    """

    mutation_id: str
    client_id: str
    base_revision: int | None
    patch: dict[str, Any]
    edited_at: int


@dataclass(frozen=True, slots=True)
class Conflict:
    """An edit that met a concurrent one at ``path``; ``kept`` says whose value stayed."""

    path: str
    yours: Any
    theirs: Any
    kept: Kept
    lost_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "path": self.path,
            "yours": self.yours,
            "theirs": self.theirs,
            "kept": self.kept,
        }
        if self.lost_by is not None:
            body["lost_by"] = self.lost_by
        return body


@dataclass(slots=True)
class DocState:
    """A user's document as stored: settings (secrets sealed), revision and leaf records."""

    revision: int = 0
    settings: dict[str, Any] = field(default_factory=lambda: _defaults())
    records: Records = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MergeResult:
    """The outcome of one mutation.

    ``applied`` is False when every leaf lost (or the patch held no leaf): then ``state`` is the
    input state and ``revision`` the current one. ``effective_patch`` is masked; applying it
    (with :func:`livesettings.document.apply_patch`) to the old settings gives the new ones.
    ``inverse_patch`` turns the new non-secret settings back into the old ones (for revert).
    """

    state: DocState
    applied: bool
    revision: int
    conflicts: tuple[Conflict, ...]
    effective_patch: dict[str, Any]
    inverse_patch: dict[str, Any]


def _defaults() -> dict[str, Any]:
    return {name: default_for(name) for name in FIELDS}


def clamp_edited_at(edited_at: int | None, now_ms: int) -> int:
    """The server's view of an edit time: the client's clock clamped to ``[0, now]``."""
    if edited_at is None:
        return now_ms
    return max(0, min(int(edited_at), now_ms))


def effective_base(base_revision: int | None, current: int) -> int:
    """A missing base means "current"; a base from the future is treated as the current one."""
    if base_revision is None or base_revision > current:
        return current
    return max(0, base_revision)


def leaf_edits(patch: Mapping[str, Any], prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Each path the patch sets to a non-object value, or deletes (value ``_DELETE``).

    Empty objects set nothing; each ``api_keys/<name>`` is a leaf whatever its value.
    """
    for key, value in patch.items():
        path = (*prefix, key)
        if value is None:
            yield path, _DELETE
        elif isinstance(value, dict) and not is_secret_path(path):
            yield from leaf_edits(value, path)
        else:
            yield path, value


def _mask_at(path: Path, value: Any) -> Any:
    """A value as it may be shown to a user: secrets masked, MISSING as null."""
    if value is MISSING or value is _DELETE:
        return None
    if is_secret_path(path):
        return mask_secret(value)
    if path == ("api_keys",) and isinstance(value, dict):
        return {name: mask_secret(secret) for name, secret in value.items()}
    return value


def _is_leaf_container(path: Path, node: Any) -> bool:
    """Whether ``node`` at ``path`` is an object we descend into (secrets are leaves)."""
    return isinstance(node, dict) and not is_secret_path(path)


def _leaf_paths(node: Any, path: Path) -> Iterator[Path]:
    if _is_leaf_container(path, node) and path:
        if not node and len(path) > 1:
            return
        for key, child in node.items():
            yield from _leaf_paths(child, (*path, key))
    elif path:
        yield path


class _Work:
    """The mutable copy of a state that one merge builds, copying top-level fields on write."""

    def __init__(self, state: DocState) -> None:
        self.settings = dict(state.settings)
        self.records = RecordIndex(state.records)
        self._copied: set[str] = set()

    def field_for_write(self, name: str) -> Any:
        if name not in self._copied:
            self.settings[name] = copy.deepcopy(self.settings.get(name, default_for(name)))
            self._copied.add(name)
        return self.settings[name]

    def set_value(self, path: Path, value: Any) -> None:
        top = path[0]
        if len(path) == 1:
            self._copied.add(top)
            self.settings[top] = copy.deepcopy(value)
            return
        node = self.field_for_write(top)
        if not isinstance(node, dict):  # cannot happen for valid documents; be safe
            node = {}
            self.settings[top] = node
        for key in path[1:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[path[-1]] = copy.deepcopy(value)

    def delete_value(self, path: Path, keep: list[Path]) -> None:
        """Remove what is under ``path`` except the values at ``keep``; prune empty objects."""
        top = path[0]
        old = get_at(self.settings, path)
        if old is MISSING:
            return
        kept_tree: Any = MISSING
        for kept_path in keep:
            value = get_at(self.settings, kept_path)
            if value is MISSING:
                continue
            if kept_tree is MISSING:
                kept_tree = {}
            node = kept_tree
            for key in kept_path[len(path) : -1]:
                node = node.setdefault(key, {})
            node[kept_path[-1]] = value
        if len(path) == 1:
            self._copied.add(top)
            self.settings[top] = default_for(top) if kept_tree is MISSING else kept_tree
            return
        if kept_tree is not MISSING:
            self.set_value(path, kept_tree)
            return
        node = self.field_for_write(top)
        parents: list[tuple[dict[str, Any], str]] = []
        for key in path[1:-1]:
            parents.append((node, key))
            node = node[key]
        del node[path[-1]]
        # Objects left empty are removed, never the top-level field.
        while parents and not node:
            parent, key = parents.pop()
            del parent[key]
            node = parent


def merge(state: DocState, mutation: Mutation, *, now_ms: int) -> MergeResult:
    """Apply one mutation to ``state`` by the rule of DESIGN §3."""
    base = effective_base(mutation.base_revision, state.revision)
    at = clamp_edited_at(mutation.edited_at, now_ms)
    by = mutation.client_id
    edit_key = (at, by)
    rev = state.revision + 1
    work = _Work(state)
    conflicts: list[Conflict] = []
    won_sets: list[Path] = []
    won_deletes: list[Path] = []

    def concurrent(record: Record) -> bool:
        return record.rev > base and record.by != by

    for path, value in leaf_edits(mutation.patch):
        is_delete = value is _DELETE
        competitors = list(work.records.at_and_above(path))
        under = work.records.under(path)
        if not is_delete:
            competitors.extend(under)
        rivals = [(p, r) for p, r in competitors if concurrent(r)]
        yours = None if is_delete else _mask_at(path, value)
        if any((r.at, r.by) >= edit_key for _, r in rivals):
            conflicts.append(
                Conflict(
                    to_pointer(path), yours, _mask_at(path, get_at(work.settings, path)), "theirs"
                )
            )
            continue

        before = get_at(work.settings, path)
        losers = list(rivals)
        if is_delete:
            keep = [(p, r) for p, r in under if concurrent(r) and (r.at, r.by) >= edit_key]
            kept_paths = {p for p, _ in keep}
            losers.extend((p, r) for p, r in under if concurrent(r) and p not in kept_paths)
            work.delete_value(path, [p for p, r in keep if not r.deleted])
            for p, _ in under:
                if p not in kept_paths:
                    work.records.remove(p)
            won_deletes.append(path)
        else:
            keep = []
            work.set_value(path, value)
            for p, _ in under:
                work.records.remove(p)
            for p, r in list(work.records.at_and_above(path[:-1])):
                if not r.deleted:
                    work.records.remove(p)
            won_sets.append(path)
        work.records.put(path, Record(rev, at, by, deleted=is_delete))

        lost_by = max(losers, key=lambda pr: (pr[1].at, pr[1].by))[1].by if losers else None
        if keep:
            theirs = _mask_at(path, get_at(work.settings, path))
            conflicts.append(Conflict(to_pointer(path), None, theirs, "partial", lost_by))
        elif losers:
            conflicts.append(
                Conflict(to_pointer(path), yours, _mask_at(path, before), "yours", lost_by)
            )

    if not won_sets and not won_deletes:
        return MergeResult(state, False, state.revision, tuple(conflicts), {}, {})

    new_state = DocState(rev, work.settings, work.records.records)
    effective = settings_diff(state.settings, work.settings)
    for path in won_sets:
        _note_unchanged_set(effective, work.settings, path)
    for path in won_deletes:
        _note_empty_delete(effective, state.settings, work.settings, path)
    inverse = settings_diff(
        {k: v for k, v in work.settings.items() if k != "api_keys"},
        {k: v for k, v in state.settings.items() if k != "api_keys"},
    )
    return MergeResult(new_state, True, rev, tuple(conflicts), mask_patch(effective), inverse)


def settings_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch turning ``old`` settings into ``new``; secrets compared as leaves."""
    return _diff(old, new, ())


def _diff(old: Mapping[str, Any], new: Mapping[str, Any], path: Path) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        child = (*path, key)
        previous = old.get(key, MISSING)
        if previous is MISSING:
            patch[key] = copy.deepcopy(value)
        elif _is_leaf_container(child, value) and _is_leaf_container(child, previous):
            sub = _diff(previous, value, child)
            if sub:
                patch[key] = sub
        elif previous != value or type(previous) is not type(value):
            patch[key] = copy.deepcopy(value)
    return patch


def _note_unchanged_set(effective: dict[str, Any], settings: dict[str, Any], path: Path) -> None:
    """A winning write of an unchanged value still shows in the effective patch."""
    node = _holder(effective, path)
    if node is not None and path[-1] not in node:
        node[path[-1]] = get_at(settings, path)


def _holder(patch: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """The object of ``patch`` that holds ``path[-1]``, its missing ancestors created;
    ``None`` when an ancestor is written whole (the value goes with it)."""
    node = patch
    for key in path[:-1]:
        child = node.get(key, MISSING)
        if child is MISSING:
            child = node[key] = {}
        elif not isinstance(child, dict):
            return None
        node = child
    return node


def _note_empty_delete(
    effective: dict[str, Any], old: dict[str, Any], new: dict[str, Any], path: Path
) -> None:
    """A winning delete that found nothing shows as ``null`` at its highest missing ancestor."""
    if len(path) == 1:
        if new.get(path[0]) == default_for(path[0]):
            effective.setdefault(path[0], None)  # a reset: null on a top-level field
        return
    if get_at(old, path) is not MISSING:
        return  # it removed something, which the diff already shows
    node: Any = old
    for end, key in enumerate(path, start=1):
        if not isinstance(node, dict):
            return  # blocked by a non-object value: nothing to say without destroying it
        if key not in node:
            target = path[:end]
            break
        node = node[key]
    else:
        return
    cursor = _holder(effective, target)
    if cursor is not None:
        cursor.setdefault(target[-1], None)


def state_at(settings: Mapping[str, Any], inverses: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-secret settings as they were, given the inverse patches newest first."""
    from .document import apply_patch

    current = {k: copy.deepcopy(v) for k, v in settings.items() if k != "api_keys"}
    for inverse in inverses:
        current = apply_patch(current, inverse)
    current.pop("api_keys", None)
    return current
