"""``livesettings.audit``: one JSON object per line, never a secret-bearing field."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from livesettings.audit import AUDIT_LOGGER, audit, audit_trail, close_audit_file, open_audit_file


def test_an_event_is_one_json_line_in_order(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER):
        audit("signin_failed", user_id=None, reason="wrong_password", address="203.0.113.7\n")
    (record,) = caplog.records
    assert record.name == "livesettings.audit"
    assert record.getMessage() == (
        '{"event":"signin_failed","user_id":null,"reason":"wrong_password",'
        '"address":"203.0.113.7\\n"}'
    )
    assert "\n" not in record.getMessage()


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
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"event": "signup", "user_id": "u1", "address": "127.0.0.1"},
        {"event": "logout", "user_id": "u1"},
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert open_audit_file(None) is None


def test_a_cli_trail_without_a_file_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with audit_trail(None):
        audit("keys_rotated", active="new", rewrapped=3)
    assert capsys.readouterr().err == '{"event":"keys_rotated","active":"new","rewrapped":3}\n'
