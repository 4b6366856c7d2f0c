"""JSON Pointers (RFC 6901) as tuples of keys, and the few tree operations the core needs."""

from __future__ import annotations

import copy
from typing import Any

__all__ = [
    "MISSING",
    "Path",
    "from_pointer",
    "get_at",
    "is_prefix",
    "to_pointer",
]

Path = tuple[str, ...]


class _Missing:
    """The value at a path that holds nothing (distinct from JSON ``null``)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __deepcopy__(self, memo: dict[int, Any]) -> _Missing:
        return self


MISSING: Any = _Missing()


def to_pointer(path: Path) -> str:
    """``("a", "b/c")`` → ``"/a/b~1c"``."""
    return "".join("/" + key.replace("~", "~0").replace("/", "~1") for key in path)


def from_pointer(pointer: str) -> Path:
    """``"/a/b~1c"`` → ``("a", "b/c")``; raises ``ValueError`` for a pointer not starting with /."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise ValueError(f"JSON Pointer must start with '/': {pointer!r}")
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/"))


def is_prefix(prefix: Path, path: Path) -> bool:
    """True when ``prefix`` is a proper prefix of ``path``."""
    return len(prefix) < len(path) and path[: len(prefix)] == prefix


def get_at(doc: Any, path: Path) -> Any:
    """The value at ``path`` (a deep copy), or ``MISSING``."""
    node = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return MISSING
        node = node[key]
    return copy.deepcopy(node)
