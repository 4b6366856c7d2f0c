"""Effective settings: what an app shows a user inside a team (DESIGN §11). Pure, no I/O.

    theme, language            the user's own value when they set it, else the team's, else
                               the default;
    preferences, ai_providers  merged leaf by leaf; the user's own leaf wins;
    api_keys                   by name (masked); the user's own key wins.

Both documents come in as stored or as read (secrets masked or sealed: the result is masked
here either way). Whether a top-level value was *set* is given by ``personal_set`` /
``team_set`` (the fields with a live leaf record); without them, a value counts as set when
it differs from the default.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from .document import FIELDS, copy_json, default_for, mask_document
from .paths import Path
from .records import Record

__all__ = ["effective", "fields_set"]

_SCALARS = ("theme", "language")
_MERGED = ("preferences", "ai_providers")


def fields_set(records: Mapping[Path, Record]) -> frozenset[str]:
    """The top-level fields with a live (not deleted) leaf record at or under them."""
    return frozenset(path[0] for path, record in records.items() if path and not record.deleted)


def _is_set(doc: Mapping[str, Any], name: str, given: Collection[str] | None) -> bool:
    value = doc.get(name)
    if value is None:
        return False
    if given is not None:
        return name in given
    return bool(value != default_for(name))


def _merge(base: Any, over: Any) -> Any:
    """``over`` on top of ``base`` leaf by leaf: objects merge, anything else in ``over`` wins."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return copy_json(over)
    merged = copy_json(base)
    for key, value in over.items():
        merged[key] = _merge(merged[key], value) if key in merged else copy_json(value)
    return merged


def effective(
    team: Mapping[str, Any],
    personal: Mapping[str, Any],
    *,
    team_set: Collection[str] | None = None,
    personal_set: Collection[str] | None = None,
) -> dict[str, Any]:
    """The settings a user sees inside a team: user over team over default (secrets masked).

    >>> effective({"theme": "dark", "preferences": {"a": 1, "b": 1}},
    ...           {"theme": "light", "preferences": {"b": 2}})["preferences"]
    {'a': 1, 'b': 2}
    """
    team_view = mask_document(dict(team))
    personal_view = mask_document(dict(personal))
    result: dict[str, Any] = {}
    for name in FIELDS:
        if name in _SCALARS:
            if _is_set(personal_view, name, personal_set):
                result[name] = copy_json(personal_view[name])
            elif _is_set(team_view, name, team_set):
                result[name] = copy_json(team_view[name])
            else:
                result[name] = default_for(name)
        elif name in _MERGED:
            base = team_view.get(name) if isinstance(team_view.get(name), dict) else {}
            over = personal_view.get(name) if isinstance(personal_view.get(name), dict) else {}
            result[name] = _merge(base, over)
        else:  # api_keys, by name
            keys: dict[str, Any] = {}
            for source in (team_view.get(name), personal_view.get(name)):
                if isinstance(source, dict):
                    keys.update(copy_json(source))
            result[name] = keys
    return result
