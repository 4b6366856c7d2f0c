"""Strict JSON decoding, the one rule for request bodies and WebSocket frames (RFC 8259).

Python's :mod:`json` accepts ``NaN``, ``Infinity`` and ``-Infinity``, and parses an overflowing
literal such as ``1e400`` to ``inf``. None of these is JSON, and none could be stored or sent
back (the encoders use ``allow_nan=False``), so all of them are refused here with a
``ValueError``, like any other malformed document.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final, NoReturn

__all__ = ["loads"]


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    # Overflowing literals such as 1e400 parse to inf without passing through parse_constant.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


_DECODER: Final = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_parse_float)


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
