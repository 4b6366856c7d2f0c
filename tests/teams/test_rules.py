"""The pure rules of teams: roles, write checks, membership keys, effective settings."""

from __future__ import annotations

import pytest

from livesettings import document
from livesettings.effective import effective, fields_set
from livesettings.errors import Conflict, Forbidden, NotFound, ValidationError
from livesettings.records import Record
from livesettings.teams import (
    check_delete,
    check_remove,
    check_set_role,
    check_write,
    membership_key,
    new_team_id,
    parse_membership_key,
    parse_role,
    parse_team_id,
    team_id_of,
    team_key,
)


def test_team_ids_and_keys() -> None:
    team_id = new_team_id()
    assert parse_team_id(team_id) == team_id
    for bad in ("", "x", team_id.upper(), "{" + team_id + "}"):
        with pytest.raises(NotFound):
            parse_team_id(bad)
    assert team_id_of(team_key(team_id)) == team_id
    assert team_id_of("alice") is None
    key = membership_key(team_id, "auth0|ada/x")
    assert parse_membership_key(key) == (team_id, "auth0|ada/x")
    assert parse_membership_key(team_key(team_id)) is None
    assert parse_role("viewer") == "viewer"
    with pytest.raises(ValidationError):
        parse_role("boss")


@pytest.mark.parametrize(
    ("role", "patch", "refused_at"),
    [
        ("owner", {"api_keys": {"k": "v"}}, None),
        ("admin", {"api_keys": {"k": None}}, None),
        ("member", {"theme": "dark", "preferences": {"a": {"b": 1}}}, None),
        ("member", {"ai_providers": None, "language": "fr"}, None),
        ("member", {"theme": "dark", "api_keys": {"k": "v"}}, "/api_keys/k"),
        ("member", {"api_keys": None}, "/api_keys"),
        ("viewer", {"preferences": {"a": 1}}, "/preferences/a"),
        ("viewer", {}, "/"),
    ],
)
def test_what_each_role_may_write(
    role: str, patch: dict[str, object], refused_at: str | None
) -> None:
    if refused_at is None:
        check_write(role, patch)
        return
    with pytest.raises(Forbidden) as refused:
        check_write(role, patch)
    assert refused.value.details == {"path": refused_at}


def test_a_whole_document_needs_an_admin() -> None:
    check_write("admin", {"theme": "dark"}, whole=True)
    with pytest.raises(Forbidden):
        check_write("member", {"theme": "dark"}, whole=True)


def test_managing_members() -> None:
    check_set_role("owner", None, "owner", 1)
    check_set_role("admin", None, "admin", 1)
    check_set_role("admin", "member", "viewer", 1)
    for actor, old, new in (("admin", "owner", "admin"), ("admin", None, "owner")):
        with pytest.raises(Forbidden):
            check_set_role(actor, old, new, 2)
    for actor in ("member", "viewer"):
        with pytest.raises(Forbidden):
            check_set_role(actor, None, "viewer", 1)
    with pytest.raises(Conflict) as last:
        check_set_role("owner", "owner", "admin", 1)
    assert last.value.code == "last_owner"
    check_set_role("owner", "owner", "admin", 2)
    check_set_role(None, "owner", "admin", 2, operator=True)
    with pytest.raises(Conflict):
        check_set_role(None, "owner", "member", 1, operator=True)
    # Removal: anyone leaves, admins remove below owner, the last owner stays.
    check_remove("viewer", "viewer", 1, self_removal=True)
    check_remove("admin", "member", 1, self_removal=False)
    with pytest.raises(Forbidden):
        check_remove("admin", "owner", 2, self_removal=False)
    with pytest.raises(Forbidden):
        check_remove("member", "viewer", 1, self_removal=False)
    with pytest.raises(Conflict):
        check_remove("owner", "owner", 1, self_removal=True)
    check_delete("owner")
    check_delete(None, operator=True)
    with pytest.raises(Forbidden):
        check_delete("admin")


def test_effective_settings_put_the_user_over_the_team_over_the_default() -> None:
    team = {
        "theme": "dark",
        "language": "de",
        "preferences": {"a": 1, "b": {"c": 1, "d": 1}, "e": [1]},
        "ai_providers": {"default": "openai"},
        "api_keys": {"shared": {"set": True, "updated_at": "t"}, "mine": {"set": True}},
    }
    personal = {
        "theme": "light",  # the default, but written by the user
        "language": "en",  # the default, never written
        "preferences": {"b": {"d": 2}, "e": {"x": 1}},
        "ai_providers": {},
        "api_keys": {"mine": {"set": True, "last4": "wxyz"}},
    }
    result = effective(team, personal, team_set={"theme", "language"}, personal_set={"theme"})
    assert result == {
        "theme": "light",
        "language": "de",
        "preferences": {"a": 1, "b": {"c": 1, "d": 2}, "e": {"x": 1}},
        "ai_providers": {"default": "openai"},
        "api_keys": {
            "shared": {"set": True, "updated_at": "t"},
            "mine": {"set": True, "last4": "wxyz"},
        },
    }
    # Without records, a value counts as set when it is not the default.
    assert effective(team, personal)["theme"] == "dark"
    assert effective({}, {})["theme"] == "light"
    assert document.effective is effective  # DESIGN §11 names it document.effective
    records = {("theme",): Record(3, 1, "c"), ("language",): Record(4, 1, "c", deleted=True)}
    assert fields_set(records) == frozenset({"theme"})
