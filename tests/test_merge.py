"""Unit tests of the merge rule (DESIGN §3) with exact documents, records and conflicts.

Each test plays one named case of the rule through :func:`livesettings.merge.merge` and
asserts the whole outcome: settings, leaf records, conflicts (as sent on the wire), revision,
effective patch and inverse patch. Clients are ``amy`` < ``bob`` < ``cat`` < ``dan`` in string
order, which decides ties of equal edit times. The property tests of the same rule live in
``test_merge_properties.py``.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Final

import pytest

from livesettings.document import apply_patch, default_document
from livesettings.errors import BadRequest
from livesettings.merge import (
    Conflict,
    DocState,
    MergeResult,
    Mutation,
    Record,
    clamp_edited_at,
    effective_base,
    leaf_edits,
    merge,
    settings_diff,
    state_at,
)
from livesettings.paths import Path, from_pointer
from livesettings.server.headers import parse_if_match

NOW: Final = 1_000_000
UPDATED: Final = "2026-11-28T17:01:19.123Z"
RFC3339_MS: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


# --- helpers --------------------------------------------------------------------------------


def V(rev: int, at: int, by: str) -> Record:
    """A value record."""
    return Record(rev, at, by)


def T(rev: int, at: int, by: str) -> Record:
    """A tombstone."""
    return Record(rev, at, by, deleted=True)


def recs(entries: dict[str, Record]) -> dict[Path, Record]:
    """Records keyed by JSON Pointer, for readability, turned into the engine's path keys."""
    return {from_pointer(pointer): record for pointer, record in entries.items()}


def doc(**fields: Any) -> dict[str, Any]:
    """A full settings document: the defaults with ``fields`` replaced."""
    settings = default_document()
    settings.update(fields)
    return settings


def state(revision: int = 0, records: dict[str, Record] | None = None, **fields: Any) -> DocState:
    return DocState(revision, doc(**fields), recs(records or {}))


def edit(
    before: DocState,
    by: str,
    base: int | None,
    patch: dict[str, Any],
    at: int,
    *,
    now: int = NOW,
) -> MergeResult:
    """Merge one mutation of client ``by``, made at ``at`` on top of revision ``base``."""
    return merge(before, Mutation(f"{by}-{at}", by, base, patch, at), now_ms=now)


def conflicts(result: MergeResult) -> list[dict[str, Any]]:
    return [conflict.to_json() for conflict in result.conflicts]


def sealed(last4: str | None) -> dict[str, Any]:
    """A sealed secret envelope as the store keeps it (the ciphertext is a stand-in)."""
    return {
        "$sealed": 1,
        "kid": "dk1",
        "nonce": "bm9uY2Vub25jZQ==",
        "ct": "Y2lwaGVydGV4dA==",
        "updated_at": UPDATED,
        "last4": last4,
    }


def masked(last4: str | None) -> dict[str, Any]:
    """What a client sees of :func:`sealed`."""
    if last4 is None:
        return {"set": True, "updated_at": UPDATED}
    return {"set": True, "last4": last4, "updated_at": UPDATED}


def assert_replays(before: DocState, result: MergeResult) -> None:
    """The effective patch turns the old settings into the new ones, the inverse back."""
    new = result.state.settings
    assert apply_patch(before.settings, result.effective_patch) == new
    old_plain = {k: v for k, v in before.settings.items() if k != "api_keys"}
    new_plain = {k: v for k, v in new.items() if k != "api_keys"}
    assert apply_patch(new_plain, result.inverse_patch) == old_plain


# --- sets and deletes of leaves -------------------------------------------------------------


def test_set_leaves_on_a_fresh_document() -> None:
    before = DocState()
    result = edit(before, "amy", 0, {"theme": "dark", "preferences": {"fontSize": 14}}, 100)
    assert result.applied is True
    assert result.revision == 1
    assert result.state.revision == 1
    assert result.state.settings == doc(theme="dark", preferences={"fontSize": 14})
    assert result.state.records == recs(
        {"/theme": V(1, 100, "amy"), "/preferences/fontSize": V(1, 100, "amy")}
    )
    assert conflicts(result) == []
    assert result.effective_patch == {"theme": "dark", "preferences": {"fontSize": 14}}
    assert result.inverse_patch == {"theme": "light", "preferences": {"fontSize": None}}
    assert_replays(before, result)


def test_delete_a_leaf_leaves_a_tombstone() -> None:
    before = state(
        3,
        {"/preferences/a": V(2, 50, "bob"), "/preferences/b": V(3, 60, "bob")},
        preferences={"a": 1, "b": 2},
    )
    result = edit(before, "amy", 3, {"preferences": {"a": None}}, 100)
    assert result.applied is True
    assert result.revision == 4
    assert result.state.settings == doc(preferences={"b": 2})
    assert result.state.records == recs(
        {"/preferences/a": T(4, 100, "amy"), "/preferences/b": V(3, 60, "bob")}
    )
    assert conflicts(result) == []
    assert result.effective_patch == {"preferences": {"a": None}}
    assert result.inverse_patch == {"preferences": {"a": 1}}
    assert_replays(before, result)


def test_a_set_creates_the_objects_above_its_path() -> None:
    before = state(2, preferences={"z": 1})
    result = edit(before, "amy", 2, {"preferences": {"editor": {"font": {"size": 12}}}}, 100)
    assert result.state.settings == doc(preferences={"z": 1, "editor": {"font": {"size": 12}}})
    # Only the leaf gets a record; the objects created above it get none.
    assert result.state.records == recs({"/preferences/editor/font/size": V(3, 100, "amy")})
    assert result.effective_patch == {"preferences": {"editor": {"font": {"size": 12}}}}
    assert result.inverse_patch == {"preferences": {"editor": None}}
    assert_replays(before, result)


def test_a_set_replaces_a_non_object_at_a_prefix_and_drops_its_record() -> None:
    before = state(1, {"/preferences/editor": V(1, 10, "bob")}, preferences={"editor": "vim"})
    result = edit(before, "amy", 1, {"preferences": {"editor": {"keys": "emacs"}}}, 20)
    assert result.applied is True
    assert result.state.settings == doc(preferences={"editor": {"keys": "emacs"}})
    assert result.state.records == recs({"/preferences/editor/keys": V(2, 20, "amy")})
    assert conflicts(result) == []  # bob's value was part of amy's view (base 1)
    assert result.effective_patch == {"preferences": {"editor": {"keys": "emacs"}}}
    assert result.inverse_patch == {"preferences": {"editor": "vim"}}
    assert_replays(before, result)


def test_a_set_replacing_a_concurrent_older_value_at_a_prefix_reports_it() -> None:
    before = state(1, {"/preferences/editor": V(1, 10, "bob")}, preferences={"editor": "vim"})
    result = edit(before, "amy", 0, {"preferences": {"editor": {"keys": "emacs"}}}, 20)
    assert result.state.settings == doc(preferences={"editor": {"keys": "emacs"}})
    assert result.state.records == recs({"/preferences/editor/keys": V(2, 20, "amy")})
    assert conflicts(result) == [
        {
            "path": "/preferences/editor/keys",
            "yours": "emacs",
            "theirs": None,
            "kept": "yours",
            "lost_by": "bob",
        }
    ]


def test_a_set_under_a_concurrent_newer_value_at_a_prefix_loses() -> None:
    before = state(1, {"/preferences/editor": V(1, 30, "bob")}, preferences={"editor": "vim"})
    result = edit(before, "amy", 0, {"preferences": {"editor": {"keys": "emacs"}}}, 20)
    assert result.applied is False
    assert result.revision == 1
    assert result.state is before
    assert conflicts(result) == [
        {"path": "/preferences/editor/keys", "yours": "emacs", "theirs": None, "kept": "theirs"}
    ]


def test_an_object_valued_patch_is_flattened_into_leaves() -> None:
    before = state(
        1,
        {"/preferences/editor/font": V(1, 10, "bob"), "/preferences/editor/tabs": V(1, 10, "bob")},
        preferences={"editor": {"font": "mono", "tabs": 2}},
    )
    patch = {"preferences": {"editor": {"tabs": 4, "wrap": True}}}
    assert list(leaf_edits(patch)) == [
        (("preferences", "editor", "tabs"), 4),
        (("preferences", "editor", "wrap"), True),
    ]
    result = edit(before, "amy", 1, patch, 20)
    # A merge patch, not a replacement: "font" stays.
    assert result.state.settings == doc(
        preferences={"editor": {"font": "mono", "tabs": 4, "wrap": True}}
    )
    assert result.state.records == recs(
        {
            "/preferences/editor/font": V(1, 10, "bob"),
            "/preferences/editor/tabs": V(2, 20, "amy"),
            "/preferences/editor/wrap": V(2, 20, "amy"),
        }
    )
    assert result.effective_patch == {"preferences": {"editor": {"tabs": 4, "wrap": True}}}
    assert result.inverse_patch == {"preferences": {"editor": {"tabs": 2, "wrap": None}}}
    assert_replays(before, result)


def test_a_set_of_a_value_over_an_object_drops_the_records_under_it() -> None:
    before = state(
        1,
        {"/preferences/editor/font": V(1, 10, "bob"), "/preferences/editor/tabs": T(1, 10, "bob")},
        preferences={"editor": {"font": "mono"}},
    )
    result = edit(before, "amy", 1, {"preferences": {"editor": "nano"}}, 20)
    assert result.state.settings == doc(preferences={"editor": "nano"})
    assert result.state.records == recs({"/preferences/editor": V(2, 20, "amy")})
    assert result.effective_patch == {"preferences": {"editor": "nano"}}
    assert result.inverse_patch == {"preferences": {"editor": {"font": "mono"}}}
    assert_replays(before, result)


def test_empty_objects_in_a_patch_create_nothing() -> None:
    before = state(2, preferences={"z": 1})
    patch: dict[str, Any] = {"preferences": {"a": {}, "b": {"c": {}}}, "ai_providers": {}}
    assert list(leaf_edits(patch)) == []
    result = edit(before, "amy", 2, patch, 100)
    # No leaf, so nothing won: no revision.
    assert result.applied is False
    assert result.revision == 2
    assert result.state is before
    assert conflicts(result) == []
    assert result.effective_patch == {}
    assert result.inverse_patch == {}


def test_empty_objects_beside_a_leaf_create_nothing() -> None:
    before = state(2, preferences={"z": 1})
    result = edit(before, "amy", 2, {"preferences": {"a": {}, "b": 1}}, 100)
    assert result.revision == 3
    assert result.state.settings == doc(preferences={"z": 1, "b": 1})
    assert result.state.records == recs({"/preferences/b": V(3, 100, "amy")})
    assert result.effective_patch == {"preferences": {"b": 1}}


def test_values_without_a_record_count_as_revision_zero() -> None:
    before = state(5, preferences={"a": 1})  # imported: no records
    result = edit(before, "amy", 0, {"preferences": {"a": 2}}, 0)
    assert result.applied is True
    assert conflicts(result) == []
    assert result.state.settings == doc(preferences={"a": 2})
    assert result.state.records == recs({"/preferences/a": V(6, 0, "amy")})


def test_edits_to_different_leaves_never_conflict() -> None:
    start = state(1, {"/preferences/a": V(1, 10, "cat")}, preferences={"a": 0})
    first = edit(start, "amy", 1, {"preferences": {"a": 1}, "theme": "dark"}, 90)
    second = edit(first.state, "bob", 1, {"preferences": {"b": 2}, "language": "fr"}, 10)
    assert conflicts(first) == []
    assert conflicts(second) == []
    assert second.revision == 3
    assert second.state.settings == doc(theme="dark", language="fr", preferences={"a": 1, "b": 2})
    assert second.state.records == recs(
        {
            "/preferences/a": V(2, 90, "amy"),
            "/theme": V(2, 90, "amy"),
            "/preferences/b": V(3, 10, "bob"),
            "/language": V(3, 10, "bob"),
        }
    )


# --- a delete of an object against writes under it --------------------------------------------

EDITOR: Final = state(
    1, {"/preferences/editor/font": V(1, 10, "cat")}, preferences={"editor": {"font": "mono"}}
)


def test_delete_of_an_object_then_a_later_concurrent_write_under_it() -> None:
    deleted = edit(EDITOR, "amy", 1, {"preferences": {"editor": None}}, 20)
    assert deleted.revision == 2
    assert deleted.state.settings == doc(preferences={})
    assert deleted.state.records == recs({"/preferences/editor": T(2, 20, "amy")})
    assert conflicts(deleted) == []
    assert deleted.effective_patch == {"preferences": {"editor": None}}

    # bob's later write wins over amy's older concurrent tombstone, which stays.
    written = edit(deleted.state, "bob", 1, {"preferences": {"editor": {"wrap": True}}}, 30)
    assert written.applied is True
    assert written.revision == 3
    assert written.state.settings == doc(preferences={"editor": {"wrap": True}})
    assert written.state.records == recs(
        {"/preferences/editor": T(2, 20, "amy"), "/preferences/editor/wrap": V(3, 30, "bob")}
    )
    assert conflicts(written) == [
        {
            "path": "/preferences/editor/wrap",
            "yours": True,
            "theirs": None,
            "kept": "yours",
            "lost_by": "amy",
        }
    ]
    assert written.effective_patch == {"preferences": {"editor": {"wrap": True}}}
    assert written.inverse_patch == {"preferences": {"editor": None}}
    assert_replays(deleted.state, written)


def test_a_later_concurrent_write_under_an_object_then_its_delete() -> None:
    written = edit(EDITOR, "bob", 1, {"preferences": {"editor": {"wrap": True}}}, 30)
    assert written.state.settings == doc(preferences={"editor": {"font": "mono", "wrap": True}})
    assert conflicts(written) == []

    # amy's delete wins (nothing at or above its path is concurrent) but keeps bob's newer
    # concurrent record under it: a partial delete.
    deleted = edit(written.state, "amy", 1, {"preferences": {"editor": None}}, 20)
    assert deleted.applied is True
    assert deleted.revision == 3
    assert deleted.state.settings == doc(preferences={"editor": {"wrap": True}})
    assert deleted.state.records == recs(
        {"/preferences/editor": T(3, 20, "amy"), "/preferences/editor/wrap": V(2, 30, "bob")}
    )
    assert conflicts(deleted) == [
        {"path": "/preferences/editor", "yours": None, "theirs": {"wrap": True}, "kept": "partial"}
    ]
    assert deleted.effective_patch == {"preferences": {"editor": {"font": None}}}
    assert deleted.inverse_patch == {"preferences": {"editor": {"font": "mono"}}}
    assert_replays(written.state, deleted)


def test_a_delete_that_keeps_everything_under_it_changes_nothing_but_wins() -> None:
    written = edit(state(), "bob", 0, {"preferences": {"editor": {"wrap": True}}}, 30)
    deleted = edit(written.state, "amy", 0, {"preferences": {"editor": None}}, 20)
    assert deleted.applied is True
    assert deleted.revision == 2
    assert deleted.state.settings == doc(preferences={"editor": {"wrap": True}})
    assert deleted.state.records == recs(
        {"/preferences/editor": T(2, 20, "amy"), "/preferences/editor/wrap": V(1, 30, "bob")}
    )
    assert conflicts(deleted) == [
        {"path": "/preferences/editor", "yours": None, "theirs": {"wrap": True}, "kept": "partial"}
    ]
    assert deleted.effective_patch == {}
    assert_replays(written.state, deleted)


def test_a_write_under_a_newer_concurrent_tombstone_loses() -> None:
    deleted = edit(EDITOR, "amy", 1, {"preferences": {"editor": None}}, 30)
    result = edit(deleted.state, "bob", 1, {"preferences": {"editor": {"wrap": True}}}, 20)
    assert result.applied is False
    assert result.revision == 2
    assert result.state is deleted.state
    assert result.state.settings == doc(preferences={})
    assert conflicts(result) == [
        {"path": "/preferences/editor/wrap", "yours": True, "theirs": None, "kept": "theirs"}
    ]
    assert result.effective_patch == {}
    assert result.inverse_patch == {}


def test_a_newer_delete_removes_an_older_concurrent_write_under_it() -> None:
    written = edit(EDITOR, "bob", 1, {"preferences": {"editor": {"wrap": True}}}, 20)
    deleted = edit(written.state, "amy", 1, {"preferences": {"editor": None}}, 30)
    assert deleted.applied is True
    assert deleted.state.settings == doc(preferences={})
    assert deleted.state.records == recs({"/preferences/editor": T(3, 30, "amy")})
    assert conflicts(deleted) == [
        {
            "path": "/preferences/editor",
            "yours": None,
            "theirs": {"font": "mono", "wrap": True},
            "kept": "yours",
            "lost_by": "bob",
        }
    ]
    assert deleted.effective_patch == {"preferences": {"editor": None}}
    assert_replays(written.state, deleted)


def test_a_partial_delete_keeps_deep_newer_records_and_names_the_older_loser() -> None:
    start = state(
        1,
        {
            "/preferences/a/b/c": V(1, 10, "cat"),
            "/preferences/a/b/d": V(1, 10, "cat"),
            "/preferences/a/e": V(1, 10, "cat"),
        },
        preferences={"a": {"b": {"c": 1, "d": 2}, "e": 3}, "z": 0},
    )
    newer = edit(start, "bob", 1, {"preferences": {"a": {"b": {"d": 20}}}}, 50)
    older = edit(newer.state, "dan", 1, {"preferences": {"a": {"e": 4}}}, 30)
    deleted = edit(older.state, "amy", 1, {"preferences": {"a": None}}, 40)
    assert deleted.revision == 4
    assert deleted.state.settings == doc(preferences={"a": {"b": {"d": 20}}, "z": 0})
    assert deleted.state.records == recs(
        {"/preferences/a": T(4, 40, "amy"), "/preferences/a/b/d": V(2, 50, "bob")}
    )
    assert conflicts(deleted) == [
        {
            "path": "/preferences/a",
            "yours": None,
            "theirs": {"b": {"d": 20}},
            "kept": "partial",
            "lost_by": "dan",
        }
    ]
    assert deleted.effective_patch == {"preferences": {"a": {"b": {"c": None}, "e": None}}}
    assert deleted.inverse_patch == {"preferences": {"a": {"b": {"c": 1}, "e": 4}}}
    assert_replays(older.state, deleted)


def test_objects_left_empty_are_removed() -> None:
    before = state(
        1,
        {"/preferences/a/b/c": V(1, 10, "bob")},
        preferences={"a": {"b": {"c": 1}}, "z": 1},
    )
    result = edit(before, "amy", 1, {"preferences": {"a": {"b": {"c": None}}}}, 20)
    assert result.state.settings == doc(preferences={"z": 1})
    assert result.state.records == recs({"/preferences/a/b/c": T(2, 20, "amy")})
    assert result.effective_patch == {"preferences": {"a": None}}
    assert result.inverse_patch == {"preferences": {"a": {"b": {"c": 1}}}}
    assert_replays(before, result)


def test_the_top_level_field_is_never_removed_when_left_empty() -> None:
    before = state(
        1,
        {"/preferences/a/b": V(1, 10, "bob"), "/ai_providers/openai/model": V(1, 10, "bob")},
        preferences={"a": {"b": 1}},
        ai_providers={"openai": {"model": "gpt"}},
    )
    patch = {"preferences": {"a": {"b": None}}, "ai_providers": {"openai": {"model": None}}}
    result = edit(before, "amy", 1, patch, 20)
    assert result.state.settings == doc(preferences={}, ai_providers={})
    assert result.effective_patch == {"preferences": {"a": None}, "ai_providers": {"openai": None}}
    assert_replays(before, result)


def test_a_delete_of_nothing_still_wins_leaves_a_tombstone_and_a_revision() -> None:
    before = state(4, preferences={"z": 1})
    result = edit(before, "amy", 4, {"preferences": {"a": {"b": None}}}, 100)
    assert result.applied is True
    assert result.revision == 5
    assert result.state.settings == doc(preferences={"z": 1})  # a delete creates nothing
    assert result.state.records == recs({"/preferences/a/b": T(5, 100, "amy")})
    assert conflicts(result) == []
    assert result.effective_patch == {"preferences": {"a": None}}
    assert result.inverse_patch == {}
    assert_replays(before, result)

    # The tombstone then beats an older concurrent write.
    late = edit(result.state, "bob", 4, {"preferences": {"a": {"b": 1}}}, 50)
    assert late.applied is False
    assert conflicts(late) == [
        {"path": "/preferences/a/b", "yours": 1, "theirs": None, "kept": "theirs"}
    ]


def test_a_delete_through_a_non_object_value_changes_nothing_but_wins() -> None:
    before = state(1, {"/preferences/a": V(1, 10, "cat")}, preferences={"a": 5})
    result = edit(before, "amy", 1, {"preferences": {"a": {"b": None}}}, 20)
    assert result.applied is True
    assert result.revision == 2
    assert result.state.settings == doc(preferences={"a": 5})
    # The value at the prefix is not replaced, so its record stays.
    assert result.state.records == recs(
        {"/preferences/a": V(1, 10, "cat"), "/preferences/a/b": T(2, 20, "amy")}
    )
    assert conflicts(result) == []
    assert result.effective_patch == {}
    assert result.inverse_patch == {}
    assert_replays(before, result)


def test_a_delete_through_a_newer_concurrent_value_loses() -> None:
    before = state(2, {"/preferences/a": V(2, 50, "bob")}, preferences={"a": 5})
    result = edit(before, "amy", 1, {"preferences": {"a": {"b": None}}}, 20)
    assert result.applied is False
    assert result.revision == 2
    assert result.state is before
    assert conflicts(result) == [
        {"path": "/preferences/a/b", "yours": None, "theirs": None, "kept": "theirs"}
    ]


def test_a_delete_loses_to_a_newer_concurrent_value_at_its_path() -> None:
    before = state(2, {"/preferences/a": V(2, 50, "bob")}, preferences={"a": 5})
    result = edit(before, "amy", 1, {"preferences": {"a": None}}, 20)
    assert result.applied is False
    assert conflicts(result) == [
        {"path": "/preferences/a", "yours": None, "theirs": 5, "kept": "theirs"}
    ]


def test_a_delete_wins_over_an_older_concurrent_value_at_its_path() -> None:
    before = state(2, {"/preferences/a": V(2, 10, "bob")}, preferences={"a": 5})
    result = edit(before, "amy", 1, {"preferences": {"a": None}}, 20)
    assert result.state.settings == doc(preferences={})
    assert result.state.records == recs({"/preferences/a": T(3, 20, "amy")})
    assert conflicts(result) == [
        {"path": "/preferences/a", "yours": None, "theirs": 5, "kept": "yours", "lost_by": "bob"}
    ]


# --- top-level null: reset to the default -----------------------------------------------------


def test_null_on_theme_resets_it_to_light() -> None:
    before = state(1, {"/theme": V(1, 10, "bob")}, theme="dark")
    result = edit(before, "amy", 1, {"theme": None}, 20)
    assert result.state.settings == doc(theme="light")
    assert result.state.records == recs({"/theme": T(2, 20, "amy")})
    assert result.effective_patch == {"theme": "light"}
    assert result.inverse_patch == {"theme": "dark"}
    assert_replays(before, result)


def test_null_on_a_theme_already_at_its_default_is_still_a_revision() -> None:
    before = state(1)
    result = edit(before, "amy", 1, {"theme": None}, 20)
    assert result.applied is True
    assert result.revision == 2
    assert result.state.settings == doc()
    assert result.state.records == recs({"/theme": T(2, 20, "amy")})
    assert result.effective_patch == {"theme": None}
    assert_replays(before, result)


def test_null_on_preferences_resets_it_to_an_empty_object() -> None:
    before = state(
        1,
        {"/preferences/a": V(1, 10, "bob"), "/preferences/b/c": V(1, 10, "bob")},
        preferences={"a": 1, "b": {"c": 2}},
        language="fr",
    )
    result = edit(before, "amy", 1, {"preferences": None, "language": None}, 20)
    assert result.state.settings == doc(preferences={}, language="en")
    assert result.state.records == recs(
        {"/preferences": T(2, 20, "amy"), "/language": T(2, 20, "amy")}
    )
    assert conflicts(result) == []
    assert result.effective_patch == {"preferences": {"a": None, "b": None}, "language": "en"}
    assert result.inverse_patch == {"preferences": {"a": 1, "b": {"c": 2}}, "language": "fr"}
    assert_replays(before, result)


def test_a_reset_keeps_newer_concurrent_records_under_the_field() -> None:
    before = state(
        2,
        {"/preferences/a": V(1, 10, "cat"), "/preferences/b": V(2, 50, "bob")},
        preferences={"a": 1, "b": 2},
    )
    result = edit(before, "amy", 1, {"preferences": None}, 20)
    assert result.state.settings == doc(preferences={"b": 2})
    assert result.state.records == recs(
        {"/preferences": T(3, 20, "amy"), "/preferences/b": V(2, 50, "bob")}
    )
    assert conflicts(result) == [
        {"path": "/preferences", "yours": None, "theirs": {"b": 2}, "kept": "partial"}
    ]
    assert result.effective_patch == {"preferences": {"a": None}}
    assert_replays(before, result)


def test_a_reset_that_keeps_everything_has_an_effective_patch_that_keeps_it() -> None:
    before = state(2, {"/preferences/b": V(2, 50, "bob")}, preferences={"b": 2})
    result = edit(before, "amy", 1, {"preferences": None}, 20)
    assert result.applied is True
    assert result.state.settings == doc(preferences={"b": 2})
    assert result.state.records == recs(
        {"/preferences": T(3, 20, "amy"), "/preferences/b": V(2, 50, "bob")}
    )
    assert conflicts(result) == [
        {"path": "/preferences", "yours": None, "theirs": {"b": 2}, "kept": "partial"}
    ]
    # Not {"preferences": null}: applied by a client, that would wipe the kept value.
    assert result.effective_patch == {}
    assert_replays(before, result)


def test_a_reset_loses_to_a_newer_concurrent_reset() -> None:
    before = state(2, {"/theme": T(2, 50, "bob")})
    result = edit(before, "amy", 1, {"theme": "dark"}, 20)
    assert result.applied is False
    assert conflicts(result) == [
        {"path": "/theme", "yours": "dark", "theirs": "light", "kept": "theirs"}
    ]


# --- arrays are leaves ------------------------------------------------------------------------

TAGS: Final = state(1, {"/preferences/tags": V(1, 10, "cat")}, preferences={"tags": ["a"]})


def test_concurrent_edits_of_one_array_newer_arrives_last() -> None:
    first = edit(TAGS, "amy", 1, {"preferences": {"tags": ["a", "b"]}}, 20)
    second = edit(first.state, "bob", 1, {"preferences": {"tags": ["a", "c"]}}, 30)
    assert second.state.settings == doc(preferences={"tags": ["a", "c"]})
    assert second.state.records == recs({"/preferences/tags": V(3, 30, "bob")})
    assert conflicts(second) == [
        {
            "path": "/preferences/tags",
            "yours": ["a", "c"],
            "theirs": ["a", "b"],
            "kept": "yours",
            "lost_by": "amy",
        }
    ]
    # The whole array, not an element.
    assert second.effective_patch == {"preferences": {"tags": ["a", "c"]}}
    assert second.inverse_patch == {"preferences": {"tags": ["a", "b"]}}


def test_concurrent_edits_of_one_array_newer_arrives_first() -> None:
    first = edit(TAGS, "bob", 1, {"preferences": {"tags": ["a", "c"]}}, 30)
    second = edit(first.state, "amy", 1, {"preferences": {"tags": ["a", "b"]}}, 20)
    assert second.applied is False
    assert second.state.settings == doc(preferences={"tags": ["a", "c"]})
    assert second.state.records == recs({"/preferences/tags": V(2, 30, "bob")})
    assert conflicts(second) == [
        {"path": "/preferences/tags", "yours": ["a", "b"], "theirs": ["a", "c"], "kept": "theirs"}
    ]


def test_an_array_of_objects_is_one_leaf() -> None:
    patch = {"preferences": {"list": [{"x": 2}, {"y": None}]}}
    assert list(leaf_edits(patch)) == [(("preferences", "list"), [{"x": 2}, {"y": None}])]
    before = state(1, preferences={"list": [{"x": 1}]})
    result = edit(before, "amy", 1, patch, 20)
    # A null inside an array is a value, not a delete.
    assert result.state.settings == doc(preferences={"list": [{"x": 2}, {"y": None}]})
    assert result.state.records == recs({"/preferences/list": V(2, 20, "amy")})


def test_an_index_under_an_array_is_an_object_key_that_replaces_the_array() -> None:
    # A merge patch cannot address an array element: {"0": …} is an object member.
    patch = {"preferences": {"tags": {"0": "z"}}}
    assert list(leaf_edits(patch)) == [(("preferences", "tags", "0"), "z")]
    result = edit(TAGS, "amy", 1, patch, 20)
    assert result.state.settings == doc(preferences={"tags": {"0": "z"}})
    assert result.state.records == recs({"/preferences/tags/0": V(2, 20, "amy")})
    assert result.effective_patch == {"preferences": {"tags": {"0": "z"}}}
    assert_replays(TAGS, result)

    # Under a newer concurrent array write it loses: the array is a record at a prefix.
    newer = edit(TAGS, "bob", 1, {"preferences": {"tags": ["b"]}}, 30)
    lost = edit(newer.state, "amy", 1, patch, 20)
    assert lost.applied is False
    assert conflicts(lost) == [
        {"path": "/preferences/tags/0", "yours": "z", "theirs": None, "kept": "theirs"}
    ]


# --- ties, clocks and own queues ------------------------------------------------------------


@pytest.mark.parametrize("order", [("amy", "bob"), ("bob", "amy")])
def test_equal_edit_times_are_broken_by_client_id(order: tuple[str, str]) -> None:
    values = {"amy": "dark", "bob": "system"}
    first, second = order
    one = edit(state(), first, 0, {"theme": values[first]}, 20)
    two = edit(one.state, second, 0, {"theme": values[second]}, 20)
    # (20, "bob") > (20, "amy") whatever the arrival order.
    assert two.state.settings == doc(theme="system")
    if order == ("amy", "bob"):
        assert two.applied is True
        assert two.state.records == recs({"/theme": V(2, 20, "bob")})
        assert conflicts(two) == [
            {
                "path": "/theme",
                "yours": "system",
                "theirs": "dark",
                "kept": "yours",
                "lost_by": "amy",
            }
        ]
    else:
        assert two.applied is False
        assert two.state.records == recs({"/theme": V(1, 20, "bob")})
        assert conflicts(two) == [
            {"path": "/theme", "yours": "dark", "theirs": "system", "kept": "theirs"}
        ]


def test_an_equal_time_and_client_is_the_same_client_and_never_concurrent() -> None:
    # Under ">=" an equal (at, by) would lose; it can only come from the client itself,
    # whose records are never concurrent, so its second edit applies.
    one = edit(state(), "amy", 0, {"theme": "dark"}, 20)
    two = edit(one.state, "amy", 0, {"theme": "system"}, 20)
    assert two.applied is True
    assert conflicts(two) == []
    assert two.state.settings == doc(theme="system")
    assert two.state.records == recs({"/theme": V(2, 20, "amy")})


@pytest.mark.parametrize(
    ("edited_at", "now", "expected"),
    [(500, 1_000, 500), (5_000, 1_000, 1_000), (-5, 1_000, 0), (None, 1_000, 1_000), (0, 0, 0)],
)
def test_clamp_edited_at(edited_at: int | None, now: int, expected: int) -> None:
    assert clamp_edited_at(edited_at, now) == expected


def test_an_edit_time_in_the_future_is_clamped_to_now() -> None:
    # amy's clock is far ahead; clamped to the server's 1000 she loses to bob's 1500.
    ahead = edit(state(), "amy", 0, {"theme": "dark"}, 10**12, now=1_000)
    assert ahead.state.records == recs({"/theme": V(1, 1_000, "amy")})
    later = edit(ahead.state, "bob", 0, {"theme": "system"}, 1_500, now=2_000)
    assert later.applied is True
    assert later.state.settings == doc(theme="system")
    assert later.state.records == recs({"/theme": V(2, 1_500, "bob")})
    assert conflicts(later) == [
        {"path": "/theme", "yours": "system", "theirs": "dark", "kept": "yours", "lost_by": "amy"}
    ]


def test_a_negative_edit_time_is_clamped_to_zero() -> None:
    # Clamped to 0, zed's edit ties with amy's 0 and wins on its client id; unclamped (-50)
    # it would have lost.
    behind = edit(state(), "zed", 0, {"theme": "dark"}, -50)
    assert behind.state.records == recs({"/theme": V(1, 0, "zed")})
    other = edit(behind.state, "amy", 0, {"theme": "system"}, 0)
    assert other.applied is False
    assert other.state.settings == doc(theme="dark")
    assert conflicts(other) == [
        {"path": "/theme", "yours": "system", "theirs": "dark", "kept": "theirs"}
    ]


def test_a_clients_own_queue_applies_in_order_and_never_conflicts_with_itself() -> None:
    # Made offline on revision 0 with a clock that went backwards; replayed in order.
    queue: list[tuple[dict[str, Any], int]] = [
        ({"preferences": {"a": 1, "b": 1}}, 50),
        ({"preferences": {"a": 2}}, 40),
        ({"preferences": {"b": None}}, 30),
    ]
    current = state()
    for number, (patch, at) in enumerate(queue, start=1):
        result = edit(current, "amy", 0, patch, at)
        assert result.applied is True
        assert result.revision == number
        assert conflicts(result) == []
        current = result.state
    assert current.settings == doc(preferences={"a": 2})
    assert current.records == recs(
        {"/preferences/a": V(2, 40, "amy"), "/preferences/b": T(3, 30, "amy")}
    )


# --- revisions --------------------------------------------------------------------------------


def test_a_winning_unchanged_write_creates_a_revision_and_shows_in_the_patch() -> None:
    before = state(1, {"/preferences/a": V(1, 10, "bob")}, preferences={"a": 1, "b": 1})
    result = edit(before, "amy", 1, {"preferences": {"a": 1, "b": 2}, "theme": "light"}, 20)
    assert result.applied is True
    assert result.revision == 2
    assert result.state.settings == doc(preferences={"a": 1, "b": 2})
    assert result.state.records == recs(
        {
            "/preferences/a": V(2, 20, "amy"),
            "/preferences/b": V(2, 20, "amy"),
            "/theme": V(2, 20, "amy"),
        }
    )
    assert result.effective_patch == {"preferences": {"a": 1, "b": 2}, "theme": "light"}
    assert result.inverse_patch == {"preferences": {"b": 1}}
    assert_replays(before, result)


def test_a_mutation_whose_every_leaf_lost_creates_no_revision() -> None:
    before = state(
        3,
        {"/preferences/a": V(2, 50, "bob"), "/theme": V(3, 60, "cat")},
        preferences={"a": 1},
        theme="system",
    )
    snapshot = copy.deepcopy(before)
    result = edit(before, "amy", 1, {"preferences": {"a": 9}, "theme": "dark"}, 40)
    assert result.applied is False
    assert result.revision == 3
    assert result.state is before
    assert before == snapshot
    assert conflicts(result) == [
        {"path": "/preferences/a", "yours": 9, "theirs": 1, "kept": "theirs"},
        {"path": "/theme", "yours": "dark", "theirs": "system", "kept": "theirs"},
    ]
    assert result.effective_patch == {}
    assert result.inverse_patch == {}


def test_a_mutation_with_one_winning_leaf_creates_a_revision() -> None:
    before = state(2, {"/preferences/a": V(2, 50, "bob")}, preferences={"a": 1})
    result = edit(before, "amy", 1, {"preferences": {"a": 9, "b": 9}}, 40)
    assert result.applied is True
    assert result.revision == 3
    assert result.state.settings == doc(preferences={"a": 1, "b": 9})
    assert result.state.records == recs(
        {"/preferences/a": V(2, 50, "bob"), "/preferences/b": V(3, 40, "amy")}
    )
    assert conflicts(result) == [
        {"path": "/preferences/a", "yours": 9, "theirs": 1, "kept": "theirs"}
    ]
    assert result.effective_patch == {"preferences": {"b": 9}}


@pytest.mark.parametrize("base", [None, 2, 99])
def test_a_missing_or_future_base_means_the_current_revision(base: int | None) -> None:
    before = state(2, {"/preferences/a": V(2, 500, "bob")}, preferences={"a": 1})
    result = edit(before, "amy", base, {"preferences": {"a": 2}}, 10)
    assert result.applied is True
    assert result.revision == 3
    assert conflicts(result) == []
    assert result.state.settings == doc(preferences={"a": 2})
    assert result.state.records == recs({"/preferences/a": V(3, 10, "amy")})


def test_a_stale_base_makes_a_newer_record_concurrent() -> None:
    before = state(2, {"/preferences/a": V(2, 500, "bob")}, preferences={"a": 1})
    result = edit(before, "amy", 1, {"preferences": {"a": 2}}, 10)
    assert result.applied is False
    assert conflicts(result) == [
        {"path": "/preferences/a", "yours": 2, "theirs": 1, "kept": "theirs"}
    ]


@pytest.mark.parametrize(
    ("base", "current", "expected"),
    [(None, 5, 5), (99, 5, 5), (6, 5, 5), (5, 5, 5), (3, 5, 3), (0, 5, 0)],
)
def test_effective_base(base: int | None, current: int, expected: int) -> None:
    assert effective_base(base, current) == expected


# --- secrets ----------------------------------------------------------------------------------

KEYS: Final = state(
    2,
    {"/api_keys/openai": V(2, 50, "bob")},
    api_keys={"openai": sealed("x9Qz"), "short": sealed(None)},
)


def assert_no_secret_material(*values: Any) -> None:
    text = json.dumps(values)
    for fragment in ("$sealed", "ciphertext", "Y2lwaGVydGV4dA", "nonce"):
        assert fragment not in text


def test_a_losing_secret_shows_only_masks() -> None:
    result = edit(KEYS, "amy", 1, {"api_keys": {"openai": sealed("ab12")}}, 40)
    assert result.applied is False
    assert conflicts(result) == [
        {
            "path": "/api_keys/openai",
            "yours": masked("ab12"),
            "theirs": masked("x9Qz"),
            "kept": "theirs",
        }
    ]
    assert_no_secret_material(conflicts(result))


def test_a_winning_secret_shows_only_masks_and_stays_out_of_the_inverse() -> None:
    result = edit(KEYS, "amy", 1, {"api_keys": {"openai": sealed("ab12")}}, 60)
    assert result.applied is True
    assert result.state.settings == doc(api_keys={"openai": sealed("ab12"), "short": sealed(None)})
    assert result.state.records == recs({"/api_keys/openai": V(3, 60, "amy")})
    assert conflicts(result) == [
        {
            "path": "/api_keys/openai",
            "yours": masked("ab12"),
            "theirs": masked("x9Qz"),
            "kept": "yours",
            "lost_by": "bob",
        }
    ]
    assert result.effective_patch == {"api_keys": {"openai": masked("ab12")}}
    assert result.inverse_patch == {}
    assert_no_secret_material(conflicts(result), result.effective_patch)


def test_a_deleted_secret_shows_only_masks() -> None:
    result = edit(KEYS, "amy", 1, {"api_keys": {"openai": None, "short": None}}, 60)
    assert result.state.settings == doc(api_keys={})
    assert result.state.records == recs(
        {"/api_keys/openai": T(3, 60, "amy"), "/api_keys/short": T(3, 60, "amy")}
    )
    assert conflicts(result) == [
        {
            "path": "/api_keys/openai",
            "yours": None,
            "theirs": masked("x9Qz"),
            "kept": "yours",
            "lost_by": "bob",
        }
    ]
    assert result.effective_patch == {"api_keys": {"openai": None, "short": None}}
    assert result.inverse_patch == {}


def test_a_partial_reset_of_api_keys_shows_only_masks() -> None:
    result = edit(KEYS, "amy", 1, {"api_keys": None}, 40)
    assert result.state.settings == doc(api_keys={"openai": sealed("x9Qz")})
    assert conflicts(result) == [
        {
            "path": "/api_keys",
            "yours": None,
            "theirs": {"openai": masked("x9Qz")},
            "kept": "partial",
        }
    ]
    assert result.effective_patch == {"api_keys": {"short": None}}
    assert_no_secret_material(conflicts(result), result.effective_patch)


def test_a_short_secret_has_no_last4() -> None:
    result = edit(KEYS, "amy", 2, {"api_keys": {"short": sealed(None)}}, 60)
    assert result.effective_patch == {"api_keys": {"short": {"set": True, "updated_at": UPDATED}}}


@pytest.mark.parametrize(
    ("plaintext", "last4"),
    [("sk-live-abcdWXYZ", "WXYZ"), ("abcdefghWXYZ", "WXYZ"), ("abcdefgWXYZ", None)],
)
def test_a_plaintext_secret_never_appears_in_conflicts_or_patches(
    plaintext: str, last4: str | None
) -> None:
    lost = edit(KEYS, "amy", 1, {"api_keys": {"openai": plaintext}}, 40)
    won = edit(KEYS, "amy", 1, {"api_keys": {"openai": plaintext}}, 60)
    (lost_conflict,) = conflicts(lost)
    (won_conflict,) = conflicts(won)
    shown = [
        lost_conflict["yours"],
        won_conflict["yours"],
        won.effective_patch["api_keys"]["openai"],
    ]
    for mask in shown:
        expected_keys = {"set", "last4", "updated_at"} if last4 else {"set", "updated_at"}
        assert set(mask) == expected_keys
        assert mask["set"] is True
        assert mask.get("last4") == last4
        assert RFC3339_MS.fullmatch(mask["updated_at"])
    assert plaintext not in json.dumps([conflicts(lost), conflicts(won), won.effective_patch])


# --- revert: inverse patches and state_at -----------------------------------------------------


def test_inverse_patches_and_state_at_restore_earlier_non_secret_settings() -> None:
    history: list[tuple[str, dict[str, Any]]] = [
        ("amy", {"theme": "dark", "preferences": {"a": 1, "list": [1]}}),
        ("bob", {"preferences": {"a": {"b": 2}}, "api_keys": {"openai": sealed("x9Qz")}}),
        (
            "amy",
            {
                "preferences": {"list": None},
                "language": "fr",
                "ai_providers": {"default": "openai"},
            },
        ),
        ("bob", {"preferences": None, "theme": None}),
    ]
    current = state()
    snapshots = [current.settings]
    inverses = []
    for number, (by, patch) in enumerate(history):
        result = edit(current, by, number, patch, 10 * (number + 1))
        assert result.applied is True
        inverses.append(result.inverse_patch)
        current = result.state
        snapshots.append(current.settings)

    assert inverses == [
        {"theme": "light", "preferences": {"a": None, "list": None}},
        {"preferences": {"a": 1}},
        {"preferences": {"list": [1]}, "language": "en", "ai_providers": {"default": None}},
        {"preferences": {"a": {"b": 2}}, "theme": "dark"},
    ]
    newest_first = inverses[::-1]
    for revision, expected in enumerate(snapshots):
        restored = state_at(current.settings, newest_first[: len(history) - revision])
        assert restored == {k: v for k, v in expected.items() if k != "api_keys"}
    assert state_at(current.settings, newest_first[:3]) == {
        "theme": "dark",
        "language": "en",
        "preferences": {"a": 1, "list": [1]},
        "ai_providers": {},
    }
    # A revert is an ordinary patch: the difference to the old non-secret settings.
    old = state_at(current.settings, newest_first[:2])
    plain = {k: v for k, v in current.settings.items() if k != "api_keys"}
    assert settings_diff(plain, old) == {
        "theme": "dark",
        "language": "en",
        "preferences": {"a": {"b": 2}, "list": [1]},
        "ai_providers": {"default": None},
    }
    assert apply_patch(current.settings, settings_diff(plain, old)) == {
        **snapshots[2],
        "api_keys": current.settings["api_keys"],
    }


# --- If-Match -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [('"7"', 7), ('W/"7"', 7), ("7", 7), (' "7" ', 7), ('"0"', 0), ('"123456"', 123456)],
)
def test_parse_if_match_accepts_a_revision(header: str, expected: int) -> None:
    assert parse_if_match(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        '""',
        "abc",
        '"abc"',
        '"-1"',
        '"7',
        '7"',
        'W/"',
        '"1.5"',
        "W/7x",
        '"7", "8"',
        '"+7"',
        '"\u00b2"',  # SUPERSCRIPT TWO: str.isdigit accepts it, int() does not
        '"\u0667"',  # ARABIC-INDIC DIGIT SEVEN: not an ASCII revision
    ],
)
def test_parse_if_match_refuses_garbage(header: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_if_match(header)
    assert caught.value.code == "invalid_if_match"
    assert caught.value.status == 400


# --- inputs are never changed ------------------------------------------------------------------

SCENARIOS: Final = [
    (EDITOR, "amy", 1, {"preferences": {"editor": None}}, 20),
    (EDITOR, "amy", 0, {"preferences": {"editor": {"font": {"size": 1}}}}, 20),
    (EDITOR, "amy", 1, {"preferences": None, "theme": "dark"}, 20),
    (TAGS, "amy", 1, {"preferences": {"tags": {"0": "z"}}}, 20),
    (TAGS, "amy", 0, {"preferences": {"tags": ["x"]}}, 5),
    (KEYS, "amy", 1, {"api_keys": None}, 40),
    (KEYS, "amy", 1, {"api_keys": {"openai": sealed("ab12"), "short": None}}, 60),
    (
        state(
            2,
            {"/preferences/a/b/c": V(1, 10, "cat"), "/preferences/a/b/d": V(2, 50, "bob")},
            preferences={"a": {"b": {"c": 1, "d": 2}}},
        ),
        "amy",
        1,
        {"preferences": {"a": {"b": None}}},
        20,
    ),
]


@pytest.mark.parametrize(("before", "by", "base", "patch", "at"), SCENARIOS)
def test_merge_never_changes_its_inputs(
    before: DocState, by: str, base: int, patch: dict[str, Any], at: int
) -> None:
    state_copy = copy.deepcopy(before)
    patch_copy = copy.deepcopy(patch)
    result = edit(before, by, base, patch, at)
    assert before == state_copy
    assert json.dumps(before.settings, sort_keys=True) == json.dumps(
        state_copy.settings, sort_keys=True
    )
    assert patch == patch_copy
    if result.state is before:
        return  # nothing applied: the result is the input itself
    # Changing what the merge wrote afterwards does not reach the input either.
    for name in ("preferences", "ai_providers", "api_keys"):
        if result.state.settings[name] is not before.settings[name]:
            result.state.settings[name]["poked"] = 1
    result.state.records[("poked",)] = V(0, 0, "x")
    assert before == state_copy


# --- wire forms ---------------------------------------------------------------------------------


def test_conflict_to_json_carries_lost_by_only_when_set() -> None:
    assert Conflict("/theme", "dark", "light", "theirs").to_json() == {
        "path": "/theme",
        "yours": "dark",
        "theirs": "light",
        "kept": "theirs",
    }
    assert Conflict("/theme", "dark", "light", "yours", "bob").to_json() == {
        "path": "/theme",
        "yours": "dark",
        "theirs": "light",
        "kept": "yours",
        "lost_by": "bob",
    }


def test_record_json_round_trip() -> None:
    for record in (V(3, 40, "amy"), T(4, 0, "http")):
        assert Record.from_json(record.to_json()) == record
    assert T(4, 0, "http").to_json() == [4, 0, "http", 1]
