"""Strict JSON, the one rule for request bodies and WebSocket frames (RFC 8259), and the
encoder of the hot answers.

Python's :mod:`json` accepts ``NaN``, ``Infinity`` and ``-Infinity``, and parses an overflowing
literal such as ``1e400`` to ``inf``. None of these is JSON, and none could be stored or sent
back (the encoders use ``allow_nan=False``), so all of them are refused here with a
``ValueError``, like any other malformed document.

:func:`loads_bytes` tries orjson first (several times faster). orjson refuses everything the
rule above refuses, but it reads an integer beyond 64 bits as a float, and its error messages
differ, and it nests deeper than :mod:`json` can; so a body with a run of 19 or more digits
or 256 brackets, and any body orjson refuses, is decoded by
the :mod:`json` path of :func:`loads`, which gives the answer (or the error) it always gave.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final, NoReturn

import orjson

__all__ = ["dumps", "loads", "loads_bytes"]


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    # Overflowing literals such as 1e400 parse to inf without passing through parse_constant.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


_DECODER: Final = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_parse_float)
_LONG_DIGITS: Final = re.compile(rb"[0-9]{19}")
"""Where an integer literal might not fit 64 bits (orjson would make it a float)."""
_MAX_NESTING: Final = 256


def loads(text: str) -> Any:
    """``text`` decoded; ``ValueError`` (``json.JSONDecodeError`` among them) when it is not
    strict JSON, ``RecursionError`` when it is nested too deeply for the parser.

    >>> loads('{"a": [1, 2.5]}')
    {'a': [1, 2.5]}
    >>> loads("[NaN]")
    Traceback (most recent call last):
    ...
    ValueError: NaN is not valid JSON
    """
    return _DECODER.decode(text)


def loads_bytes(raw: bytes) -> Any:
    """``raw`` (UTF-8) decoded by the rule of :func:`loads`, with the same results and errors;
    ``UnicodeDecodeError`` (a ``ValueError``) when it is not UTF-8.

    >>> loads_bytes(b'{"a": [1, 2.5]}')
    {'a': [1, 2.5]}
    >>> loads_bytes(b"[12345678901234567890123]")
    [12345678901234567890123]
    """
    nesting = raw.count(b"[") + raw.count(b"{")  # orjson nests deeper than json's stack
    if nesting < _MAX_NESTING and _LONG_DIGITS.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the json path below refuses it with its own message
    return loads(raw.decode("utf-8"))


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON, non-ASCII as is, ``NaN`` refused (``ValueError``):
    what Starlette's ``JSONResponse`` renders, by orjson when it can (numbers may be spelt
    differently, e.g. ``1e-05`` as ``0.00001``; they are the same numbers).

    >>> dumps({"a": [1, "é"]})
    b'{"a":[1,"\\xc3\\xa9"]}'
    """
    try:
        encoded = orjson.dumps(value)
    except TypeError:
        # Beyond 64-bit integers, keys that are not strings, types orjson does not know:
        # the standard encoder decides, as it always did.
        encoded = b"null"
    if b"null" not in encoded or orjson.loads(encoded) == value:
        return encoded
    # orjson writes NaN and infinities as null (the standard encoder refuses them), and
    # tuples come back as lists: the standard encoder decides.
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")
