"""strict_json: the orjson fast paths give what the json paths give, and refuse the same."""

from __future__ import annotations

import json
import math

import pytest

from livesettings import strict_json

ACCEPTED = [
    b'{"a": [1, 2.5, "x", true, false, null]}',
    b'{"a": 1, "a": 2}',  # the last one wins, as in json
    b"[123456789012345678901234567890]",  # stays an int (orjson would make it a float)
    b"[-9223372036854775809, 18446744073709551616]",
    b'["\\ud800"]',  # a lone surrogate escape: json accepts it
    b'"\\u00e9\xc3\xa9"',
    b"[1e308, 5e-324, -0.0, 0.1]",
    b"[" * 300 + b"]" * 300,  # deeper than orjson's fast path is used for
]
REFUSED = [
    b"[NaN]",
    b"[Infinity]",
    b"[-Infinity]",
    b"[1e400]",
    b"[" + b"1" * 400 + b".0]",
    b'{"a": 1,}',
    b"\xef\xbb\xbf[1]",
    b"\xff",
    b'"\x01"',
    b"",
]


@pytest.mark.parametrize("raw", ACCEPTED)
def test_loads_bytes_decodes_as_json_does(raw: bytes) -> None:
    got = strict_json.loads_bytes(raw)
    assert got == json.loads(raw.decode("utf-8"))
    assert repr(got) == repr(json.loads(raw.decode("utf-8")))  # same types, int stays int


@pytest.mark.parametrize("raw", REFUSED)
def test_loads_bytes_refuses_what_loads_refuses(raw: bytes) -> None:
    with pytest.raises(ValueError) as fast:
        strict_json.loads_bytes(raw)
    try:
        strict_json.loads(raw.decode("utf-8"))
    except ValueError as slow:
        assert str(fast.value) == str(slow)  # the same message, from the same parser
    else:
        pytest.fail("loads accepted what loads_bytes refused")


@pytest.mark.parametrize(
    "value",
    [
        {"revision": 3, "settings": {"theme": "dark", "n": [1, 2.5, "é"]}, "conflicts": []},
        {"updated_at": None, "t": (1, None)},
        {1: "non-string key"},
        [2**70],
        "\u2028/<>",
    ],
)
def test_dumps_is_the_json_the_response_always_had(value: object) -> None:
    expected = json.dumps(
        value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    )
    assert json.loads(strict_json.dumps(value)) == json.loads(expected)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_dumps_refuses_non_finite_numbers(bad: float) -> None:
    with pytest.raises(ValueError):
        strict_json.dumps({"a": [1, {"b": bad}]})
