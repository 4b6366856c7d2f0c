"""The storage suite: every backend of ``conftest.FACTORIES`` against the ``Store`` Protocol, with
exact values; ``test_sqlite_…`` tests look inside the SQLite file itself."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from livesettings.crypto import (
    Keyring,
    generate_master_key,
    open_secret,
    rewrap_data_key,
    unwrap_data_key,
)
from livesettings.document import default_document, is_sealed, rfc3339
from livesettings.errors import (
    ConfigError,
    Conflict,
    IdempotencyKeyReused,
    LiveSettingsError,
    PreconditionFailed,
    RevisionGone,
    StorageError,
    ValidationError,
)
from livesettings.merge import Mutation, Record
from livesettings.store import (
    SCHEMA_VERSION,
    ChangeRow,
    ChangesPage,
    CommitOutcome,
    PendingMutation,
    RefreshResult,
    Store,
    StoredDocument,
    UserRow,
    open_store,
)
from livesettings.store.base import MutationKind
from livesettings.store.codec import exported_from_json, exported_to_json
from livesettings.store.planning import body_hash
from livesettings.store.sqlite import SqliteStore, sqlite_path

from .conftest import NOW_MS, Clock, MakeStore

NOW_TEXT = rfc3339(NOW_MS)
CANARY = "sk-canary-7d1f0c2e9b4a"  # a secret whose plaintext must never reach the file


def edit(
    user: str,
    mutation_id: str,
    patch: dict[str, Any],
    *,
    client: str = "c1",
    base: int | None = None,
    at: int = 1_000,
    kind: MutationKind = "patch",
    expected: int | None = None,
    revert_to: int | None = None,
) -> PendingMutation:
    body = revert_to if kind == "revert" else patch
    return PendingMutation(
        user,
        Mutation(mutation_id, client, base, patch, at),
        body_hash(kind, body),
        kind,
        expected,
        revert_to,
    )


def settings(**fields: Any) -> dict[str, Any]:
    return {**default_document(), **fields}


async def commit_one(store: Store, pending: PendingMutation) -> CommitOutcome:
    [outcome] = await store.commit([pending])
    return outcome


async def history(store: Store, user: str, patches: list[dict[str, Any]]) -> None:
    """Commit each patch as its own revision."""
    for number, patch in enumerate(patches, start=1):
        outcome = await commit_one(store, edit(user, f"h{number}", patch, at=number))
        assert outcome.error is None


async def revisions(store: Store, user: str, since: int = 0) -> list[int]:
    page = await store.changes_since(user, since, 1000)
    return [change.revision for change in page.changes]


# --- schema -------------------------------------------------------------------------------


async def test_setup_is_idempotent(make_store: MakeStore) -> None:
    store = await make_store(setup=False)
    first = await store.setup()
    assert "created table user_preferences" in first
    assert "created table settings_changes" in first
    assert first[-1] == f"recorded schema version {SCHEMA_VERSION}"
    assert await store.setup() == [f"schema is up to date (version {SCHEMA_VERSION})"]
    await store.open()
    assert await store.schema_version() == SCHEMA_VERSION
    await store.ping()


async def test_open_refuses_a_missing_schema(make_store: MakeStore) -> None:
    store = await make_store("never_set_up", setup=False)
    with pytest.raises(ConfigError, match="run `livesettings setup`"):
        await store.open()


# --- documents and commits ------------------------------------------------------------------


async def test_unknown_user_reads_the_defaults(store: Store) -> None:
    assert await store.get_document("nobody") == StoredDocument("nobody", 0, default_document(), {})
    assert await store.changes_since("nobody", 0, 10) == ChangesPage((), 0, False)


async def test_commits_create_revisions_and_change_rows(store: Store) -> None:
    first = await commit_one(store, edit("u1", "m1", {"theme": "dark"}, at=500))
    second = await commit_one(
        store, edit("u1", "m2", {"preferences": {"a": {"b": 1}}}, client="c2", at=600)
    )

    change1 = ChangeRow("u1", 1, {"theme": "dark"}, "m1", "c1", NOW_MS, (), {"theme": "light"})
    change2 = ChangeRow(
        "u1",
        2,
        {"preferences": {"a": {"b": 1}}},
        "m2",
        "c2",
        NOW_MS,
        (),
        {"preferences": {"a": None}},
    )
    assert first == CommitOutcome("u1", "m1", 1, change=change1, settings=settings(theme="dark"))
    assert second == CommitOutcome(
        "u1", "m2", 2, change=change2, settings=settings(theme="dark", preferences={"a": {"b": 1}})
    )
    assert await store.get_document("u1") == StoredDocument(
        "u1",
        2,
        settings(theme="dark", preferences={"a": {"b": 1}}),
        {("theme",): Record(1, 500, "c1"), ("preferences", "a", "b"): Record(2, 600, "c2")},
        updated_at=NOW_TEXT,
        created_at=NOW_TEXT,
    )
    assert await store.changes_since("u1", 0, 10) == ChangesPage((change1, change2), 2, False)


async def test_one_batch_commits_several_users_and_several_mutations_of_one(store: Store) -> None:
    outcomes = await store.commit(
        [
            edit("u1", "a", {"theme": "dark"}),
            edit("u2", "a", {"language": "fr"}),
            edit("u1", "b", {"preferences": {"x": 1}}),
            edit("u1", "c", {"theme": "system"}),
        ]
    )
    assert [(o.user_id, o.mutation_id, o.revision, o.error) for o in outcomes] == [
        ("u1", "a", 1, None),
        ("u2", "a", 1, None),
        ("u1", "b", 2, None),
        ("u1", "c", 3, None),
    ]
    u1 = await store.get_document("u1")
    assert (u1.revision, u1.settings) == (3, settings(theme="system", preferences={"x": 1}))
    u2 = await store.get_document("u2")
    assert (u2.revision, u2.settings) == (1, settings(language="fr"))
    assert [c.patch for c in (await store.changes_since("u1", 0, 10)).changes] == [
        {"theme": "dark"},
        {"preferences": {"x": 1}},
        {"theme": "system"},
    ]


async def test_refused_mutations_leave_the_rest_of_the_batch_alone(store: Store) -> None:
    outcomes = await store.commit(
        [
            edit("u1", "m1", {"theme": "dark"}),
            edit("u1", "m1", {"theme": "system"}),  # same id, another body
            edit("u1", "m3", {"language": "de"}, expected=0),  # stale If-Match
            edit("u1", "m4", {"theme": "blue"}),  # not a theme
            edit("u1", "m5", {"language": "fr"}, expected=1),
        ]
    )
    assert [(o.revision, type(o.error)) for o in outcomes] == [
        (1, type(None)),
        (1, IdempotencyKeyReused),
        (1, PreconditionFailed),
        (1, ValidationError),
        (2, type(None)),
    ]
    stale = outcomes[2].error
    assert stale is not None
    assert stale.details == {"revision": 1, "settings": settings(theme="dark")}
    assert outcomes[3].error is not None and outcomes[3].error.details == {"path": "/theme"}
    assert await revisions(store, "u1") == [1, 2]
    doc = await store.get_document("u1")
    assert (doc.revision, doc.settings) == (2, settings(theme="dark", language="fr"))
    # Refused mutations are not remembered: their ids are free for a corrected retry.
    retry = await commit_one(store, edit("u1", "m3", {"language": "de"}, expected=2))
    assert (retry.revision, retry.repeated, retry.error) == (3, False, None)


async def test_a_repeated_mutation_returns_the_original_answer(store: Store) -> None:
    await commit_one(store, edit("u1", "a1", {"theme": "dark"}, client="A", base=0, at=2_000))
    won = edit("u1", "b1", {"theme": "system"}, client="B", base=0, at=3_000)
    first = await commit_one(store, won)
    expected_conflict = {
        "path": "/theme",
        "yours": "system",
        "theirs": "dark",
        "kept": "yours",
        "lost_by": "A",
    }
    assert (first.revision, first.conflict_payloads) == (2, (expected_conflict,))
    await commit_one(store, edit("u1", "a2", {"language": "fr"}, client="A", base=2, at=4_000))
    before = await store.get_document("u1")

    again = await commit_one(store, won)
    assert again == CommitOutcome(
        "u1", "b1", 2, conflict_payloads=(expected_conflict,), repeated=True
    )
    assert await store.get_document("u1") == before
    assert await revisions(store, "u1") == [1, 2, 3]


async def test_a_mutation_that_lost_everywhere_makes_no_revision_but_is_remembered(
    store: Store,
) -> None:
    await commit_one(store, edit("u1", "a1", {"theme": "dark"}, client="A", base=0, at=5_000))
    lost = edit("u1", "b1", {"theme": "system"}, client="B", base=0, at=4_000)
    outcome = await commit_one(store, lost)
    theirs = {"path": "/theme", "yours": "system", "theirs": "dark", "kept": "theirs"}
    assert (outcome.revision, outcome.change, outcome.error) == (1, None, None)
    assert outcome.conflict_payloads == (theirs,)
    assert (await store.get_document("u1")).settings == settings(theme="dark")
    assert await revisions(store, "u1") == [1]
    again = await commit_one(store, lost)
    assert (again.repeated, again.revision, again.conflict_payloads) == (True, 1, (theirs,))


async def test_concurrent_commits_get_distinct_revisions(store: Store) -> None:
    outcomes = await asyncio.gather(
        *(store.commit([edit("u1", f"m{i}", {"preferences": {f"k{i}": i}})]) for i in range(8))
    )
    assert sorted(o.revision for [o] in outcomes) == list(range(1, 9))
    doc = await store.get_document("u1")
    assert doc.settings["preferences"] == {f"k{i}": i for i in range(8)}


# --- secrets ----------------------------------------------------------------------------------


async def test_secrets_are_stored_sealed_and_logged_masked(store: Store, keyring: Keyring) -> None:
    outcome = await commit_one(store, edit("u1", "s1", {"api_keys": {"openai": CANARY}}))
    masked = {"set": True, "last4": CANARY[-4:], "updated_at": NOW_TEXT}
    assert outcome.change is not None
    assert outcome.change.patch == {"api_keys": {"openai": masked}}
    assert outcome.change.inverse == {}

    envelope = (await store.get_document("u1")).settings["api_keys"]["openai"]
    assert is_sealed(envelope)
    assert CANARY not in json.dumps(envelope)
    wrapped = await store.get_wrapped_key("u1")
    assert wrapped is not None and wrapped.master_key_id == keyring.active.id
    data_key = unwrap_data_key(keyring, "u1", wrapped)
    assert open_secret("u1", "openai", envelope, data_key) == CANARY
    [change] = (await store.changes_since("u1", 0, 10)).changes
    assert change.patch == {"api_keys": {"openai": masked}}

    # The second secret of the user is sealed under the same data key.
    await commit_one(store, edit("u1", "s2", {"api_keys": {"other": "short"}}))
    assert await store.get_wrapped_key("u1") == wrapped
    assert await store.count_wrapped_keys() == {keyring.active.id: 1}


async def test_a_refused_secret_write_leaves_no_data_key(store: Store) -> None:
    [outcome] = await store.commit([edit("u1", "s1", {"api_keys": {"k": CANARY}, "theme": "x"})])
    assert isinstance(outcome.error, ValidationError)
    assert await store.get_wrapped_key("u1") is None
    assert await store.get_document("u1") == StoredDocument("u1", 0, default_document(), {})


async def test_secrets_without_a_keyring_are_refused(make_store: MakeStore) -> None:
    store = await make_store(keyring=None)
    outcomes = await store.commit(
        [edit("u1", "s1", {"api_keys": {"k": CANARY}}), edit("u1", "t1", {"theme": "dark"})]
    )
    assert isinstance(outcomes[0].error, ConfigError)
    assert (outcomes[1].revision, outcomes[1].error) == (1, None)


# --- PUT and revert -------------------------------------------------------------------------


async def test_put_replaces_the_document_and_keeps_masked_secrets(store: Store) -> None:
    await history(
        store,
        "u1",
        [{"theme": "dark", "preferences": {"a": 1}}, {"api_keys": {"openai": CANARY, "old": "x"}}],
    )
    sealed = (await store.get_document("u1")).settings["api_keys"]["openai"]
    whole = {
        "language": "fr",
        "preferences": {"b": 2},
        "api_keys": {"openai": {"set": True, "last4": CANARY[-4:]}},
    }
    stale = await commit_one(store, edit("u1", "p0", whole, kind="put", expected=1))
    assert isinstance(stale.error, PreconditionFailed)

    outcome = await commit_one(store, edit("u1", "p1", whole, kind="put", expected=2))
    assert outcome.error is None and outcome.change is not None
    assert outcome.change.patch == {
        "theme": "light",
        "language": "fr",
        "preferences": {"a": None, "b": 2},
        "api_keys": {"old": None},
    }
    doc = await store.get_document("u1")
    assert (doc.revision, doc.settings) == (
        3,
        settings(language="fr", preferences={"b": 2}, api_keys={"openai": sealed}),
    )


async def test_revert_restores_an_earlier_revision_as_a_new_one(store: Store) -> None:
    await history(
        store,
        "u1",
        [
            {"theme": "dark"},
            {"preferences": {"a": 1}, "api_keys": {"k": CANARY}},
            {"theme": "system", "language": "de", "preferences": {"b": [1, 2]}},
        ],
    )
    sealed = (await store.get_document("u1")).settings["api_keys"]["k"]
    outcome = await commit_one(store, edit("u1", "r1", {}, kind="revert", revert_to=1))
    assert outcome.error is None and outcome.change is not None
    assert outcome.revision == 4
    assert outcome.change.patch == {
        "theme": "dark",
        "language": "en",
        "preferences": {"a": None, "b": None},
    }
    doc = await store.get_document("u1")
    # Secrets are not part of a revert: the key set at revision 2 stays.
    assert doc.settings == settings(theme="dark", api_keys={"k": sealed})

    future = await commit_one(store, edit("u1", "r2", {}, kind="revert", revert_to=9))
    assert isinstance(future.error, ValidationError)
    assert future.error.code == "invalid_revision"


async def test_revert_beyond_the_retained_window_is_gone(make_store: MakeStore) -> None:
    store = await make_store(changelog_retain=3)
    await history(store, "u1", [{"preferences": {"n": n}} for n in range(1, 6)])
    assert await revisions(store, "u1", 2) == [3, 4, 5]

    gone = await commit_one(store, edit("u1", "r1", {}, kind="revert", revert_to=1))
    assert isinstance(gone.error, RevisionGone)
    assert gone.error.details == {"oldest": 2}
    ok = await commit_one(store, edit("u1", "r2", {}, kind="revert", revert_to=2))
    assert (ok.revision, ok.error) == (6, None)
    assert (await store.get_document("u1")).settings == settings(preferences={"n": 2})


# --- catching up --------------------------------------------------------------------------


async def test_changes_since_and_snapshots(make_store: MakeStore) -> None:
    store = await make_store(changelog_retain=3)
    await history(store, "u1", [{"preferences": {"n": n}} for n in range(1, 6)])
    doc = await store.get_document("u1")

    page = await store.changes_since("u1", 2, 100)
    assert ([c.revision for c in page.changes], page.revision, page.reset) == ([3, 4, 5], 5, False)
    limited = await store.changes_since("u1", 2, 2)
    assert ([c.revision for c in limited.changes], limited.revision) == ([3, 4], 5)
    assert await store.changes_since("u1", 5, 100) == ChangesPage((), 5, False)
    assert await store.changes_since("u1", 1, 100) == ChangesPage((), 5, True)  # pruned
    assert await store.changes_since("u1", 6, 100) == ChangesPage((), 5, True)  # the future

    snapshot = (doc, ChangesPage((), 5, True))
    assert await store.snapshot_and_changes("u1", None, 100) == snapshot
    assert await store.snapshot_and_changes("u1", 1, 100) == snapshot
    assert await store.snapshot_and_changes("u1", 7, 100) == snapshot
    assert await store.snapshot_and_changes("u1", 3, 1) == snapshot  # more missed than allowed
    missed, page = await store.snapshot_and_changes("u1", 3, 100)
    assert missed is None
    assert [(c.revision, c.patch) for c in page.changes] == [
        (4, {"preferences": {"n": 4}}),
        (5, {"preferences": {"n": 5}}),
    ]
    assert (page.revision, page.reset) == (5, False)
    empty = StoredDocument("u9", 0, default_document(), {})
    assert await store.snapshot_and_changes("u9", 0, 10) == (None, ChangesPage((), 0, False))
    assert await store.snapshot_and_changes("u9", 4, 10) == (empty, ChangesPage((), 0, True))


async def test_mutation_ids_are_forgotten_after_seven_days(store: Store, clock: Clock) -> None:
    first = edit("u1", "m1", {"theme": "dark"})
    await commit_one(store, first)
    clock.now += 8 * 24 * 3600 * 1000
    await commit_one(store, edit("u1", "m2", {"theme": "system"}))
    clock.now += 2 * 3600 * 1000  # pruning runs at most hourly
    again = await commit_one(store, first)
    assert (again.repeated, again.revision) == (False, 3)


# --- users, tokens, revocations -------------------------------------------------------------


async def test_users(store: Store) -> None:
    bob = await store.create_user("id-b", "bob", "hash-b")
    alice = await store.create_user("id-a", "alice", "hash-a")
    assert bob == UserRow("id-b", "bob", "hash-b", NOW_TEXT)
    with pytest.raises(Conflict):
        await store.create_user("id-c", "bob", "hash-c")
    assert await store.get_user("id-b") == bob
    assert await store.get_user_by_username("alice") == alice
    assert await store.get_user("missing") is None
    # Listing never returns a password hash.
    assert await store.list_users() == [
        replace(alice, password_hash=""),
        replace(bob, password_hash=""),
    ]
    assert await store.set_password("id-a", "hash-a2") is True
    assert await store.set_password("missing", "x") is False
    assert (await store.get_user("id-a")) == UserRow("id-a", "alice", "hash-a2", NOW_TEXT)


async def test_remove_user_deletes_everything_of_that_user(store: Store) -> None:
    await store.create_user("u1", "alice", "h")
    await store.add_refresh_token("t1", "u1", "f1", NOW_MS // 1000 + 100)
    await history(store, "u1", [{"theme": "dark"}, {"api_keys": {"k": CANARY}}])
    await history(store, "u2", [{"theme": "dark"}])

    assert await store.remove_user("u1") is True
    assert await store.remove_user("u1") is False
    assert await store.get_user("u1") is None
    assert await store.get_document("u1") == StoredDocument("u1", 0, default_document(), {})
    assert await store.changes_since("u1", 0, 10) == ChangesPage((), 0, False)
    assert await store.get_wrapped_key("u1") is None
    now = NOW_MS // 1000
    assert await store.use_refresh_token("t1", "t2", now + 100, now) == RefreshResult("invalid")
    assert (await store.get_document("u2")).revision == 1
    # The mutation ids went too: the same id is a new mutation.
    outcome = await commit_one(store, edit("u1", "h1", {"theme": "dark"}, at=1))
    assert (outcome.repeated, outcome.revision) == (False, 1)


async def test_refresh_tokens_rotate_and_reuse_revokes_the_family(store: Store) -> None:
    now = NOW_MS // 1000
    await store.create_user("u1", "alice", "h")
    await store.add_refresh_token("t1", "u1", "f1", now + 60)
    await store.add_refresh_token("old", "u1", "f2", now)  # expires this very second
    await store.add_refresh_token("other", "u1", "f3", now + 60)

    assert await store.use_refresh_token("t1", "t2", now + 120, now) == RefreshResult(
        "ok", "u1", "f1"
    )
    assert await store.use_refresh_token("nope", "x", now + 120, now) == RefreshResult("invalid")
    assert await store.use_refresh_token("old", "x", now + 120, now) == RefreshResult("invalid")
    # t1 again: someone replayed it, so its whole family goes — t2 with it.
    assert await store.use_refresh_token("t1", "t3", now + 120, now) == RefreshResult(
        "reused", "u1", "f1"
    )
    assert await store.use_refresh_token("t2", "t4", now + 120, now) == RefreshResult("invalid")
    # Another family is untouched until the user logs out.
    assert await store.use_refresh_token("other", "o2", now + 120, now) == RefreshResult(
        "ok", "u1", "f3"
    )
    assert await store.revoke_refresh_tokens("u1") == 2  # "old" and "o2"
    assert await store.use_refresh_token("o2", "o3", now + 120, now) == RefreshResult("invalid")


async def test_session_revocations_keep_the_newest_per_user(store: Store) -> None:
    await store.revoke_sessions("u1", 1_000)
    await store.revoke_sessions("u2", 2_000)
    await store.revoke_sessions("u1", 3_000)
    rows = await store.revocations_since(0)
    assert [(user, at) for _, user, at in rows] == [("u2", 2_000), ("u1", 3_000)]
    assert rows[0][0] < rows[1][0]
    assert await store.revocations_since(rows[0][0]) == rows[1:]
    assert await store.revocations_since(rows[1][0]) == []


# --- data keys ----------------------------------------------------------------------------


async def test_data_keys_compare_and_set_and_count(store: Store, keyring: Keyring) -> None:
    for user in ("u1", "u2"):
        await commit_one(store, edit(user, "s", {"api_keys": {"k": CANARY}}))
    old_id = keyring.active.id
    assert await store.count_wrapped_keys() == {old_id: 2}

    rotated = Keyring([generate_master_key(), keyring.active])
    new_id = rotated.active.id
    pending = await store.wrapped_keys_not_under(new_id, 10)
    assert [user for user, _ in pending] == ["u1", "u2"]
    assert await store.wrapped_keys_not_under(new_id, 1) == pending[:1]
    user, old = pending[0]
    new = rewrap_data_key(rotated, user, old)
    assert await store.replace_wrapped_key(user, old, new) is True
    assert await store.replace_wrapped_key(user, old, rewrap_data_key(rotated, user, old)) is False
    assert await store.get_wrapped_key(user) == new
    assert await store.count_wrapped_keys() == dict(sorted({old_id: 1, new_id: 1}.items()))
    assert await store.wrapped_keys_not_under(new_id, 10) == pending[1:]
    # The secret opens under the re-wrapped key.
    envelope = (await store.get_document(user)).settings["api_keys"]["k"]
    assert open_secret(user, "k", envelope, unwrap_data_key(rotated, user, new)) == CANARY


# --- export / import, durability ------------------------------------------------------------


async def test_export_then_import_round_trips(
    store: Store, make_store: MakeStore, keyring: Keyring
) -> None:
    await store.create_user("u1", "alice", "hash-1")
    await history(store, "u1", [{"theme": "dark"}, {"api_keys": {"k": CANARY}}])
    await history(store, "u2", [{"preferences": {"x": [1, {"y": None}]}}])
    await store.create_user("u3", "carol", "hash-3")
    exported = [user async for user in store.export_users()]
    assert [(u.user_id, u.username, u.password_hash) for u in exported] == [
        ("u1", "alice", "hash-1"),
        ("u2", None, None),
        ("u3", "carol", "hash-3"),
    ]
    assert exported[1].wrapped_key is None
    assert exported[2].document == StoredDocument("u3", 0, default_document(), {})

    # Through the JSON lines of `livesettings export`.
    lines = [json.dumps(exported_to_json(user)) for user in exported]
    parsed = [exported_from_json(json.loads(line)) for line in lines]
    assert parsed == exported

    target = await make_store("target")
    for user in parsed:
        await target.import_user(user)
    assert [user async for user in target.export_users()] == exported
    for user in exported:
        assert await target.get_document(user.user_id) == user.document
        assert await target.get_wrapped_key(user.user_id) == user.wrapped_key
    imported = await target.get_document("u1")
    wrapped = await target.get_wrapped_key("u1")
    assert wrapped is not None
    envelope = imported.settings["api_keys"]["k"]
    assert open_secret("u1", "k", envelope, unwrap_data_key(keyring, "u1", wrapped)) == CANARY
    with pytest.raises(Conflict):
        await target.import_user(exported[0])
    # The imported document goes on from its revision.
    outcome = await commit_one(target, edit("u1", "after", {"language": "fr"}))
    assert outcome.revision == 3


async def test_a_commit_survives_closing_and_reopening(make_store: MakeStore) -> None:
    store = await make_store("durable")
    await history(store, "u1", [{"theme": "dark"}, {"preferences": {"a": 1}}])
    before = await store.get_document("u1")
    await store.close()

    reopened = await make_store("durable")
    assert await reopened.get_document("u1") == before
    assert await revisions(reopened, "u1") == [1, 2]


# --- SQLite specifics ---------------------------------------------------------------------


def raw(path: Path, sql: str, *params: Any) -> list[Any]:
    """Run SQL on the file directly, as an operator (or an attacker with the file) would."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def db_path(store: Store) -> Path:
    assert isinstance(store, SqliteStore)
    return store.path


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_never_writes_a_plaintext_secret(store: Store, make_store: MakeStore) -> None:
    await commit_one(store, edit("u1", "s1", {"api_keys": {"openai": CANARY}}))
    await commit_one(store, edit("u1", "s2", {"api_keys": {"openai": CANARY + "-2"}}))
    path = db_path(store)
    raw(path, "PRAGMA wal_checkpoint(TRUNCATE)")
    await store.close()
    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    assert path in files
    for file in files:
        assert CANARY.encode() not in file.read_bytes(), file.name
    [(patch,)] = raw(path, "SELECT patch FROM settings_changes WHERE revision = 1")
    assert json.loads(patch) == {
        "api_keys": {"openai": {"set": True, "last4": CANARY[-4:], "updated_at": NOW_TEXT}}
    }


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_file_settings_and_info(store: Store, make_store: MakeStore) -> None:
    path = db_path(store)
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]
    assert await store.info() == {
        "backend": "sqlite",
        "path": str(path.resolve()),
        "sqlite_version": sqlite3.sqlite_version,
        "journal_mode": "wal",
        "synchronous": "FULL",
        "schema_version": SCHEMA_VERSION,
    }
    normal = await make_store("normal", synchronous="normal")
    assert (await normal.info())["synchronous"] == "NORMAL"
    await commit_one(store, edit("u1", "m1", {"theme": "dark"}))
    assert raw(
        path, "SELECT user_id, theme, language, preferences, revision FROM user_preferences"
    ) == [("u1", "dark", "en", "{}", 1)]
    with pytest.raises(ConfigError, match="SQLITE_SYNCHRONOUS"):
        await make_store("bad", setup=False, synchronous="SOMETIMES")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_open_refuses_an_unknown_schema_version(make_store: MakeStore) -> None:
    store = await make_store()
    raw(db_path(store), "UPDATE livesettings_meta SET value = '99' WHERE key = 'schema_version'")
    await store.close()
    again = await make_store(setup=False)
    with pytest.raises(ConfigError, match="schema version 99, newer"):
        await again.open()
    with pytest.raises(ConfigError, match="newer"):
        await again.setup()
    empty = await make_store("empty", setup=False)
    raw(db_path(empty), "CREATE TABLE unrelated (x)")
    with pytest.raises(ConfigError, match="has no livesettings schema"):
        await empty.open()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_a_failing_mutation_rolls_back_alone(store: Store) -> None:
    raw(
        db_path(store),
        "CREATE TRIGGER refuse BEFORE INSERT ON settings_changes WHEN NEW.user_id = 'bad' "
        "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END",
    )
    outcomes = await store.commit(
        [
            edit("u1", "m1", {"theme": "dark"}),
            edit("bad", "m1", {"theme": "dark"}),
            edit("u1", "m2", {"language": "fr"}),
        ]
    )
    assert [(o.revision, type(o.error)) for o in outcomes] == [
        (1, type(None)),
        (0, StorageError),
        (2, type(None)),
    ]
    # The document row written before the failing change row was rolled back with it.
    assert await store.get_document("bad") == StoredDocument("bad", 0, default_document(), {})
    assert await revisions(store, "u1") == [1, 2]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_a_failing_transaction_fails_the_whole_batch(store: Store) -> None:
    await commit_one(store, edit("u1", "m0", {"theme": "system"}))
    raw(
        db_path(store),
        "CREATE TRIGGER doom BEFORE INSERT ON settings_changes WHEN NEW.user_id = 'bad' "
        "BEGIN SELECT RAISE(ROLLBACK, 'the whole transaction goes'); END",
    )
    outcomes = await store.commit(
        [edit("u1", "m1", {"theme": "dark"}), edit("bad", "m1", {"theme": "dark"})]
    )
    assert [type(o.error) for o in outcomes] == [StorageError, StorageError]
    assert all(isinstance(o.error, LiveSettingsError) for o in outcomes)
    doc = await store.get_document("u1")
    assert (doc.revision, doc.settings["theme"]) == (1, "system")
    # The writer is still usable afterwards.
    after = await commit_one(store, edit("u1", "m2", {"theme": "dark"}))
    assert (after.revision, after.error) == (2, None)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_commit_delay_holds_the_commit(make_store: MakeStore) -> None:
    store = await make_store(commit_delay_ms=60)
    started = time.monotonic()
    await commit_one(store, edit("u1", "m1", {"theme": "dark"}))
    assert time.monotonic() - started >= 0.06


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_setup_adopts_a_seed_table(
    tmp_path: Path, make_store: MakeStore, keyring: Keyring
) -> None:
    path = tmp_path / "seed.db"
    raw(
        path,
        "CREATE TABLE user_preferences (id INTEGER PRIMARY KEY, user_id TEXT UNIQUE NOT NULL, "
        "preferences TEXT, api_keys TEXT, ai_providers TEXT, theme TEXT, language TEXT, "
        "created_at TEXT, updated_at TEXT)",
    )
    raw(
        path,
        "INSERT INTO user_preferences (user_id, preferences, api_keys, ai_providers, theme, "
        "language, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        "seed-user",
        '{"font": 14}',
        json.dumps({"openai": CANARY}),
        None,
        "purple",
        "de",
        "2024-01-02 03:04:05",
        None,
    )
    store = await make_store("seed", setup=False)
    lines = await store.setup()
    assert "added column user_preferences.revision" in lines
    assert "user seed-user: reset invalid theme to its default" in lines
    assert "user seed-user: sealed 1 API key(s)" in lines
    assert "adopted 1 existing user_preferences row(s)" in lines
    await store.open()

    doc = await store.get_document("seed-user")
    envelope = doc.settings["api_keys"]["openai"]
    assert (doc.revision, doc.records, doc.created_at) == (0, {}, "2024-01-02 03:04:05")
    assert doc.settings == settings(
        language="de", preferences={"font": 14}, api_keys={"openai": envelope}
    )
    wrapped = await store.get_wrapped_key("seed-user")
    assert wrapped is not None
    assert (
        open_secret("seed-user", "openai", envelope, unwrap_data_key(keyring, "seed-user", wrapped))
        == CANARY
    )
    assert await store.setup() == [f"schema is up to date (version {SCHEMA_VERSION})"]
    outcome = await commit_one(store, edit("seed-user", "m1", {"theme": "dark"}))
    assert outcome.revision == 1
    # The plaintext the seed held is gone from the file, not just from the row.
    raw(path, "PRAGMA wal_checkpoint(TRUNCATE)")
    await store.close()
    assert CANARY.encode() not in path.read_bytes()


async def test_open_store_chooses_the_backend_by_scheme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///nested/dir/rel.db")
    assert isinstance(relative, SqliteStore)
    assert relative.path == Path("nested/dir/rel.db")
    await relative.setup()
    await relative.close()
    assert (tmp_path / "nested" / "dir" / "rel.db").is_file()
    assert sqlite_path(f"sqlite:///{tmp_path}/abs.db") == tmp_path / "abs.db"
    with pytest.raises(ConfigError, match="unsupported database URL"):
        open_store("mysql://localhost/db")
    with pytest.raises(ConfigError, match="names no file"):
        open_store("sqlite:///:memory:")


def test_the_store_package_exports_what_was_meant() -> None:
    import livesettings.store as package

    assert sorted(package.__all__) == [
        "AppliedMutation",
        "ChangeRow",
        "ChangesPage",
        "CommitOutcome",
        "ExportedUser",
        "PendingMutation",
        "RefreshResult",
        "SCHEMA_VERSION",
        "Store",
        "StoredDocument",
        "UserRow",
        "open_store",
    ]
    assert isinstance(SqliteStore("sqlite:///unused.db"), Store)
