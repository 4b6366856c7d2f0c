"""A PUT's rule, both halves: the body checked on arrival, the patch planned against the store."""

from __future__ import annotations

from typing import Any

import pytest

from livesettings.document import Limits
from livesettings.errors import ValidationError
from livesettings.replacement import checked_replacement, is_kept_secret, replacement_patch

KEPT = {"set": True, "last4": "x9Qz", "updated_at": "2026-11-28T17:01:19.123Z"}


def test_a_masked_secret_is_kept_and_a_plain_one_is_set() -> None:
    body = {"theme": "dark", "api_keys": {"openai": KEPT, "anthropic": "sk-new-value-1234"}}
    checked = checked_replacement(body, Limits(), None)
    assert checked["api_keys"] == {"anthropic": "sk-new-value-1234", "openai": KEPT}
    assert is_kept_secret(checked["api_keys"]["openai"])
    assert not is_kept_secret(checked["api_keys"]["anthropic"])


@pytest.mark.parametrize(
    "kept",
    [
        {"set": True, "value": "x"},
        {"set": True, "last4": 1234},
        {"set": True, "updated_at": 5},
    ],
)
def test_a_kept_secret_is_only_what_a_read_shows(kept: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        checked_replacement({"api_keys": {"openai": kept}}, Limits(), None)
    assert caught.value.code == "invalid_value"
    assert caught.value.details["path"] == "/api_keys/openai"


def test_the_document_must_be_an_object() -> None:
    with pytest.raises(ValidationError):
        checked_replacement(["theme"], Limits(), None)


def test_the_patch_resets_absent_fields_keeps_masked_secrets_and_removes_absent_ones() -> None:
    current = {
        "theme": "dark",
        "language": "fr",
        "preferences": {"a": 1},
        "ai_providers": {},
        "api_keys": {"openai": "sealed-1", "old": "sealed-2"},
    }
    whole = {"preferences": {"a": 1, "b": 2}, "api_keys": {"openai": KEPT, "new": "sk-123"}}
    assert replacement_patch(whole, current) == {
        "theme": "light",
        "language": "en",
        "preferences": {"b": 2},
        "api_keys": {"old": None, "new": "sk-123"},
    }
