"""The settings document of DESIGN §2: its shape, limits, merge patches and secret masking.

Everything here is pure: no file is read (a schema file is read by
:func:`livesettings.config.load_preferences_schema`) and the time a secret is masked at comes
from the :class:`~livesettings.clock.Clock` passed in. A document is
a JSON object with exactly the five :data:`FIELDS`. Below the top level a stored document holds
no ``null`` member and no empty object, because an RFC 7386 merge patch cannot express either
(``null`` deletes, and an empty object in a patch creates nothing); :func:`validate_document`
normalises both away so that :func:`diff` and :func:`apply_patch` round-trip every document.

Each ``api_keys/<name>`` is one leaf: a plaintext string (only transiently, before the server
seals it), a sealed envelope, or — in what clients see — a masked ``{"set": true, …}`` object.
Merging and diffing never descend into it.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .clock import SYSTEM_CLOCK, Clock
from .errors import ConfigError, KeyTooLong, TooDeep, TooLarge, ValidationError
from .paths import Path, to_pointer

__all__ = [
    "DEFAULT_LIMITS",
    "FIELDS",
    "THEMES",
    "Limits",
    "PreferencesSchema",
    "apply_patch",
    "copy_json",
    "default_document",
    "default_for",
    "diff",
    "is_sealed",
    "is_secret_path",
    "json_size",
    "last4_of",
    "mask_document",
    "mask_patch",
    "mask_secret",
    "rfc3339",
    "validate_document",
    "validate_patch",
]

FIELDS: tuple[str, ...] = ("theme", "language", "preferences", "ai_providers", "api_keys")
"""The top-level fields of a settings document, in their canonical order."""

THEMES = ("light", "dark", "system")
"""The values ``theme`` accepts."""

_DEFAULTS: Final[dict[str, Any]] = {
    "theme": "light",
    "language": "en",
    "preferences": {},
    "ai_providers": {},
    "api_keys": {},
}
_OBJECT_FIELDS: Final = ("preferences", "ai_providers", "api_keys")
_MAX_LANGUAGE_LENGTH: Final = 35
_LAST4_MIN_LENGTH: Final = 12
_MAX_MESSAGE_VALUE: Final = 60


def default_document() -> dict[str, Any]:
    """A fresh document holding every field's default."""
    return {name: default_for(name) for name in FIELDS}


def default_for(field: str) -> Any:
    """A fresh copy of one field's default; ``KeyError`` for a name that is not a field."""
    value = _DEFAULTS[field]
    return dict(value) if isinstance(value, dict) else value


@dataclass(frozen=True)
class Limits:
    """Size limits of DESIGN §2. Depth counts path segments from the root (``/a/b`` is 2)."""

    max_document_bytes: int = 256 * 1024
    max_patch_bytes: int = 64 * 1024
    max_depth: int = 32
    max_key_length: int = 256
    max_secret_length: int = 4096
    max_tombstone_bytes: int = 64 * 1024  # delete records kept per document (records.py)
    max_patch_leaves: int = 1000  # leaf edits (sets and deletes) in one patch

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"limit {f.name} must be a positive integer, got {value!r}")


DEFAULT_LIMITS = Limits()
"""The limits used when none are configured."""


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON — the unit of every size limit."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


# --- validation ---------------------------------------------------------------------------

# RFC 5646 §2.1 "langtag", case-insensitive. The primary language subtag is restricted to
# 2 to 3 letters: 4-letter subtags are reserved and no 5 to 8-letter one is registered, and
# accepting them would let words such as "english" through.
_LANGTAG = (
    r"[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3}"  # language, extlang
    r"(?:-[A-Za-z]{4})?"  # script
    r"(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"  # region
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"  # variants
    r"(?:-[0-9A-WYZa-wyz](?:-[A-Za-z0-9]{2,8})+)*"  # extensions
    r"(?:-[Xx](?:-[A-Za-z0-9]{1,8})+)?"  # private use
)
_PRIVATEUSE = r"[Xx](?:-[A-Za-z0-9]{1,8})+"
_LANGUAGE_RE: Final = re.compile(rf"(?:{_LANGTAG}|{_PRIVATEUSE})", re.ASCII)
_GRANDFATHERED: Final = frozenset(
    {
        # irregular
        "en-gb-oed",
        "i-ami",
        "i-bnn",
        "i-default",
        "i-enochian",
        "i-hak",
        "i-klingon",
        "i-lux",
        "i-mingo",
        "i-navajo",
        "i-pwn",
        "i-tao",
        "i-tay",
        "i-tsu",
        "sgn-be-fr",
        "sgn-be-nl",
        "sgn-ch-de",
        # regular
        "art-lojban",
        "cel-gaulish",
        "no-bok",
        "no-nyn",
        "zh-guoyu",
        "zh-hakka",
        "zh-min",
        "zh-min-nan",
        "zh-xiang",
    }
)


def _is_language_tag(tag: str) -> bool:
    if not tag.isascii() or len(tag) > _MAX_LANGUAGE_LENGTH:
        return False
    return tag.lower() in _GRANDFATHERED or _LANGUAGE_RE.fullmatch(tag) is not None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _shown(text: str) -> str:
    """A pointer or value short enough for a message (details carry the full path)."""
    return text if len(text) <= _MAX_MESSAGE_VALUE else text[: _MAX_MESSAGE_VALUE - 1] + "…"


def _is_unicode(text: str) -> bool:
    # json.loads accepts lone surrogates ("\ud800"), which cannot be encoded as UTF-8.
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _invalid(path: Path, expected: str, got: str) -> ValidationError:
    pointer = to_pointer(path)
    return ValidationError(
        f"{_shown(pointer)} must be {expected}, got {got}",
        path=pointer,
        code="invalid_value",
    )


class _Walker:
    """Checks a JSON tree against the limits and returns a copy of it.

    In document mode (``document=True``) ``null`` members and empty objects below the top level
    are dropped from the copy; inside arrays (whole leaf values) nothing is changed.
    """

    def __init__(self, limits: Limits, *, document: bool) -> None:
        self.limits = limits
        self.document = document

    def check_key(self, key: Any, path: Path) -> Path:
        """The child path of ``key``, after checking the depth and the key itself."""
        if not isinstance(key, str):
            child = (*path, str(key))
            raise ValidationError(
                f"{_shown(to_pointer(child))}: object keys must be strings",
                path=to_pointer(child),
                code="invalid_key",
            )
        child = (*path, key)
        self.check_depth(child)
        pointer = to_pointer(child)
        if key == "":
            raise ValidationError(
                f"{_shown(pointer)}: object keys must not be empty",
                path=pointer,
                code="invalid_key",
            )
        if len(key) > self.limits.max_key_length:
            raise KeyTooLong(
                f"the key at {_shown(pointer)} is {len(key)} characters; "
                f"keys may have at most {self.limits.max_key_length}",
                path=pointer,
                details={"path": pointer, "limit": self.limits.max_key_length},
            )
        if not _is_unicode(key) or "\x00" in key:
            raise ValidationError(
                f"{_shown(pointer)}: the key is not valid Unicode text without U+0000",
                path=pointer,
                code="invalid_key",
            )
        return child

    def check_depth(self, path: Path) -> None:
        if len(path) > self.limits.max_depth:
            pointer = to_pointer(path)
            raise TooDeep(
                f"{_shown(pointer)} is {len(path)} levels deep; "
                f"the limit is {self.limits.max_depth}",
                path=pointer,
                details={"path": pointer, "limit": self.limits.max_depth},
            )

    def object(self, node: dict[Any, Any], path: Path, *, in_array: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            child = self.check_key(key, path)
            if value is None and self.document and not in_array:
                continue  # null means "absent" in a document
            copied = self.value(value, child, in_array=in_array)
            if self.document and not in_array and copied == {}:
                continue  # an empty object cannot be written by a merge patch
            out[key] = copied
        return out

    def value(self, value: Any, path: Path, *, in_array: bool = False) -> Any:
        if isinstance(value, dict):
            return self.object(value, path, in_array=in_array)
        if isinstance(value, list):
            out = []
            for index, item in enumerate(value):
                child = (*path, str(index))
                self.check_depth(child)
                out.append(self.value(item, child, in_array=True))
            return out
        if isinstance(value, str):
            if not _is_unicode(value):
                raise _invalid(path, "a string of valid Unicode", "a lone surrogate")
            if "\x00" in value:  # PostgreSQL cannot store U+0000 in text or jsonb
                raise _invalid(path, "a string without U+0000", "a NUL character")
            return value
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _invalid(path, "a finite number", repr(value))
            return value
        raise _invalid(path, "a JSON value", f"a Python {type(value).__name__}")

    def field(self, name: Any, value: Any) -> Any:
        """One top-level field, checked and copied; ``None`` stays ``None`` (reset)."""
        if name not in _DEFAULTS:
            pointer = to_pointer((str(name),))
            raise ValidationError(
                f"{_shown(pointer)} is not a settings field; expected one of {', '.join(FIELDS)}",
                path=pointer,
                code="unknown_field",
            )
        path: Path = (name,)
        if value is None:
            return None
        if name == "theme":
            if not isinstance(value, str) or value not in THEMES:
                shown = _shown(repr(value)) if isinstance(value, str) else _json_type(value)
                raise ValidationError(
                    f'/theme must be "light", "dark" or "system" (or null for the default), '
                    f"got {shown}",
                    path="/theme",
                    code="invalid_value",
                )
            return value
        if name == "language":
            if not isinstance(value, str) or not _is_language_tag(value):
                shown = _shown(repr(value)) if isinstance(value, str) else _json_type(value)
                raise ValidationError(
                    "/language must be a BCP 47 language tag of at most "
                    f'{_MAX_LANGUAGE_LENGTH} characters such as "en" or "pt-BR" '
                    f"(or null for the default), got {shown}",
                    path="/language",
                    code="invalid_value",
                )
            return value
        if not isinstance(value, dict):
            raise _invalid(path, "an object (or null for the default)", _json_type(value))
        if name == "api_keys":
            return self.api_keys(value)
        return self.object(value, path)

    def api_keys(self, keys: dict[Any, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, secret in keys.items():
            path = self.check_key(name, ("api_keys",))
            if secret is None:
                if not self.document:
                    out[name] = None  # a delete
                continue
            if isinstance(secret, str):
                self.check_secret(secret, path)
                out[name] = secret
            elif self.document and is_sealed(secret):
                out[name] = dict(secret)
            else:
                raise _invalid(
                    path,
                    "a non-empty string (or null to delete it)"
                    if not self.document
                    else "a non-empty string or a sealed secret",
                    _json_type(secret),
                )
        return out

    def check_secret(self, secret: str, path: Path) -> None:
        # The message never repeats the secret, not even a part of it.
        pointer = to_pointer(path)
        problem = ""
        if secret == "":
            problem = "is empty"
        elif len(secret) > self.limits.max_secret_length:
            problem = f"is {len(secret)} characters long"
        elif any(unicodedata.category(c) == "Cc" for c in secret) or not _is_unicode(secret):
            problem = "contains control characters or invalid Unicode"
        if problem:
            raise ValidationError(
                f"the secret at {_shown(pointer)} {problem}; expected a non-empty string of at "
                f"most {self.limits.max_secret_length} characters without control characters",
                path=pointer,
                code="invalid_value",
            )


def _too_large(what: str, size: int, limit: int) -> TooLarge:
    return TooLarge(
        f"the {what} is {size} bytes of JSON; the limit is {limit} bytes",
        details={"limit": limit, "size": size},
    )


def validate_patch(
    patch: Any,
    limits: Limits = DEFAULT_LIMITS,
    schema: PreferencesSchema | None = None,
) -> dict[str, Any]:
    """Check a client's merge patch and return a copy of it (equal to the input).

    Raises :class:`ValidationError` (``invalid``, ``unknown_field``, ``invalid_value``,
    ``invalid_key``), :class:`TooDeep`, :class:`KeyTooLong` or :class:`TooLarge`. ``schema`` is
    accepted for symmetry only: a preferences patch can be judged against the schema only once
    merged, by :func:`validate_document`.
    """
    del schema  # see the docstring
    if not isinstance(patch, dict):
        raise ValidationError(
            f"a settings patch must be a JSON object, got {_json_type(patch)}", path=""
        )
    try:
        size: int | None = json_size(patch)
    except (TypeError, ValueError, RecursionError):
        size = None  # not JSON: the walk below names the culprit
    if size is not None and size > limits.max_patch_bytes:
        raise _too_large("patch", size, limits.max_patch_bytes)
    walker = _Walker(limits, document=False)
    out = {name: walker.field(name, value) for name, value in patch.items()}
    if size is None:  # pragma: no cover - the walk rejects whatever json.dumps refused
        size = json_size(out)
        if size > limits.max_patch_bytes:
            raise _too_large("patch", size, limits.max_patch_bytes)
    # Each leaf edit is work for the one writer that serves every user: bound it.
    leaves = _leaf_count(out, ())
    if leaves > limits.max_patch_leaves:
        raise TooLarge(
            f"the patch edits {leaves} values; the limit is {limits.max_patch_leaves} "
            "per write (split it into several)",
            details={"limit": limits.max_patch_leaves, "leaves": leaves},
        )
    return out


def _leaf_count(node: Mapping[str, Any], path: Path) -> int:
    """The values a patch sets or deletes (each ``api_keys/<name>`` is one)."""
    count = 0
    for key, value in node.items():
        child = (*path, key)
        if isinstance(value, dict) and not is_secret_path(child):
            count += _leaf_count(value, child)
        else:
            count += 1
    return count


def validate_document(
    doc: Any,
    limits: Limits = DEFAULT_LIMITS,
    schema: PreferencesSchema | None = None,
    *,
    check_size: bool = True,
) -> dict[str, Any]:
    """Check a whole document and return a normalised copy holding all five fields.

    Missing or ``null`` fields get their defaults; ``null`` members and empty objects below the
    top level are dropped. ``api_keys`` values may be plaintext or sealed. The size limit
    applies to the returned document (secrets as given); with ``schema`` the preferences, with
    the schema's defaults filled in, must satisfy it (``schema_violation``).
    """
    if not isinstance(doc, dict):
        raise ValidationError(
            f"a settings document must be a JSON object, got {_json_type(doc)}", path=""
        )
    walker = _Walker(limits, document=True)
    checked = {name: walker.field(name, value) for name, value in doc.items()}
    out = {
        name: default_for(name) if checked.get(name) is None else checked[name] for name in FIELDS
    }
    if check_size:
        size = json_size(out)
        if size > limits.max_document_bytes:
            raise _too_large("document", size, limits.max_document_bytes)
    if schema is not None:
        schema.validate(schema.fill_defaults(out["preferences"]))
    return out


# --- merge patches ------------------------------------------------------------------------


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (much faster than ``copy.deepcopy``)."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


def _has_set(patch: Mapping[str, Any]) -> bool:
    """Whether a patch object writes any value (rather than only deleting, or nothing)."""
    for value in patch.values():
        if value is None:
            continue
        if not isinstance(value, dict) or _has_set(value):
            return True
    return False


def _merge_into(target: dict[str, Any], patch: Mapping[str, Any], path: Path) -> None:
    for key, value in patch.items():
        child = (*path, key)
        if value is None:
            if not path and key in _DEFAULTS:
                target[key] = default_for(key)  # a top-level field resets to its default
            else:
                target.pop(key, None)
        elif isinstance(value, dict) and not is_secret_path(child):
            current = target.get(key)
            if isinstance(current, dict):
                was_empty = not current
                _merge_into(current, value, child)
                if path and not current and not was_empty:
                    del target[key]  # left empty by a delete; a top-level field never is
            elif _has_set(value):
                # A write below a non-object replaces it; deletes and {} alone create nothing.
                created: dict[str, Any] = {}
                _merge_into(created, value, child)
                target[key] = created
        else:
            target[key] = copy_json(value)


def apply_patch(doc: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the merge ``patch`` applied, as a new object (neither input is changed).

    RFC 7386 with the document's rules: ``null`` on a top-level field resets it to its default;
    objects left empty by a delete below the top level are removed; a patch that only deletes or
    holds empty objects creates nothing; each ``api_keys/<name>`` is replaced whole.
    """
    result: dict[str, Any] = copy_json(doc)
    _merge_into(result, patch, ())
    return result


def _same(a: Any, b: Any) -> bool:
    """JSON equality: unlike ``==``, ``1``, ``1.0`` and ``true`` differ, and so do 0.0 and -0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def _diff(old: Mapping[str, Any], new: Mapping[str, Any], path: Path) -> dict[str, Any]:
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        child = (*path, key)
        if key not in old:
            patch[key] = copy_json(value)
            continue
        previous = old[key]
        if isinstance(previous, dict) and isinstance(value, dict) and not is_secret_path(child):
            sub = _diff(previous, value, child)
            if sub:
                patch[key] = sub
        elif not _same(previous, value):
            patch[key] = copy_json(value)
    return patch


def diff(old: Any, new: Any) -> dict[str, Any]:
    """The merge patch turning ``old`` into ``new``: ``apply_patch(old, diff(old, new)) == new``.

    Removed keys become ``null``, changed values (arrays and secrets compared whole) their new
    value; objects on both sides are compared member by member and omitted when equal.
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        raise TypeError("diff() compares two JSON objects")
    return _diff(old, new, ())


# --- secrets ------------------------------------------------------------------------------

_SEALED_FIELDS: Final = ("kid", "nonce", "ct", "updated_at")
_MASKED_KEYS: Final = frozenset({"set", "last4", "updated_at"})


def is_secret_path(path: Path) -> bool:
    """Whether ``path`` addresses one secret (``/api_keys/<name>``) or something inside it."""
    return len(path) >= 2 and path[0] == "api_keys"


def is_sealed(value: Any) -> bool:
    """Whether ``value`` is a sealed secret envelope (``{"$sealed": 1, "kid", "nonce", …}``)."""
    if not isinstance(value, dict):
        return False
    marker = value.get("$sealed")
    if isinstance(marker, bool) or marker != 1:
        return False
    return all(isinstance(value.get(name), str) for name in _SEALED_FIELDS) and (
        "last4" in value and (value["last4"] is None or isinstance(value["last4"], str))
    )


def _is_masked(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("set") is True
        and value.keys() <= _MASKED_KEYS
        and all(isinstance(value.get(k, ""), str) for k in ("last4", "updated_at"))
    )


def last4_of(plaintext: str) -> str | None:
    """The last four characters, shown only for secrets of at least 12 characters."""
    return plaintext[-4:] if len(plaintext) >= _LAST4_MIN_LENGTH else None


def rfc3339(ms_or_dt: int | float | datetime) -> str:
    """An RFC 3339 UTC time with milliseconds, e.g. ``"2026-11-28T17:01:19.123Z"``.

    Takes milliseconds since the epoch or a datetime (naive ones are taken as UTC).
    """
    if isinstance(ms_or_dt, datetime):
        moment = ms_or_dt
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
    elif isinstance(ms_or_dt, int | float) and not isinstance(ms_or_dt, bool):
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=math.floor(ms_or_dt))
    else:
        raise TypeError(f"rfc3339() takes milliseconds or a datetime, not {type(ms_or_dt)}")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"


def mask_secret(
    value: Any, now: datetime | int | None = None, *, clock: Clock = SYSTEM_CLOCK
) -> dict[str, Any] | None:
    """What a client may see of a secret: ``{"set": true, "last4"?, "updated_at"}``.

    ``None`` stays ``None``. A plaintext string is dated ``now`` (a datetime or epoch
    milliseconds; default: the ``clock``'s current time).
    An already masked value is returned as a copy. Anything else is a ``TypeError`` whose
    message never shows the value.
    """
    if value is None:
        return None
    if isinstance(value, str):
        last4 = last4_of(value)
        updated_at = rfc3339(now if now is not None else clock.time_ms())
    elif is_sealed(value):
        last4 = value["last4"]
        updated_at = value["updated_at"]
    elif _is_masked(value):
        return dict(value)
    else:
        raise TypeError(f"cannot mask a {type(value).__name__} as a secret")
    masked: dict[str, Any] = {"set": True}
    if last4 is not None:
        masked["last4"] = last4
    masked["updated_at"] = updated_at
    return masked


def _mask_keys(keys: Any, now: int) -> Any:
    if keys is None:
        return None
    if not isinstance(keys, dict):
        raise TypeError(f"api_keys must be an object, not {type(keys).__name__}")
    return {name: mask_secret(secret, now) for name, secret in keys.items()}


def mask_document(doc: dict[str, Any], *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """A copy of ``doc`` with every ``api_keys`` value masked (plaintext dated by ``clock``)."""
    now = clock.time_ms()
    return {
        key: _mask_keys(value, now) if key == "api_keys" else copy_json(value)
        for key, value in doc.items()
    }


def mask_patch(patch: dict[str, Any], *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """A copy of a merge patch with ``api_keys`` values masked (a ``null`` stays ``null``)."""
    return mask_document(patch, clock=clock)


# --- preferences schema -------------------------------------------------------------------


class PreferencesSchema:
    """An operator's JSON Schema for ``preferences`` (Draft 2020-12 unless ``$schema`` says).

    ``format`` is asserted (an operator writing ``"format": "email"`` expects it checked).
    Remote ``$ref`` are not fetched.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        import jsonschema  # imported only when an operator configures a schema

        if not isinstance(schema, dict):
            raise ConfigError(f"a preferences schema must be a JSON object, got {schema!r}")
        if "$schema" not in schema:
            cls = jsonschema.Draft202012Validator
        else:
            dialect = schema["$schema"]
            known = isinstance(dialect, str)
            cls = jsonschema.validators.validator_for(schema, default=None) if known else None
            if cls is None:
                # jsonschema would silently fall back to the latest draft: a typo goes unseen.
                raise ConfigError(f"the preferences schema names an unknown $schema: {dialect!r}")
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = to_pointer(tuple(str(p) for p in exc.absolute_path)) or "/"
            raise ConfigError(f"invalid preferences schema at {where}: {exc.message}") from exc
        self.schema: dict[str, Any] = schema
        self._validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    @classmethod
    def from_json(
        cls, text: str | bytes, source: str = "the preferences schema"
    ) -> PreferencesSchema:
        """A schema from the JSON text of ``source`` (named in errors); text that is not a JSON
        object, or not a valid schema, is a :class:`ConfigError`."""
        try:
            # Decode explicitly: json.loads(bytes) would also guess UTF-16 and UTF-32.
            schema = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise ConfigError(f"{source} is not valid JSON: {exc}") from exc
        if not isinstance(schema, dict):
            raise ConfigError(f"{source} must hold a JSON object")
        return cls(schema)

    def validate(self, preferences: Any) -> None:
        """Raise ``ValidationError(code="schema_violation")`` at the most relevant failure."""
        import jsonschema

        error = jsonschema.exceptions.best_match(self._validator.iter_errors(preferences))
        if error is None:
            return
        pointer = "/preferences" + to_pointer(tuple(str(p) for p in error.absolute_path))
        message = error.message
        if len(message) > 300:
            message = message[:299] + "…"
        raise ValidationError(f"{pointer}: {message}", path=pointer, code="schema_violation")

    def fill_defaults(self, preferences: dict[str, Any]) -> dict[str, Any]:
        """A copy with the schema's ``default`` values filled in where a property is absent.

        Follows nested ``properties``: an absent object property without a default of its own is
        created when its sub-properties have defaults. ``$ref`` and combinators are not followed.
        """
        if not isinstance(preferences, dict):
            return preferences
        return _fill(self.schema, copy_json(preferences))


def _fill(schema: Any, value: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return value
    for name, sub in properties.items():
        if not isinstance(sub, dict):
            continue
        if name not in value:
            if "default" in sub:
                value[name] = copy_json(sub["default"])
            else:
                created = _fill(sub, {})
                if created:
                    value[name] = created
                continue
        if isinstance(value[name], dict):
            value[name] = _fill(sub, value[name])
    return value


def __getattr__(name: str) -> Any:
    """``document.effective`` (DESIGN §11) lives in :mod:`livesettings.effective`."""
    if name == "effective":
        from .effective import effective

        return effective
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
