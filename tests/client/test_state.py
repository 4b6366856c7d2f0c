"""DocumentState: the client's view of one document, driven by frames — no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from livesettings.client import ChangeOrigin
from livesettings.client.cache import CachedDocument, QueuedMutation
from livesettings.client.state import Documents, DocumentState, RevisionGap
from livesettings.document import default_document
from livesettings.protocol import ChangeFrame


def doc_with(**fields: Any) -> dict[str, Any]:
    return {**default_document(), **fields}


def change(revision: int, patch: dict[str, Any], mutation_id: str = "m-other") -> dict[str, Any]:
    return {
        "type": "change",
        "revision": revision,
        "patch": patch,
        "mutation_id": mutation_id,
        "client_id": "other",
        "committed_at": 1000 + revision,
        "conflicts": [],
    }


def synced_state(revision: int = 3, **fields: Any) -> DocumentState:
    state = DocumentState(None)
    state.on_snapshot(revision, doc_with(**fields))
    return state


def test_local_edit_shows_at_once_and_records_its_base() -> None:
    state = synced_state(3)
    pending, event = state.edit({"theme": "dark"}, "m1", 5000, 0)
    assert pending.base_revision == 3
    assert pending.edited_at == 5000
    assert event.origin is ChangeOrigin.LOCAL
    assert event.patch == {"theme": "dark"}
    assert state.view["theme"] == "dark"
    assert state.confirmed["theme"] == "light"


def test_ack_then_own_change_confirms_without_a_blink_or_an_event() -> None:
    state = synced_state(3)
    state.edit({"theme": "dark"}, "m1", 5000, 0)
    found, event = state.on_ack("m1", 4)
    assert found is not None and found.acked == 4
    assert event is None
    assert state.view["theme"] == "dark"  # still shown while the change frame is on its way
    event, mine = state.on_change(change(4, {"theme": "dark"}, "m1"))
    assert event is None
    assert mine is not None and mine.mutation_id == "m1"
    assert state.pending == []
    assert (state.revision, state.confirmed["theme"]) == (4, "dark")


def test_remote_change_is_reported_with_its_committed_patch() -> None:
    state = synced_state(3)
    state.edit({"language": "fr"}, "m1", 5000, 0)
    event, mine = state.on_change(change(4, {"theme": "dark"}))
    assert mine is None
    assert event is not None
    assert event.origin is ChangeOrigin.REMOTE
    assert event.patch == {"theme": "dark"}
    assert (event.revision, event.client_id, event.committed_at) == (4, "other", 1004)
    assert event.settings == doc_with(theme="dark", language="fr")  # own pending edit on top


def test_duplicates_are_ignored_and_gaps_detected() -> None:
    state = synced_state(3)
    assert state.on_change(change(3, {"theme": "dark"})) == (None, None)
    assert state.view["theme"] == "light"
    with pytest.raises(RevisionGap) as gap:
        state.on_change(change(5, {"theme": "dark"}))
    assert gap.value.revision == 3


def test_own_edit_that_lost_is_corrected_by_the_change() -> None:
    state = synced_state(3)
    state.edit({"theme": "dark", "language": "fr"}, "m1", 5000, 0)
    state.on_ack("m1", 4)
    # The server kept someone else's theme: the effective patch holds only the language.
    event, mine = state.on_change(change(4, {"language": "fr"}, "m1"))
    assert mine is not None
    assert event is not None and event.origin is ChangeOrigin.REMOTE
    assert event.patch == {"theme": "light"}
    assert state.view == doc_with(language="fr")


def test_ack_of_an_edit_that_entirely_lost_drops_it() -> None:
    state = synced_state(3)
    state.edit({"theme": "dark"}, "m1", 5000, 0)
    found, event = state.on_ack("m1", 3)  # no revision created: the current one
    assert found is not None
    assert event is not None and event.patch == {"theme": "light"}
    assert state.pending == []


def test_rejection_rolls_back() -> None:
    state = synced_state(3, theme="system")
    state.edit({"theme": "dark"}, "m1", 5000, 0)
    state.edit({"language": "de"}, "m2", 5001, 1)
    found, event = state.on_reject("m1")
    assert found is not None and found.mutation_id == "m1"
    assert event is not None and event.origin is ChangeOrigin.ROLLBACK
    assert event.patch == {"theme": "system"}
    assert state.view == doc_with(theme="system", language="de")
    assert [p.mutation_id for p in state.pending] == ["m2"]


def test_snapshot_is_a_reset_keeping_unacknowledged_edits() -> None:
    state = synced_state(3)
    state.edit({"language": "fr"}, "m1", 5000, 0)
    state.edit({"theme": "dark"}, "m2", 5001, 1)
    state.on_ack("m1", 4)
    event = state.on_snapshot(20, doc_with(language="fr", preferences={"a": 1}))
    assert event is not None and event.reset
    assert event.revision == 20
    assert event.patch == {"preferences": {"a": 1}}
    assert [p.mutation_id for p in state.pending] == ["m2"]
    assert state.view == doc_with(theme="dark", language="fr", preferences={"a": 1})


def test_a_first_snapshot_is_a_load_not_a_reset() -> None:
    state = DocumentState(None)
    assert state.on_snapshot(0, default_document()) is None
    state = DocumentState(None)
    event = state.on_snapshot(4, doc_with(theme="dark"))
    assert event is not None
    assert (event.origin, event.reset, event.patch) == (
        ChangeOrigin.SNAPSHOT,
        False,
        {"theme": "dark"},
    )
    event = state.on_snapshot(4, doc_with(theme="dark"))  # a reset that changes nothing
    assert event is not None and event.reset and event.patch == {}


def test_secrets_are_shown_masked_and_flagged() -> None:
    state = synced_state(3)
    pending, event = state.edit({"api_keys": {"openai": "sk-0123456789abcdef"}}, "m1", 5000, 0)
    assert pending.secret
    assert pending.patch == {"api_keys": {"openai": "sk-0123456789abcdef"}}
    shown = state.view["api_keys"]["openai"]
    assert shown["set"] is True and shown["last4"] == "cdef"
    assert "sk-0123456789abcdef" not in repr(event)
    deleting, _ = state.edit({"api_keys": {"openai": None}}, "m2", 5001, 1)
    assert not deleting.secret


def test_restore_from_cache_replays_the_queue_on_top() -> None:
    state = DocumentState(None)
    queued = [
        QueuedMutation("", "m1", 7, {"theme": "dark"}, 10),
        QueuedMutation("", "m2", 7, {"preferences": {"x": 1}}, 11),
    ]
    next_seq = state.restore(CachedDocument(7, doc_with(language="fr")), queued, 40)
    assert next_seq == 42
    assert state.revision == 7
    assert [(p.mutation_id, p.seq, p.base_revision) for p in state.pending] == [
        ("m1", 40, 7),
        ("m2", 41, 7),
    ]
    assert state.view == doc_with(theme="dark", language="fr", preferences={"x": 1})


def test_disconnect_marks_unacknowledged_edits_for_resending() -> None:
    state = synced_state(3)
    first, _ = state.edit({"theme": "dark"}, "m1", 5000, 0)
    second, _ = state.edit({"language": "fr"}, "m2", 5001, 1)
    first.sent = second.sent = True
    state.on_ack("m1", 4)
    state.disconnected()
    assert (first.sent, second.sent) == (True, False)
    assert [p.mutation_id for p in state.unacked] == ["m2"]


def test_documents_answer_for_every_pending_edit() -> None:
    docs = Documents()
    mine, theirs = DocumentState(None), DocumentState("u2", followed=False)
    docs[mine.key], docs[theirs.key] = mine, theirs
    mine.edit({"theme": "dark"}, "m1", 1, 0)
    theirs.edit({"language": "fr"}, "m2", 2, 1)
    mine.edit({"language": "de"}, "m3", 3, 2)
    assert docs.pending_ids() == {"m1", "m2", "m3"}
    assert [p.mutation_id for _, p in docs.unsent()] == ["m1", "m2", "m3"]
    assert docs.unsaved() == 3
    assert not docs.in_flight()
    for _, p in docs.unsent()[:2]:
        p.sent = True
    assert docs.in_flight()
    found = docs.owner("m2")
    assert found is not None and found[0] is theirs
    assert docs.owner("nope") is None
    docs.disconnected()
    assert [p.mutation_id for _, p in docs.unsent()] == ["m1", "m2", "m3"]


def test_on_change_takes_a_typed_frame() -> None:
    state = synced_state(3)
    event, mine = state.on_change(ChangeFrame(4, {"theme": "dark"}, "m9", "other", 1004))
    assert mine is None and event is not None
    assert (event.revision, event.client_id, event.committed_at) == (4, "other", 1004)
    assert state.view["theme"] == "dark"
