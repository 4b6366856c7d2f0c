"""``postgres_changes`` bindings and events (``realtime_changes``), and a user's row kept
current from the hub's change frames (``realtime_feed``): pure functions, no server."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from livesettings.document import rfc3339
from livesettings.errors import LiveSettingsError
from livesettings.server.compat import realtime_changes
from livesettings.server.compat.realtime_changes import (
    authorize,
    binding_id,
    change_payloads,
    parse_bindings,
)
from livesettings.server.compat.realtime_feed import Feed, Follower, Step
from livesettings.server.compat.rows import COLUMNS
from livesettings.store.base import StoredDocument


def binding(user: str = "u1", **fields: Any) -> dict[str, Any]:
    return {
        "event": "*",
        "schema": "public",
        "table": "user_preferences",
        "filter": f"user_id=eq.{user}",
        **fields,
    }


def test_bindings_are_echoed_verbatim_with_stable_integer_ids() -> None:
    raw = [binding(), binding(event="update"), None, binding("auth0|42", select=["theme"])]
    parsed = parse_bindings({"postgres_changes": raw, "broadcast": {"self": False}})
    assert [b.event for b in parsed] == ["*", "UPDATE", "*"]
    assert [b.user_id for b in parsed] == ["u1", "u1", "auth0|42"]
    assert parsed[2].select == ("theme",)
    assert parsed[1].echo() == {**raw[1], "id": parsed[1].id}
    assert len({b.id for b in parsed}) == 3
    assert parse_bindings({"postgres_changes": [binding()]})[0].id == parsed[0].id
    assert binding_id({"a": 1, "b": 2}) == binding_id({"b": 2, "a": 1})
    assert parse_bindings(None) == [] and parse_bindings({"broadcast": {}}) == []


@pytest.mark.parametrize(
    ("config", "code", "words"),
    [
        ("x", "invalid_join_payload", "config must be an object"),
        ({"postgres_changes": {}}, "invalid_join_payload", "must be a list"),
        ({"postgres_changes": ["x"]}, "invalid_join_payload", "must be an object"),
        ({"postgres_changes": [binding(event="TRUNCATE")]}, "invalid_join_payload", "event"),
        ({"postgres_changes": [binding(schema="auth")]}, "unsupported_binding", "schema 'auth'"),
        ({"postgres_changes": [binding(table="todos")]}, "unsupported_binding", "table 'todos'"),
        ({"postgres_changes": [binding(filter=None)]}, "unsupported_binding", "filter none"),
        (
            {"postgres_changes": [binding(filter="user_id=neq.u1")]},
            "unsupported_binding",
            "filter 'user_id=neq.u1'",
        ),
        ({"postgres_changes": [binding(filter="user_id=eq.")]}, "unsupported_binding", "1 to"),
        ({"postgres_changes": [binding(select="theme")]}, "invalid_join_payload", "select"),
        ({"postgres_changes": [binding(select=["nope"])]}, "unsupported_binding", "'nope'"),
        ({"postgres_changes": [binding()] * 101}, "invalid_join_payload", "at most 100"),
    ],
)
def test_unsupported_bindings_are_refused_with_a_reason(config: Any, code: str, words: str) -> None:
    with pytest.raises(LiveSettingsError) as refused:
        parse_bindings(config)
    assert refused.value.code == code
    assert words in refused.value.message
    prefix = "InvalidJoinPayload: " if code == "invalid_join_payload" else "RealtimeDisabled"
    assert refused.value.message.startswith(prefix)


def test_a_user_follows_only_itself_a_service_anyone() -> None:
    mine = parse_bindings({"postgres_changes": [binding("u1")]})
    theirs = parse_bindings({"postgres_changes": [binding("u1"), binding("u2")]})
    authorize(mine, "u1", service=False)
    authorize(theirs, "svc", service=True)
    with pytest.raises(LiveSettingsError) as refused:
        authorize(theirs, "u1", service=False)
    assert refused.value.message.startswith("Unauthorized: ")


ROW = {
    "id": 7,
    "user_id": "u1",
    "theme": "dark",
    "language": "en",
    "preferences": {},
    "ai_providers": {},
    "api_keys": {},
    "created_at": "c",
    "updated_at": "u",
}


def test_events_carry_the_ids_of_the_bindings_that_want_them() -> None:
    bindings = parse_bindings(
        {
            "postgres_changes": [
                binding(),
                binding(event="INSERT"),
                binding(event="DELETE"),
                binding("u2"),
                binding(event="UPDATE", select=["theme"]),
            ]
        }
    )
    ids = [b.id for b in bindings]
    update = change_payloads(bindings, "u1", "UPDATE", ROW, commit_timestamp="T")
    assert len(update) == 2  # the whole row, and the select of the last binding
    assert update[0] == {
        "ids": [ids[0]],
        "data": {
            "schema": "public",
            "table": "user_preferences",
            "commit_timestamp": "T",
            "type": "UPDATE",
            "columns": COLUMNS,
            "record": ROW,
            "old_record": {"id": 7},
            "errors": None,
        },
    }
    assert update[1]["ids"] == [ids[4]]
    assert update[1]["data"]["record"] == {"id": 7, "theme": "dark"}
    assert update[1]["data"]["columns"] == [
        {"name": "id", "type": "int8"},
        {"name": "theme", "type": "text"},
    ]
    insert = change_payloads(bindings, "u1", "INSERT", ROW, commit_timestamp="T")
    assert [p["ids"] for p in insert] == [[ids[0], ids[1]]]
    assert "old_record" not in insert[0]["data"] and insert[0]["data"]["record"] == ROW
    delete = change_payloads(bindings, "u1", "DELETE", ROW, commit_timestamp="T")
    assert delete[0]["ids"] == [ids[0], ids[2]] and "record" not in delete[0]["data"]
    assert delete[0]["data"]["old_record"] == {"id": 7}
    assert change_payloads(bindings, "u3", "UPDATE", ROW, commit_timestamp="T") == []
    twice = parse_bindings({"postgres_changes": [binding(), binding()]})
    assert change_payloads(twice, "u1", "UPDATE", ROW, commit_timestamp="T")[0]["ids"] == [
        twice[0].id
    ]


def _view(settings: dict[str, Any]) -> dict[str, Any]:
    return dict(settings)


def _doc(revision: int, settings: dict[str, Any], created: str | None = None) -> StoredDocument:
    return StoredDocument("u1", revision, settings, {}, updated_at=created, created_at=created)


def test_a_feed_applies_each_change_in_order_and_knows_insert_from_update() -> None:
    feed = Feed.of("u1", _doc(0, {"theme": "light", "preferences": {}}), None, _view)
    follower = Follower("realtime:p", parse_bindings({"postgres_changes": [binding()]}), since=3)
    feed.followers.add(follower)
    assert feed.step(1, {"preferences": {"a": 1}}, 1_000) is Step.APPLIED
    assert feed.last_change == "INSERT" and feed.exists
    assert feed.created_at == feed.updated_at == rfc3339(1_000)
    assert feed.events("INSERT", 3) == []  # queued before the channel followed
    feed.row_id = 11
    [event] = feed.events("INSERT", 4)
    assert event.topic == "realtime:p" and event.event == "postgres_changes"
    record = event.payload["data"]["record"]
    assert record["id"] == 11 and record["preferences"] == {"a": 1} and record["theme"] == "light"
    assert feed.step(1, {"theme": "dark"}, 2_000) is Step.SEEN
    assert feed.step(2, {"preferences": {"a": None, "b": 2}}, 2_000) is Step.APPLIED
    assert feed.last_change == "UPDATE" and feed.created_at == rfc3339(1_000)
    assert feed.row()["preferences"] == {"b": 2} and feed.row()["updated_at"] == rfc3339(2_000)
    assert feed.step(4, {"theme": "dark"}, 3_000) is Step.GAP
    assert feed.revision == 2 and feed.settings["theme"] == "light"
    feed.reset(_doc(4, {"theme": "dark"}, "2026-01-01T00:00:00.000Z"), 11)
    assert feed.row()["theme"] == "dark" and feed.row()["preferences"] == {}


def test_a_document_adopted_from_the_seed_table_is_updated_not_inserted() -> None:
    feed = Feed.of("u1", _doc(0, {}, "2025-05-05T00:00:00.000Z"), 3, _view)
    assert feed.step(1, {"theme": "dark"}, 5_000) is Step.APPLIED
    assert feed.last_change == "UPDATE"
    assert feed.created_at == "2025-05-05T00:00:00.000Z"
    assert Feed.of("u1", _doc(0, {}), None, _view).events("UPDATE", 9) == []  # no row yet


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(realtime_changes).failed == 0
