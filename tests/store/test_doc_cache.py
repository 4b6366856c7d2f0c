"""The writer's document cache never serves a stale document: whatever else writes a row (a
second store on the same database — another node, a CLI process —, a key renewal, a removed
user, an import), the next commit decodes what is stored. And while nothing else writes, the
commit does not decode the document again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from livesettings.document import (
    DEFAULT_LIMITS,
    Limits,
    PreferencesSchema,
    default_for,
    validate_document,
)
from livesettings.errors import LiveSettingsError
from livesettings.merge import Mutation
from livesettings.store import CommitOutcome, PendingMutation, Store, StoredDocument
from livesettings.store.doc_cache import (
    DECODED_PER_STORED,
    DocumentCache,
    PendingDocuments,
    document_columns,
)
from livesettings.store.planning import body_hash, validated_settings
from livesettings.store.sqlite import SqliteStore
from tests.cli.conftest import OLD, Cli, ok

from .conftest import MakeStore

USER = "3f1d2a4e-5b6c-4d7e-8f90-a1b2c3d4e5f6"
_count = 0


def edit(user_id: str, patch: dict[str, Any], client: str = "c1") -> PendingMutation:
    global _count
    _count += 1
    mutation = Mutation(f"m{_count}", client, None, patch, 1_000)
    return PendingMutation(user_id, mutation, body_hash("patch", patch))


async def write(store: Store, patch: dict[str, Any], user_id: str = USER) -> CommitOutcome:
    [outcome] = await store.commit([edit(user_id, patch)])
    assert outcome.error is None, outcome.error
    return outcome


def cache_of(store: Store) -> DocumentCache:
    documents: DocumentCache = store._commits.documents  # type: ignore[attr-defined]
    return documents


async def second_store(make_store: MakeStore) -> Store:
    """Another store on the same database (another node, or another process's store)."""
    other = await make_store("main", setup=False)
    await other.open()
    return other


async def test_the_cached_copy_is_used_and_equals_the_stored_document(
    make_store: MakeStore,
) -> None:
    store = await make_store()
    await write(store, {"preferences": {f"k{i}": i for i in range(50)}})
    for i in range(5):
        await write(store, {"preferences": {"k0": -i}, "theme": "dark" if i % 2 else "light"})
    cache = cache_of(store)
    assert cache.hits >= 5
    cached = cache.get(USER, cache.token_of(USER))
    assert cached is not None
    stored = await store.get_document(USER)
    assert (cached.revision, cached.settings, cached.records) == (
        stored.revision,
        stored.settings,
        stored.records,
    )
    assert stored.revision == 6 and stored.settings["preferences"]["k0"] == -4


async def test_a_write_by_another_store_is_seen_by_the_next_commit(make_store: MakeStore) -> None:
    node_a = await make_store()
    node_b = await second_store(make_store)
    await write(node_a, {"preferences": {"a": 1}})
    await write(node_a, {"preferences": {"b": 1}})  # node A's copy is now cached
    assert (await write(node_b, {"preferences": {"c": 1}})).revision == 3
    outcome = await write(node_a, {"theme": "dark"})
    assert outcome.revision == 4
    assert outcome.settings is not None
    assert outcome.settings["preferences"] == {"a": 1, "b": 1, "c": 1}
    # Node B's leaf record survived A's write: a concurrent older edit of /preferences/c loses.
    stored = await node_a.get_document(USER)
    assert stored.records[("preferences", "c")].rev == 3


async def test_a_key_renewal_elsewhere_is_not_written_back_over(make_store: MakeStore) -> None:
    """Renewal re-seals the secrets without a new revision: a commit from a stale copy would
    put back envelopes sealed under the replaced data key."""
    node_a = await make_store()
    node_b = await second_store(make_store)
    await write(node_a, {"api_keys": {"openai": "sk-first-secret-0001"}})
    await write(node_a, {"theme": "dark"})
    before = (await node_a.get_document(USER)).settings["api_keys"]["openai"]
    assert await node_b.renew_data_key(USER) == 1
    renewed = (await node_a.get_document(USER)).settings["api_keys"]["openai"]
    assert renewed != before
    outcome = await write(node_a, {"theme": "light"})
    assert outcome.revision == 3
    assert (await node_a.get_document(USER)).settings["api_keys"]["openai"] == renewed


async def test_a_removed_user_starts_again_from_revision_one(make_store: MakeStore) -> None:
    node_a = await make_store()
    node_b = await second_store(make_store)
    await write(node_a, {"preferences": {"old": 1}})
    await write(node_a, {"preferences": {"older": 2}})
    await node_b.remove_user(USER)
    outcome = await write(node_a, {"preferences": {"new": 3}})
    assert outcome.revision == 1
    assert outcome.settings is not None and outcome.settings["preferences"] == {"new": 3}


async def test_team_documents_are_cached_and_checked_too(make_store: MakeStore) -> None:
    team_id = "8c5a1e7e-0a4b-4c0e-9d7a-0f6b2c1d3e4f"
    key = f"team:{team_id}"
    node_a = await make_store()
    node_b = await second_store(make_store)
    owner = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
    await node_a.create_user(owner, "owner", "x")
    await node_a.teams.create_team(team_id, "Design", owner, max_teams=10)
    await node_a.commit([edit_as(key, {"preferences": {"a": 1}}, owner)])
    await node_a.commit([edit_as(key, {"preferences": {"b": 1}}, owner)])
    [by_b] = await node_b.commit([edit_as(key, {"preferences": {"c": 1}}, owner)])
    assert by_b.error is None and by_b.revision == 3
    [outcome] = await node_a.commit([edit_as(key, {"theme": "dark"}, owner)])
    assert outcome.error is None and outcome.revision == 4
    assert outcome.settings is not None
    assert outcome.settings["preferences"] == {"a": 1, "b": 1, "c": 1}


def edit_as(key: str, patch: dict[str, Any], actor: str) -> PendingMutation:
    pending = edit(key, patch)
    return PendingMutation(pending.user_id, pending.mutation, pending.body_hash, actor=actor)


async def test_a_failed_batch_caches_nothing(make_store: MakeStore) -> None:
    store = await make_store()
    await write(store, {"preferences": {"a": 1}})
    token = cache_of(store).token_of(USER)
    assert token is not None
    pending = PendingDocuments(cache_of(store))
    pending.add(USER, StoredDocument(USER, 99, {}, {}), "never stored", 1)
    pending.failed()
    assert cache_of(store).token_of(USER) is None  # forgotten, decoded again next time
    assert (await write(store, {"preferences": {"b": 1}})).revision == 2


def test_a_sqlite_cli_user_remove_and_import_are_seen(tmp_path: Path) -> None:
    """The operator's CLI writes the same file from another store (another process in real
    life): the serving store's next commit sees it."""
    run_cli = Cli(tmp_path / "data", LIVESETTINGS_MASTER_KEYS=OLD)
    out = ok(run_cli("user", "add", "alice", "--password-stdin", input="correct horse 1\n"))
    alice = out.split("(id ")[1].rstrip(")\n")
    loop = asyncio.new_event_loop()
    store = SqliteStore(f"sqlite:///{run_cli.db}")
    try:
        loop.run_until_complete(store.open())
        loop.run_until_complete(write(store, {"preferences": {"a": 1}}, alice))
        loop.run_until_complete(write(store, {"preferences": {"b": 2}}, alice))
        exported = tmp_path / "export.jsonl"
        ok(run_cli("export", "--output", str(exported)))  # revision 2
        loop.run_until_complete(write(store, {"preferences": {"x": 9}, "theme": "dark"}, alice))
        ok(run_cli("user", "remove", "alice", "--yes"))
        ok(run_cli("import", "--input", str(exported)))  # back to revision 2, from the file
        outcome = loop.run_until_complete(write(store, {"preferences": {"c": 3}}, alice))
        assert outcome.revision == 3
        assert outcome.settings is not None
        assert outcome.settings["preferences"] == {"a": 1, "b": 2, "c": 3}
        assert outcome.settings["theme"] == default_for("theme") != "dark"
        ok(run_cli("user", "remove", "alice", "--yes"))
        outcome = loop.run_until_complete(write(store, {"language": "de"}, alice))
        assert outcome.revision == 1
        assert outcome.settings is not None and outcome.settings["preferences"] == {}
    finally:
        loop.run_until_complete(store.close())
        loop.close()


def test_the_cache_is_bounded_by_count_and_bytes() -> None:
    cache = DocumentCache(max_documents=3, max_bytes=100 * DECODED_PER_STORED)
    doc = StoredDocument("u", 1, {}, {})
    for key in "abcd":
        cache.put(key, doc, key, 10)
    assert len(cache) == 3 and cache.token_of("a") is None  # the least recently used went
    assert cache.bytes == 30 * DECODED_PER_STORED
    assert cache.get("b", "b") is doc  # now the most recent
    cache.put("e", doc, "e", 75)
    assert cache.bytes <= cache.max_bytes
    assert cache.token_of("c") is None and cache.token_of("b") == "b"
    cache.put("huge", doc, "huge", 101)
    assert cache.token_of("huge") is None
    assert cache.get("b", "other token") is None and cache.token_of("b") is None
    assert DocumentCache(max_documents=0).token_of("x") is None


def test_document_columns_are_the_codecs() -> None:
    from livesettings.records import Record
    from livesettings.store.codec import document_to_columns

    doc = StoredDocument(
        "u",
        3,
        validate_document({"preferences": {"a/b": {"c~d": 1}}, "theme": "dark"}),
        {("preferences", "a/b", "c~d"): Record(3, 5, "c1"), ("theme",): Record(2, 4, "c2", True)},
        "2025-01-01T00:00:00.000Z",
        None,
    )
    assert document_columns(doc) == document_to_columns(doc)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"preferences": {"a": 1}}, {"preferences": {"a": 1, "b": {"c": "x"}}}),
        ({"theme": "dark"}, {"theme": "light"}),
        ({"preferences": {"a": 1}}, {"preferences": {"a": "é" * 300}}),  # too large
        ({"preferences": {"a": 1}}, {"preferences": {"a": 1}, "language": "english"}),
        ({"preferences": {"a": 1}}, {"preferences": {"a": {"b": None, "c": {}}}}),
        ({"preferences": {"a": 1}}, {"preferences": {"a": 1}, "bogus": 1}),
        ({"preferences": {"n": 1}}, {"preferences": {"n": "text"}}),  # schema
    ],
)
def test_validating_only_the_changed_fields_decides_as_the_whole_document(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    limits = Limits(max_document_bytes=500)
    schema = PreferencesSchema(
        {"type": "object", "properties": {"n": {"type": "integer", "default": 0}}}
    )
    for use in (None, schema):
        trusted = validate_document(before, limits, use)
        merged = {**trusted, **{k: v for k, v in after.items()}}
        try:
            expected: Any = validate_document(dict(merged), limits, use)
        except LiveSettingsError as exc:
            expected = (type(exc), exc.code, str(exc))
        try:
            got: Any = validated_settings(merged, limits, use, trusted=trusted)
        except LiveSettingsError as exc:
            got = (type(exc), exc.code, str(exc))
        assert got == expected
    assert validated_settings(trusted, DEFAULT_LIMITS, None, trusted=trusted) == trusted
