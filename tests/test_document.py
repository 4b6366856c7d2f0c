"""The settings document: shape, limits, validation, merge patches, masking, preferences schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path as FilePath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livesettings.config import load_preferences_schema
from livesettings.document import (
    DEFAULT_LIMITS,
    FIELDS,
    THEMES,
    Limits,
    PreferencesSchema,
    apply_patch,
    default_document,
    default_for,
    diff,
    is_sealed,
    is_secret_path,
    json_size,
    last4_of,
    mask_document,
    mask_patch,
    mask_secret,
    rfc3339,
    validate_document,
    validate_patch,
)
from livesettings.errors import ConfigError, KeyTooLong, TooDeep, TooLarge, ValidationError

NOW = datetime(2026, 11, 28, 17, 1, 19, 123000, tzinfo=UTC)
SEALED: dict[str, Any] = {
    "$sealed": 1,
    "kid": "dk1",
    "nonce": "bm9uY2U=",
    "ct": "Y2lwaGVy",
    "last4": "x9Qz",
    "updated_at": "2026-11-28T17:01:19.123Z",
}


def canonical(value: Any) -> str:
    """Strict JSON equality: 1, 1.0 and true differ, and so do 0.0 and -0.0."""
    return json.dumps(value, sort_keys=True)


def reject(exc_type: type[Exception], func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``func`` expecting exactly ``exc_type`` and return the exception."""
    with pytest.raises(exc_type) as info:
        func(*args, **kwargs)
    assert type(info.value) is exc_type
    return info.value


def invalid(patch: Any, code: str, path: str, **kwargs: Any) -> ValidationError:
    err: ValidationError = reject(ValidationError, validate_patch, patch, **kwargs)
    assert (err.code, err.path, err.details) == (code, path, {"path": path})
    return err


# --- shape ----------------------------------------------------------------------------------


def test_fields_themes_and_defaults() -> None:
    assert FIELDS == ("theme", "language", "preferences", "ai_providers", "api_keys")
    assert THEMES == ("light", "dark", "system")
    doc = default_document()
    assert doc == {
        "theme": "light",
        "language": "en",
        "preferences": {},
        "ai_providers": {},
        "api_keys": {},
    }
    assert list(doc) == list(FIELDS)
    doc["preferences"]["a"] = 1
    assert default_document()["preferences"] == {}
    prefs = default_for("preferences")
    prefs["b"] = 2
    assert default_for("preferences") == {}
    assert [default_for(name) for name in FIELDS] == ["light", "en", {}, {}, {}]
    with pytest.raises(KeyError):
        default_for("colour")


def test_limits() -> None:
    assert Limits(262144, 65536, 32, 256, 4096) == DEFAULT_LIMITS
    assert Limits(max_depth=5).max_depth == 5
    for bad in (0, -1, True, 1.5):
        reject(ConfigError, Limits, max_patch_bytes=bad)


def test_json_size() -> None:
    assert json_size({"a": "é"}) == 10  # {"a":"é"} — é is two bytes
    assert json_size({"a": [1, 2], "b": None}) == len('{"a":[1,2],"b":null}')
    assert json_size("🔑") == 6


# --- validate_patch ---------------------------------------------------------------------------


@pytest.mark.parametrize("patch", [None, [], "theme", 1, True])
def test_patch_must_be_an_object(patch: Any) -> None:
    err = invalid(patch, "invalid", "")
    assert err.message.startswith("a settings patch must be a JSON object, got ")


def test_empty_patch_and_copy() -> None:
    assert validate_patch({}) == {}
    patch = {"preferences": {"a": {"b": None}, "c": {}}, "theme": None}
    out = validate_patch(patch)
    assert out == patch
    assert out is not patch


def test_patch_size_at_and_over_limit() -> None:
    base = json_size({"preferences": {"s": ""}})
    assert base == 24
    limit = DEFAULT_LIMITS.max_patch_bytes
    at_limit = {"preferences": {"s": "x" * (limit - base)}}
    assert json_size(at_limit) == limit
    assert validate_patch(at_limit) == at_limit
    over = {"preferences": {"s": "x" * (limit - base + 1)}}
    err = reject(TooLarge, validate_patch, over)
    assert err.code == "too_large"
    assert err.details == {"limit": 65536, "size": 65537}
    assert err.message == "the patch is 65537 bytes of JSON; the limit is 65536 bytes"
    # multi-byte characters count as bytes
    small = Limits(max_patch_bytes=30)
    assert validate_patch({"preferences": {"s": "éé"}}, small)  # 24 + 4 = 28
    assert reject(TooLarge, validate_patch, {"preferences": {"s": "ééé1"}}, small).details == {
        "limit": 30,
        "size": 31,
    }


@pytest.mark.parametrize("name", ["colour", "Theme", "", "revision"])
def test_unknown_field(name: str) -> None:
    err = invalid({"theme": "dark", name: 1}, "unknown_field", "/" + name)
    assert err.message == (
        f"/{name} is not a settings field; expected one of "
        "theme, language, preferences, ai_providers, api_keys"
    )


@pytest.mark.parametrize("theme", ["light", "dark", "system", None])
def test_valid_theme(theme: str | None) -> None:
    assert validate_patch({"theme": theme}) == {"theme": theme}


@pytest.mark.parametrize("theme", ["blue", "Dark", "", 1, True, [], {}])
def test_invalid_theme(theme: Any) -> None:
    invalid({"theme": theme}, "invalid_value", "/theme")


def test_invalid_theme_message() -> None:
    err = invalid({"theme": "blue"}, "invalid_value", "/theme")
    assert err.message == (
        '/theme must be "light", "dark" or "system" (or null for the default), got \'blue\''
    )


VALID_LANGUAGES = [
    "en",
    "EN",
    "en-US",
    "en-us",
    "zh-Hant-TW",
    "sr-Latn-RS",
    "de-CH-1996",
    "es-419",
    "zh-yue-HK",
    "sl-rozaj-biske",
    "en-US-u-ca-gregory",
    "en-a-bbb-x-a-ccc",
    "qaa-Qaaa-QM-x-southern",
    "x-private",
    "X-whatever-a",
    "i-klingon",
    "I-KLINGON",
    "en-GB-oed",
    "zh-min-nan",
    "art-lojban",
    "en-x-abcdefgh-abcdefgh-abcdefgh-abc",  # 35 characters
    None,
]
INVALID_LANGUAGES = [
    "english",
    "en_US",
    "e",
    "en-x-abcdefgh-abcdefgh-abcdefgh-abcd",  # 36 characters
    "",
    "en-",
    "-en",
    "en--US",
    "en-x",
    "x",
    "x-abcdefghi",
    "en-US-",
    "en US",
    "en\n",
    "abcd",
    "1en",
    "en-\u212a\u212a",  # Kelvin signs fold to "k" under a Unicode-aware case-insensitive regex
    "i-foo",
    1,
    ["en"],
    {},
]


@pytest.mark.parametrize("tag", VALID_LANGUAGES)
def test_valid_language(tag: str | None) -> None:
    assert validate_patch({"language": tag}) == {"language": tag}


@pytest.mark.parametrize("tag", INVALID_LANGUAGES)
def test_invalid_language(tag: Any) -> None:
    invalid({"language": tag}, "invalid_value", "/language")


def test_language_length_boundary() -> None:
    assert len("en-x-abcdefgh-abcdefgh-abcdefgh-abc") == 35
    assert len("en-x-abcdefgh-abcdefgh-abcdefgh-abcd") == 36


@pytest.mark.parametrize("field", ["preferences", "ai_providers", "api_keys"])
@pytest.mark.parametrize("value", [None, {}])
def test_object_fields_accept_null_or_object(field: str, value: Any) -> None:
    assert validate_patch({field: value}) == {field: value}


@pytest.mark.parametrize("field", ["preferences", "ai_providers", "api_keys"])
@pytest.mark.parametrize("value", ["x", 1, [], True])
def test_object_fields_reject_other_values(field: str, value: Any) -> None:
    err = invalid({field: value}, "invalid_value", "/" + field)
    assert err.message.startswith(f"/{field} must be an object (or null for the default), got ")


def test_nested_values_in_patch() -> None:
    patch = {
        "preferences": {"a": {"b": None, "c": [1, None, {"d": None}], "e": 1.5, "f": True}},
        "ai_providers": {"default": "openai", "openai": {"model": "gpt"}},
    }
    assert validate_patch(patch) == patch


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (float("nan"), "/preferences/v"),
        (float("inf"), "/preferences/v"),
        ({1, 2}, "/preferences/v"),
        ((1, 2), "/preferences/v"),
        (b"x", "/preferences/v"),
        ("\ud800", "/preferences/v"),
        ([1, float("-inf")], "/preferences/v/1"),
    ],
)
def test_non_json_values(value: Any, path: str) -> None:
    invalid({"preferences": {"v": value}}, "invalid_value", path)


def test_non_string_and_surrogate_keys() -> None:
    invalid({"preferences": {1: "x"}}, "invalid_key", "/preferences/1")
    invalid({"preferences": {"\udc00": "x"}}, "invalid_key", "/preferences/\udc00")


@pytest.mark.parametrize(
    "secret",
    [None, "k", "sk-" + "a" * 40, "x" * 4096, "ключ 🔑 with spaces"],
)
def test_valid_api_key_values(secret: str | None) -> None:
    assert validate_patch({"api_keys": {"openai": secret}}) == {"api_keys": {"openai": secret}}


@pytest.mark.parametrize(
    "secret",
    ["", "x" * 4097, "abc\ndef", "tab\there", "nul\x00", "del\x7f", "c1\x85", "\ud800abc"],
)
def test_invalid_api_key_strings(secret: str) -> None:
    err = invalid({"api_keys": {"openai": secret}}, "invalid_value", "/api_keys/openai")
    assert err.message.startswith("the secret at /api_keys/openai ")
    assert err.message.endswith(
        "expected a non-empty string of at most 4096 characters without control characters"
    )
    if len(secret) > 3:
        assert secret not in err.message and secret[-4:] not in err.message


@pytest.mark.parametrize("secret", [1, True, [], {"k": "v"}, SEALED])
def test_invalid_api_key_types(secret: Any) -> None:
    err = invalid({"api_keys": {"openai": secret}}, "invalid_value", "/api_keys/openai")
    assert err.message.startswith(
        "/api_keys/openai must be a non-empty string (or null to delete it), got "
    )


def test_secret_length_limit_is_configurable() -> None:
    limits = Limits(max_secret_length=8)
    assert validate_patch({"api_keys": {"a": "12345678"}}, limits)
    invalid({"api_keys": {"a": "123456789"}}, "invalid_value", "/api_keys/a", limits=limits)


def nested(depth: int, leaf: Any = 1) -> dict[str, Any]:
    """``{"preferences": {"k2": {… "k<depth>": leaf}}}``: the leaf is ``depth`` segments deep."""
    node: Any = leaf
    for level in range(depth, 1, -1):
        node = {f"k{level}": node}
    return {"preferences": node}


def deep_pointer(depth: int) -> str:
    return "/preferences" + "".join(f"/k{level}" for level in range(2, depth + 1))


def test_depth_at_and_over_limit() -> None:
    assert validate_patch(nested(32)) == nested(32)
    err = reject(TooDeep, validate_patch, nested(33))
    assert err.code == "too_deep"
    assert err.path == deep_pointer(33)
    assert err.details == {"path": deep_pointer(33), "limit": 32}
    # an object at the limit is fine, as long as it holds nothing deeper
    assert validate_patch(nested(32, {}))
    assert reject(TooDeep, validate_patch, nested(32, {"x": None})).path == (
        deep_pointer(32) + "/x"
    )


def test_depth_counts_array_indices() -> None:
    limits = Limits(max_depth=4)
    patch = {"preferences": {"a": [[1]]}}  # /preferences/a/0/0
    assert validate_patch(patch, limits) == patch
    err = reject(TooDeep, validate_patch, patch, Limits(max_depth=3))
    assert err.path == "/preferences/a/0/0"
    err = reject(TooDeep, validate_patch, {"preferences": {"a": [{"b": 1}]}}, Limits(max_depth=3))
    assert err.path == "/preferences/a/0/b"


def test_key_length_at_and_over_limit() -> None:
    ok = {"preferences": {"k" * 256: 1}, "api_keys": {"n" * 256: "secret"}}
    assert validate_patch(ok) == ok
    for field, value in (("preferences", 1), ("ai_providers", {"x": 1}), ("api_keys", "s")):
        long_key = "k" * 257
        err = reject(KeyTooLong, validate_patch, {field: {long_key: value}})
        assert err.code == "key_too_long"
        assert err.path == f"/{field}/{long_key}"
        assert err.details == {"path": f"/{field}/{long_key}", "limit": 256}
        assert "257 characters; keys may have at most 256" in err.message
    err = reject(KeyTooLong, validate_patch, {"preferences": {"a": {"b": {"z" * 300: None}}}})
    assert err.path == "/preferences/a/b/" + "z" * 300


def test_key_length_counts_characters() -> None:
    limits = Limits(max_key_length=3)
    assert validate_patch({"preferences": {"ééé": 1}}, limits)
    assert reject(KeyTooLong, validate_patch, {"preferences": {"éééé": 1}}, limits).path == (
        "/preferences/éééé"
    )


def test_empty_keys() -> None:
    err = invalid({"preferences": {"": 1}}, "invalid_key", "/preferences/")
    assert err.message == "/preferences/: object keys must not be empty"
    invalid({"preferences": {"a": {"": None}}}, "invalid_key", "/preferences/a/")
    invalid({"api_keys": {"": "secret"}}, "invalid_key", "/api_keys/")
    invalid({"ai_providers": {"a": [{"": 1}]}}, "invalid_key", "/ai_providers/a/0/")


def test_pointer_escaping_in_paths() -> None:
    invalid({"preferences": {"a/b": {"~c": {"": 1}}}}, "invalid_key", "/preferences/a~1b/~0c/")


def test_patch_schema_is_not_applied() -> None:
    schema = PreferencesSchema({"properties": {"n": {"type": "integer"}}})
    patch = {"preferences": {"n": "not an integer"}}
    assert validate_patch(patch, DEFAULT_LIMITS, schema) == patch


# --- validate_document ----------------------------------------------------------------------


def test_document_fills_defaults_in_field_order() -> None:
    doc = validate_document({"api_keys": {"a": "secret"}, "theme": "dark"})
    assert doc == {
        "theme": "dark",
        "language": "en",
        "preferences": {},
        "ai_providers": {},
        "api_keys": {"a": "secret"},
    }
    assert list(doc) == list(FIELDS)
    assert validate_document({}) == default_document()


def test_document_null_fields_take_defaults() -> None:
    assert validate_document(dict.fromkeys(FIELDS)) == default_document()


def test_document_is_a_copy() -> None:
    source = {"preferences": {"a": {"b": [1, {"c": 2}]}}}
    doc = validate_document(source)
    doc["preferences"]["a"]["b"][1]["c"] = 3
    assert source == {"preferences": {"a": {"b": [1, {"c": 2}]}}}


def test_document_drops_nulls_and_empty_objects_below_top_level() -> None:
    doc = validate_document(
        {
            "preferences": {"a": None, "b": {}, "c": {"d": {"e": None}}, "f": {"g": 1, "h": {}}},
            "ai_providers": {"x": {}},
            "api_keys": {"gone": None, "kept": "secret"},
        }
    )
    assert doc["preferences"] == {"f": {"g": 1}}
    assert doc["ai_providers"] == {}
    assert doc["api_keys"] == {"kept": "secret"}


def test_document_keeps_arrays_whole() -> None:
    prefs: dict[str, Any] = {"list": [None, {}, {"a": None}, [], [{}]]}
    assert validate_document({"preferences": prefs})["preferences"] == prefs


@pytest.mark.parametrize(
    ("doc", "code", "path"),
    [
        ([], "invalid", ""),
        (None, "invalid", ""),
        ({"colour": "red"}, "unknown_field", "/colour"),
        ({"theme": "blue"}, "invalid_value", "/theme"),
        ({"language": "english"}, "invalid_value", "/language"),
        ({"preferences": []}, "invalid_value", "/preferences"),
        ({"ai_providers": "openai"}, "invalid_value", "/ai_providers"),
        ({"api_keys": "k"}, "invalid_value", "/api_keys"),
        ({"api_keys": {"a": ""}}, "invalid_value", "/api_keys/a"),
        ({"api_keys": {"a": 5}}, "invalid_value", "/api_keys/a"),
        ({"api_keys": {"a": {"set": True}}}, "invalid_value", "/api_keys/a"),
        ({"api_keys": {"a": {**SEALED, "$sealed": 2}}}, "invalid_value", "/api_keys/a"),
        ({"api_keys": {"a": {**SEALED, "$sealed": True}}}, "invalid_value", "/api_keys/a"),
        ({"api_keys": {"a": {**SEALED, "ct": None}}}, "invalid_value", "/api_keys/a"),
        ({"preferences": {"": 1}}, "invalid_key", "/preferences/"),
        ({"preferences": {"n": float("nan")}}, "invalid_value", "/preferences/n"),
    ],
)
def test_invalid_documents(doc: Any, code: str, path: str) -> None:
    err = reject(ValidationError, validate_document, doc)
    assert (err.code, err.path) == (code, path)


def test_document_accepts_sealed_and_plaintext_secrets() -> None:
    no_last4 = {**SEALED, "last4": None}
    keys = {"a": SEALED, "b": no_last4, "c": "plain-text-secret", "d": {**SEALED, "alg": "x"}}
    assert validate_document({"api_keys": keys})["api_keys"] == keys
    assert validate_document({"api_keys": keys})["api_keys"]["a"] is not SEALED


def test_document_depth_and_key_limits() -> None:
    assert validate_document(nested(32))["preferences"] == nested(32)["preferences"]
    assert reject(TooDeep, validate_document, nested(33)).path == deep_pointer(33)
    assert validate_document({"preferences": {"k" * 256: 1}})
    assert reject(KeyTooLong, validate_document, {"preferences": {"k" * 257: 1}}).path == (
        "/preferences/" + "k" * 257
    )


def test_document_size_at_and_over_limit() -> None:
    base = json_size(validate_document({"preferences": {"s": ""}}))
    assert base == 88
    limit = DEFAULT_LIMITS.max_document_bytes
    at_limit = {"preferences": {"s": "x" * (limit - base)}}
    assert json_size(validate_document(at_limit)) == limit
    over = {"preferences": {"s": "x" * (limit - base + 1)}}
    err = reject(TooLarge, validate_document, over)
    assert err.details == {"limit": 262144, "size": 262145}
    assert err.message == "the document is 262145 bytes of JSON; the limit is 262144 bytes"
    assert validate_document(over, check_size=False)["preferences"]["s"] == "x" * (limit - 87)


def test_document_size_counts_sealed_secrets_as_given() -> None:
    doc = {"api_keys": {"a": SEALED}}
    size = json_size(validate_document(doc))
    assert validate_document(doc, Limits(max_document_bytes=size))
    err = reject(TooLarge, validate_document, doc, Limits(max_document_bytes=size - 1))
    assert err.details == {"limit": size - 1, "size": size}


# --- apply_patch / diff -----------------------------------------------------------------------


def doc_with(**fields: Any) -> dict[str, Any]:
    doc = default_document()
    doc.update(fields)
    return doc


def test_apply_patch_sets_and_deletes() -> None:
    doc = doc_with(preferences={"a": 1, "b": {"c": 2, "d": 3}}, ai_providers={"default": "x"})
    patch = {"theme": "dark", "preferences": {"a": None, "b": {"c": 20, "e": [1]}, "f": "new"}}
    assert apply_patch(doc, patch) == doc_with(
        theme="dark",
        preferences={"b": {"c": 20, "d": 3, "e": [1]}, "f": "new"},
        ai_providers={"default": "x"},
    )


def test_apply_patch_does_not_change_its_inputs() -> None:
    doc = doc_with(preferences={"a": {"b": 1}})
    patch: dict[str, Any] = {"preferences": {"a": {"c": [1]}, "l": [{"x": 1}]}}
    before_doc, before_patch = canonical(doc), canonical(patch)
    result = apply_patch(doc, patch)
    assert (canonical(doc), canonical(patch)) == (before_doc, before_patch)
    result["preferences"]["a"]["c"].append(2)
    result["preferences"]["l"][0]["x"] = 2
    assert (canonical(doc), canonical(patch)) == (before_doc, before_patch)


@pytest.mark.parametrize("field", FIELDS)
def test_apply_patch_null_resets_top_level_field(field: str) -> None:
    doc = doc_with(
        theme="dark",
        language="de",
        preferences={"a": 1},
        ai_providers={"b": 2},
        api_keys={"c": SEALED},
    )
    result = apply_patch(doc, {field: None})
    assert result[field] == default_for(field)
    assert list(result) == list(FIELDS)
    assert {k: v for k, v in result.items() if k != field} == {
        k: v for k, v in doc.items() if k != field
    }


def test_apply_patch_removes_objects_left_empty() -> None:
    doc = doc_with(preferences={"a": {"b": {"c": 1}}, "x": {"y": 1, "z": 2}})
    assert apply_patch(doc, {"preferences": {"a": {"b": {"c": None}}}})["preferences"] == {
        "x": {"y": 1, "z": 2}
    }
    assert apply_patch(doc, {"preferences": {"x": {"y": None, "z": None}}})["preferences"] == {
        "a": {"b": {"c": 1}}
    }
    # the top-level field itself stays, empty
    assert apply_patch(doc, {"preferences": {"a": None, "x": None}})["preferences"] == {}


def test_apply_patch_empty_objects_and_deletes_create_nothing() -> None:
    doc = doc_with(preferences={"n": 5})
    patch: dict[str, Any]
    for patch in (
        {"preferences": {"new": {}}},
        {"preferences": {"new": {"deeper": {}}}},
        {"preferences": {"new": {"gone": None}}},
        {"preferences": {"n": {}}},  # a scalar is not replaced by nothing
        {"preferences": {"n": {"x": None}}},
        {"preferences": {}},
        {},
    ):
        assert apply_patch(doc, patch) == doc, patch


def test_apply_patch_write_below_a_scalar_replaces_it() -> None:
    doc = doc_with(preferences={"n": 5})
    patch = {"preferences": {"n": {"x": None, "y": {"z": 1}, "e": {}}}}
    assert apply_patch(doc, patch)["preferences"] == {"n": {"y": {"z": 1}}}
    assert apply_patch(doc_with(theme="dark"), {"theme": {"a": 1}})["theme"] == {"a": 1}


def test_apply_patch_replaces_an_object_with_a_scalar() -> None:
    doc = doc_with(preferences={"n": {"a": 1}})
    assert apply_patch(doc, {"preferences": {"n": [1, 2]}})["preferences"] == {"n": [1, 2]}


def test_apply_patch_arrays_are_replaced_whole() -> None:
    doc = doc_with(preferences={"l": [1, 2, 3]})
    assert apply_patch(doc, {"preferences": {"l": [4]}})["preferences"] == {"l": [4]}


def test_apply_patch_secrets_are_replaced_whole() -> None:
    masked_old = {"set": True, "last4": "abcd", "updated_at": "2026-01-01T00:00:00.000Z"}
    masked_new = {"set": True, "updated_at": "2026-02-01T00:00:00.000Z"}
    doc = doc_with(api_keys={"openai": masked_old})
    result = apply_patch(doc, {"api_keys": {"openai": masked_new}})
    assert result["api_keys"] == {"openai": masked_new}
    assert apply_patch(doc, {"api_keys": {"openai": None}})["api_keys"] == {}


def test_apply_patch_on_a_document_missing_fields() -> None:
    assert apply_patch({"theme": "dark"}, {"preferences": {"a": 1}}) == {
        "theme": "dark",
        "preferences": {"a": 1},
    }
    assert apply_patch({"theme": "dark"}, {"preferences": {"a": None}}) == {"theme": "dark"}
    assert apply_patch({"x": 1}, {"x": None}) == {}  # not a field: plain RFC 7386 delete


def test_diff() -> None:
    old = doc_with(preferences={"a": 1, "b": {"c": 2, "d": [1]}, "gone": {"x": 1}})
    new = doc_with(theme="dark", preferences={"a": 1, "b": {"c": 3, "d": [1]}, "n": {"y": 1}})
    assert diff(old, new) == {
        "theme": "dark",
        "preferences": {"gone": None, "b": {"c": 3}, "n": {"y": 1}},
    }
    assert diff(new, new) == {}


def test_diff_compares_json_types_strictly() -> None:
    assert diff({"a": 1}, {"a": True}) == {"a": True}
    assert diff({"a": 1}, {"a": 1.0}) == {"a": 1.0}
    assert diff({"a": 0.0}, {"a": -0.0}) == {"a": -0.0}
    assert diff({"a": [1]}, {"a": [True]}) == {"a": [True]}
    assert diff({"a": [1, 2]}, {"a": [1, 2]}) == {}


def test_diff_arrays_and_secrets_whole() -> None:
    assert diff({"l": [1, {"a": 1}]}, {"l": [1, {"a": 2}]}) == {"l": [1, {"a": 2}]}
    old = doc_with(api_keys={"k": SEALED})
    rotated = {**SEALED, "ct": "bmV3"}
    assert diff(old, doc_with(api_keys={"k": rotated})) == {"api_keys": {"k": rotated}}


def test_diff_object_and_scalar_switches() -> None:
    old = doc_with(preferences={"a": 5, "b": {"c": 1}})
    new = doc_with(preferences={"a": {"x": 1}, "b": 2})
    patch = diff(old, new)
    assert patch == {"preferences": {"a": {"x": 1}, "b": 2}}
    assert apply_patch(old, patch) == new


def test_diff_rejects_non_objects() -> None:
    with pytest.raises(TypeError):
        diff([], {})


def test_diff_result_is_independent() -> None:
    new = {"a": {"b": [1]}}
    patch = diff({}, new)
    patch["a"]["b"].append(2)
    assert new == {"a": {"b": [1]}}


KEYS = st.sampled_from(["a", "b", "c/d"])  # few keys, so that a and b often overlap
SCALARS = st.sampled_from([0, 1, 1.0, 0.0, -0.0, True, False, 2, 2.5, "", "1"])  # == but unlike
LEAVES = st.one_of(
    SCALARS,
    st.lists(
        st.one_of(SCALARS, st.none(), st.dictionaries(KEYS, st.one_of(SCALARS, st.none()))),
        max_size=3,
    ),
)
TREES = st.recursive(
    LEAVES, lambda children: st.dictionaries(KEYS, children, min_size=1, max_size=3), max_leaves=8
)
OBJECTS = st.dictionaries(KEYS, TREES, max_size=3)
SECRETS = st.one_of(
    st.text(alphabet="ab9Z-", min_size=1, max_size=14),
    st.builds(
        lambda ct, last4: {**SEALED, "ct": ct, "last4": last4},
        st.sampled_from(["a", "b"]),
        st.sampled_from([None, "x9Qz"]),
    ),
    st.builds(
        lambda last4: {"set": True, "updated_at": "2026-11-28T17:01:19.123Z"} | last4,
        st.sampled_from([{}, {"last4": "x9Qz"}]),
    ),
)
DOCUMENTS = st.fixed_dictionaries(
    {
        "theme": st.sampled_from(THEMES),
        "language": st.sampled_from(["en", "de-CH", "x-a"]),
        "preferences": OBJECTS,
        "ai_providers": OBJECTS,
        "api_keys": st.dictionaries(KEYS, SECRETS, max_size=3),
    }
)
EDIT_TREES = st.recursive(
    st.one_of(LEAVES, st.none()),
    lambda children: st.dictionaries(KEYS, children, max_size=3),
    max_leaves=8,
)
EDITS = st.fixed_dictionaries(
    {},
    optional={
        "theme": st.sampled_from([*THEMES, None]),
        "preferences": st.one_of(st.none(), st.dictionaries(KEYS, EDIT_TREES, max_size=3)),
        "ai_providers": st.dictionaries(KEYS, EDIT_TREES, max_size=3),
        "api_keys": st.dictionaries(KEYS, st.one_of(st.none(), SECRETS), max_size=2),
    },
)
FAST = settings(max_examples=30, deadline=None, database=None)


@FAST
@given(DOCUMENTS, DOCUMENTS)
def test_diff_then_apply_round_trips_documents(a: dict[str, Any], b: dict[str, Any]) -> None:
    # generated documents are already normalised (masked secrets are for clients only)
    plain = {**b, "api_keys": {}}
    assert canonical(validate_document(plain)) == canonical(plain)
    patch = diff(a, b)
    assert canonical(apply_patch(a, patch)) == canonical(b)
    assert diff(b, b) == {}


def leaf_paths(node: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in node.items():
        if isinstance(value, dict):
            paths.extend(leaf_paths(value, (*path, key)))
        else:
            paths.append((*path, key))
    return paths


@st.composite
def documents_and_edits(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A document and a patch that also rewrites some of its existing leaves, so that values
    equal under ``==`` but of different JSON types (1, 1.0, true) meet at one path."""
    doc: dict[str, Any] = draw(DOCUMENTS)
    edit: dict[str, Any] = draw(EDITS)
    for field in ("preferences", "ai_providers"):
        paths = leaf_paths(doc[field])
        if not paths or edit.get(field, {}) is None:
            continue
        for path in draw(st.lists(st.sampled_from(paths), max_size=3)):
            node: Any = edit.setdefault(field, {})
            for key in path[:-1]:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    break
            else:
                node[path[-1]] = draw(st.one_of(SCALARS, st.none()))
    return doc, edit


@settings(FAST, max_examples=60)
@given(documents_and_edits())
def test_diff_then_apply_round_trips_edits(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    a, edit = case
    b = apply_patch(a, edit)
    plain = {**b, "api_keys": {}}
    assert canonical(validate_document(plain)) == canonical(plain)
    assert canonical(apply_patch(a, diff(a, b))) == canonical(b)


@FAST
@given(st.dictionaries(KEYS, TREES, max_size=4), st.dictionaries(KEYS, TREES, max_size=4))
def test_diff_then_apply_round_trips_trees(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert canonical(apply_patch(a, diff(a, b))) == canonical(b)


# --- secrets ------------------------------------------------------------------------------------


def test_is_secret_path() -> None:
    assert is_secret_path(("api_keys", "openai"))
    assert is_secret_path(("api_keys", "openai", "ct"))
    assert not is_secret_path(("api_keys",))
    assert not is_secret_path(("preferences", "api_keys"))
    assert not is_secret_path(())


def test_is_sealed() -> None:
    assert is_sealed(SEALED)
    assert is_sealed({**SEALED, "last4": None})
    assert not is_sealed({k: v for k, v in SEALED.items() if k != "last4"})
    assert not is_sealed({**SEALED, "last4": 1234})
    assert not is_sealed({**SEALED, "$sealed": True})
    assert not is_sealed({**SEALED, "$sealed": "1"})
    assert not is_sealed({**SEALED, "kid": 1})
    assert not is_sealed({k: v for k, v in SEALED.items() if k != "nonce"})
    assert not is_sealed("sk-secret")
    assert not is_sealed(None)


def test_last4_boundary() -> None:
    assert last4_of("a" * 11) is None
    assert last4_of("abcdefgh1234") == "1234"
    assert last4_of("") is None


def test_mask_secret() -> None:
    assert mask_secret(None) is None
    assert mask_secret("12345678901", NOW) == {
        "set": True,
        "updated_at": "2026-11-28T17:01:19.123Z",
    }
    assert mask_secret("123456789012", NOW) == {
        "set": True,
        "last4": "9012",
        "updated_at": "2026-11-28T17:01:19.123Z",
    }
    assert mask_secret(SEALED) == {
        "set": True,
        "last4": "x9Qz",
        "updated_at": "2026-11-28T17:01:19.123Z",
    }
    assert mask_secret({**SEALED, "last4": None}) == {
        "set": True,
        "updated_at": "2026-11-28T17:01:19.123Z",
    }
    masked = {"set": True, "updated_at": "2026-11-28T17:01:19.123Z"}
    assert mask_secret(masked) == masked  # masking twice changes nothing


def test_mask_secret_defaults_to_now() -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    masked = mask_secret("short")
    assert masked is not None
    stamp = datetime.fromisoformat(masked["updated_at"].replace("Z", "+00:00"))
    assert before <= stamp <= datetime.now(UTC)


@pytest.mark.parametrize("value", [5, ["secret-value"], {"ct": "x"}, {"set": True, "key": "x"}])
def test_mask_secret_refuses_other_values(value: Any) -> None:
    with pytest.raises(TypeError) as info:
        mask_secret(value)
    assert "secret-value" not in str(info.value) and "'x'" not in str(info.value)


def test_mask_document() -> None:
    doc = doc_with(preferences={"a": [1]}, api_keys={"long": "sk-abcdefghijkl", "sealed": SEALED})
    masked = mask_document(doc)
    assert masked["api_keys"]["sealed"] == {
        "set": True,
        "last4": "x9Qz",
        "updated_at": "2026-11-28T17:01:19.123Z",
    }
    assert masked["api_keys"]["long"]["last4"] == "ijkl"
    assert set(masked["api_keys"]["long"]) == {"set", "last4", "updated_at"}
    assert {k: v for k, v in masked.items() if k != "api_keys"} == {
        k: v for k, v in doc.items() if k != "api_keys"
    }
    assert "sk-abcdefghijkl" not in json.dumps(masked)
    masked["preferences"]["a"].append(2)
    assert doc["preferences"] == {"a": [1]}
    assert doc["api_keys"]["sealed"] is SEALED


def test_mask_patch() -> None:
    assert mask_patch({"theme": "dark"}) == {"theme": "dark"}
    assert mask_patch({"api_keys": None}) == {"api_keys": None}
    patch = {"api_keys": {"gone": None, "sealed": SEALED}, "preferences": {"x": None}}
    assert mask_patch(patch) == {
        "api_keys": {
            "gone": None,
            "sealed": {"set": True, "last4": "x9Qz", "updated_at": "2026-11-28T17:01:19.123Z"},
        },
        "preferences": {"x": None},
    }
    with pytest.raises(TypeError):
        mask_patch({"api_keys": "sk-plaintext"})


def test_rfc3339() -> None:
    assert rfc3339(1795885279123) == "2026-11-28T17:01:19.123Z"
    assert rfc3339(1795885279123.9) == "2026-11-28T17:01:19.123Z"
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(NOW) == "2026-11-28T17:01:19.123Z"
    assert rfc3339(datetime(2026, 11, 28, 17, 1, 19, 123999)) == "2026-11-28T17:01:19.123Z"
    paris = timezone(timedelta(hours=1))
    assert rfc3339(datetime(2026, 11, 28, 18, 1, 19, tzinfo=paris)) == "2026-11-28T17:01:19.000Z"
    with pytest.raises(TypeError):
        rfc3339(True)


# --- preferences schema -----------------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "fontSize": {"type": "integer", "minimum": 8, "default": 14},
        "editor": {
            "type": "object",
            "properties": {
                "tabs": {"type": "integer", "default": 4},
                "wrap": {"type": "boolean"},
                "colors": {"type": "object", "properties": {"bg": {"default": "#fff"}}},
            },
        },
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["fontSize"],
    "additionalProperties": False,
}


def schema_error(schema: PreferencesSchema, prefs: Any) -> ValidationError:
    err: ValidationError = reject(ValidationError, schema.validate, prefs)
    assert err.code == "schema_violation"
    assert err.details == {"path": err.path}
    return err


def test_schema_validate_paths_and_messages() -> None:
    schema = PreferencesSchema(SCHEMA)
    assert schema.schema is SCHEMA
    schema.validate({"fontSize": 12, "editor": {"tabs": 2}, "tags": ["a"]})
    err = schema_error(schema, {"fontSize": "big"})
    assert (err.path, err.message) == (
        "/preferences/fontSize",
        "/preferences/fontSize: 'big' is not of type 'integer'",
    )
    err = schema_error(schema, {"fontSize": 12, "tags": ["a", 3]})
    assert (err.path, err.message) == (
        "/preferences/tags/1",
        "/preferences/tags/1: 3 is not of type 'string'",
    )
    assert schema_error(schema, {"fontSize": 12, "editor": {"wrap": 1}}).path == (
        "/preferences/editor/wrap"
    )
    assert schema_error(schema, {}).message == "/preferences: 'fontSize' is a required property"
    assert schema_error(schema, {"fontSize": 12, "email": "nope"}).path == "/preferences/email"
    assert schema_error(schema, {"fontSize": 12, "x": 1}).path == "/preferences"


def test_schema_fill_defaults() -> None:
    schema = PreferencesSchema(SCHEMA)
    prefs: dict[str, Any] = {"editor": {"wrap": True}}
    assert schema.fill_defaults(prefs) == {
        "editor": {"wrap": True, "tabs": 4, "colors": {"bg": "#fff"}},
        "fontSize": 14,
    }
    assert prefs == {"editor": {"wrap": True}}
    assert schema.fill_defaults(
        {"fontSize": 9, "editor": {"tabs": 8, "colors": {"bg": "#000"}}}
    ) == {
        "fontSize": 9,
        "editor": {"tabs": 8, "colors": {"bg": "#000"}},
    }
    assert schema.fill_defaults({}) == {
        "fontSize": 14,
        "editor": {"tabs": 4, "colors": {"bg": "#fff"}},
    }
    # a non-object value where the schema has properties is left alone
    assert schema.fill_defaults({"editor": 3})["editor"] == 3


def test_schema_fill_defaults_copies_default_values() -> None:
    schema = PreferencesSchema({"properties": {"l": {"default": [1]}}})
    filled = schema.fill_defaults({})
    filled["l"].append(2)
    assert schema.fill_defaults({}) == {"l": [1]}


def test_validate_document_with_schema() -> None:
    schema = PreferencesSchema(SCHEMA)
    # a required property with a default is satisfied by the default, and stored unfilled
    assert validate_document({}, schema=schema)["preferences"] == {}
    assert validate_document({"preferences": {"fontSize": 9}}, schema=schema)
    err = reject(
        ValidationError, validate_document, {"preferences": {"fontSize": 2}}, schema=schema
    )
    assert (err.code, err.path) == ("schema_violation", "/preferences/fontSize")
    assert err.message == "/preferences/fontSize: 2 is less than the minimum of 8"


def test_schema_honours_dollar_schema(tmp_path: FilePath) -> None:
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "properties": {"pair": {"items": [{"type": "integer"}, {"type": "string"}]}},
    }
    schema = PreferencesSchema(draft7)
    schema.validate({"pair": [1, "a"]})
    assert schema_error(schema, {"pair": [1, 2]}).path == "/preferences/pair/1"
    # the same array-form "items" is not a valid Draft 2020-12 schema
    reject(ConfigError, PreferencesSchema, {k: v for k, v in draft7.items() if k != "$schema"})


@pytest.mark.parametrize("dialect", ["http://example.com/my-schema", 7, None])
def test_schema_unknown_dollar_schema(dialect: Any) -> None:
    err = reject(ConfigError, PreferencesSchema, {"$schema": dialect, "type": "object"})
    assert err.message == f"the preferences schema names an unknown $schema: {dialect!r}"


def test_schema_dollar_schema_2019_09() -> None:
    schema = PreferencesSchema(
        {"$schema": "https://json-schema.org/draft/2019-09/schema", "maxProperties": 1}
    )
    assert schema_error(schema, {"a": 1, "b": 2}).path == "/preferences"


def test_schema_from_file(tmp_path: FilePath) -> None:
    good = tmp_path / "prefs.json"
    good.write_text(json.dumps(SCHEMA), encoding="utf-8")
    assert load_preferences_schema(good).schema == SCHEMA
    assert load_preferences_schema(str(good)).schema == SCHEMA


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the preferences schema"),
        ("{not json", "is not valid JSON"),
        (b"\xff\xfe", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"type": "nonsense"}', "invalid preferences schema at /type: "),
        ('{"properties": {"a": {"minimum": "x"}}}', "invalid preferences schema at "),
    ],
)
def test_schema_from_bad_file(
    tmp_path: FilePath, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / "prefs.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    err = reject(ConfigError, load_preferences_schema, path)
    assert message in err.message


def test_schema_must_be_an_object() -> None:
    reject(ConfigError, PreferencesSchema, [])
