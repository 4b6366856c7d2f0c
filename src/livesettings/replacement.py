"""A PUT: a whole document that replaces the stored one — pure functions, no I/O.

Absent fields reset to their defaults. In ``api_keys`` a plaintext string sets a secret, a
masked value as a read shows it (``{"set": true, "last4", "updated_at"}``) keeps the stored
secret, and a secret absent from the body is removed. Both halves of that rule live here:
:func:`checked_replacement` when the request arrives (the server), :func:`replacement_patch`
when the commit is planned against the stored document (``store/planning.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from .document import FIELDS, Limits, PreferencesSchema, default_document, validate_document
from .errors import ValidationError
from .merge import settings_diff
from .paths import to_pointer

__all__ = ["checked_replacement", "is_kept_secret", "replacement_patch"]

_KEPT_FIELDS: Final = frozenset({"set", "last4", "updated_at"})


def is_kept_secret(value: Any) -> bool:
    """Whether an ``api_keys`` value of a PUT means "keep the stored secret"."""
    return isinstance(value, dict) and value.get("set") is True


def checked_replacement(
    body: Any, limits: Limits, schema: PreferencesSchema | None
) -> dict[str, Any]:
    """``body`` checked as a whole document; its kept secrets stay as they were sent."""
    if not isinstance(body, dict):
        raise ValidationError("the document must be a JSON object", path="")
    keys = body.get("api_keys")
    if not isinstance(keys, dict):
        return validate_document(body, limits, schema)
    plain: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    for name, value in keys.items():
        if is_kept_secret(value):
            _check_kept(name, value)
            kept[name] = value
        else:
            plain[name] = value
    checked = validate_document({**body, "api_keys": plain}, limits, schema)
    checked["api_keys"] = {**checked.get("api_keys", {}), **kept}
    return checked


def _check_kept(name: str, value: dict[str, Any]) -> None:
    """A secret sent back as read (``{"set": true, "last4", "updated_at"}``), nothing else."""
    if (
        value.keys() <= _KEPT_FIELDS
        and (value.get("last4") is None or isinstance(value["last4"], str))
        and isinstance(value.get("updated_at", ""), str)
    ):
        return
    pointer = to_pointer(("api_keys", name))
    raise ValidationError(
        f"{pointer}: a kept secret is the object read back ({{set, last4, updated_at}})",
        path=pointer,
        code="invalid_value",
    )


def replacement_patch(whole: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``current`` (stored) into ``whole`` (a checked PUT body)."""
    patch: dict[str, Any] = {}
    for name in FIELDS:
        if name == "api_keys":
            continue
        target = whole.get(name, default_document()[name])
        patch.update(settings_diff({name: current.get(name)}, {name: target}))
    keys_patch: dict[str, Any] = {}
    new_keys = whole.get("api_keys") or {}
    for name in current.get("api_keys", {}):
        if name not in new_keys:
            keys_patch[name] = None
    for name, value in new_keys.items():
        if isinstance(value, str):  # a kept secret ({"set": true, …}) changes nothing
            keys_patch[name] = value
    if keys_patch:
        patch["api_keys"] = keys_patch
    return patch
