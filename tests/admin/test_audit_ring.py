"""The audit ring buffer behind GET /v1/admin/audit (bounded, newest last, only while open),
and the check of LIVESETTINGS_ADMIN_CLAIM."""

from __future__ import annotations

import pytest

from livesettings.audit import AuditRing, audit
from livesettings.config import Config
from livesettings.errors import ConfigError


def test_the_ring_keeps_the_last_lines_while_open() -> None:
    ring = AuditRing(3)
    audit("before_open", n=0)
    ring.open()
    ring.open()  # idempotent: each line once
    try:
        for n in range(1, 6):
            audit("numbered", n=n, clock=lambda n=n: 1_800_000_000 + n)
    finally:
        ring.close()
    audit("after_close", n=6)
    lines = ring.recent()
    assert [(line["event"], line["n"]) for line in lines] == [
        ("numbered", 3),
        ("numbered", 4),
        ("numbered", 5),
    ]
    assert lines[-1]["ts"] == "2027-01-15T08:00:05.000Z"
    lines[0]["n"] = 99  # a copy: the ring is not changed through it
    assert ring.recent()[0]["n"] == 3


def test_the_admin_claim_is_checked_when_the_config_loads() -> None:
    loaded = Config.load(env={"LIVESETTINGS_ADMIN_CLAIM": "app_metadata.role:admin"})
    assert loaded.admin_claim == "app_metadata.role:admin"
    for bad in ("admin", "role:", ":admin", "a..b:admin"):
        with pytest.raises(ConfigError, match="LIVESETTINGS_ADMIN_CLAIM must be CLAIM:VALUE"):
            Config.load(env={"LIVESETTINGS_ADMIN_CLAIM": bad})
