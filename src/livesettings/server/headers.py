"""The request headers of a write (DESIGN §3 and §4), parsed into values or a 400.

``openapi.py`` writes the same formats into the served OpenAPI document.
"""

from __future__ import annotations

import uuid

from ..errors import BadRequest

__all__ = ["client_id_header", "int_header", "mutation_id_header", "parse_if_match"]


def parse_if_match(header: str) -> int:
    """``"7"``, ``W/"7"`` or ``7`` → 7; anything else is a 400."""
    value = header.strip()
    if value.startswith("W/"):
        value = value[2:]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise BadRequest(
            f"If-Match must be a quoted revision such as '\"7\"', got {header!r}",
            code="invalid_if_match",
        )
    return int(value)


def int_header(value: str | None, name: str) -> int | None:
    """A non-negative integer header (``X-Base-Revision``, ``X-Edited-At``, ``Last-Event-ID``);
    absent or empty is ``None``."""
    if value is None or value == "":
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 18:
        raise BadRequest(f"{name} must be a non-negative integer, got {value[:40]!r}")
    return int(text)


def _has_control(value: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)


def client_id_header(value: str | None) -> str:
    """``X-Client-Id``, the ``by`` of a write's records; ``"http"`` when absent."""
    if value is None or value == "":
        return "http"
    if len(value) > 128 or _has_control(value):
        raise BadRequest("X-Client-Id must be 1 to 128 characters without control characters")
    return value


def mutation_id_header(value: str | None) -> str:
    """``Idempotency-Key``, the mutation id; a fresh one when absent."""
    if value is None or value == "":
        return "http-" + uuid.uuid4().hex
    if len(value) > 128 or _has_control(value):
        raise BadRequest("Idempotency-Key must be 1 to 128 characters without control characters")
    return value
