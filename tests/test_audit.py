"""``livesettings.audit``: one JSON object per line, never a secret-bearing field."""

from __future__ import annotations

import doctest
import json
import logging
import re
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import livesettings.audit
from livesettings.audit import (
    AUDIT_LOGGER,
    audit,
    audit_trail,
    close_audit_file,
    open_audit_file,
    rfc3339_ms,
)

_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _without_ts(event: dict[str, Any]) -> dict[str, Any]:
    assert _TS.fullmatch(event["ts"]), event
    return {k: v for k, v in event.items() if k != "ts"}


def test_an_event_is_one_json_line_in_order(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER):
        audit(
            "signin_failed",
            user_id=None,
            reason="wrong_password",
            address="203.0.113.7\n",
            clock=lambda: 1764349200.0071,
        )
    (record,) = caplog.records
    assert record.name == "livesettings.audit"
    assert record.getMessage() == (
        '{"ts":"2025-11-28T17:00:00.007Z","event":"signin_failed","user_id":null,'
        '"reason":"wrong_password","address":"203.0.113.7\\n"}'
    )
    assert "\n" not in record.getMessage()


def test_every_line_carries_its_time_in_rfc3339_utc_with_milliseconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = time.time()
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER):
        audit("logout", user_id="u1")
    after = time.time()
    ts = json.loads(caplog.records[0].getMessage())["ts"]
    assert _TS.fullmatch(ts), ts
    parsed = datetime.fromisoformat(ts).timestamp()  # Python 3.11 reads the "Z"
    assert int(before * 1000) / 1000 <= parsed <= after
    assert datetime.fromisoformat(ts).tzinfo == UTC
    assert rfc3339_ms(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339_ms(1764349200.999) == "2025-11-28T17:00:00.999Z"
    assert rfc3339_ms(951782400.5) == "2000-02-29T00:00:00.500Z"
    assert doctest.testmod(livesettings.audit).failed == 0


def test_ts_cannot_be_overridden() -> None:
    with pytest.raises(ValueError, match="ts is the time of the event"):
        audit("oops", ts="1970-01-01T00:00:00.000Z")


def test_fields_that_could_carry_a_secret_are_refused() -> None:
    for name in ("token", "password", "secret", "value", "refresh_token", "master_key"):
        with pytest.raises(ValueError, match=f"audit lines never carry {name}"):
            audit("oops", **{name: "x"})


def test_long_text_is_cut(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER):
        audit("token_rejected", reason="r" * 1000)
    assert json.loads(caplog.records[0].getMessage())["reason"] == "r" * 200


def test_the_audit_file_is_private_and_gets_every_line(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.log"
    handler = open_audit_file(path)
    try:
        audit("signup", user_id="u1", address="127.0.0.1")
        audit("logout", user_id="u1")
    finally:
        close_audit_file(handler)
    audit("after", user_id="u1")  # the file is closed: not written
    lines = [_without_ts(json.loads(line)) for line in path.read_text().splitlines()]
    assert lines == [
        {"event": "signup", "user_id": "u1", "address": "127.0.0.1"},
        {"event": "logout", "user_id": "u1"},
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert open_audit_file(None) is None


def test_a_cli_trail_without_a_file_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with audit_trail(None):
        audit("keys_rotated", active="new", rewrapped=3, clock=lambda: 1764349200.25)
    assert capsys.readouterr().err == (
        '{"ts":"2025-11-28T17:00:00.250Z","event":"keys_rotated","active":"new","rewrapped":3}\n'
    )
