"""Schemathesis hooks for ``st run`` (loaded through ``SCHEMATHESIS_HOOKS``).

- Every request gets a freshly issued token for the user named by ``LS_ST_USER`` (with role
  ``LS_ST_ROLE`` if set), so that a generated ``POST /v1/auth/logout`` — which ends the
  sessions issued before it — cannot turn the rest of the run into 401s.
- A valid ``Idempotency-Key`` is made unique per request: reusing a key with another body is
  refused by design (422 ``idempotency_key_reused``), which a generator reusing ``"0"`` would
  keep hitting. Invalid keys are left alone, so that their rejection is still tested.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import schemathesis

from livesettings.auth import TokenIssuer


@schemathesis.auth(refresh_interval=None)
class FreshToken:
    """A new HS256 token per request, signed with the test server's secret."""

    def __init__(self) -> None:
        self.issuer = TokenIssuer(os.environ["LS_ST_SECRET"].encode())
        self.user = os.environ["LS_ST_USER"]
        self.role = os.environ.get("LS_ST_ROLE") or None

    def get(self, case: Any, context: Any) -> str:
        token, _ = self.issuer.issue(self.user, role=self.role)
        return token

    def set(self, case: Any, data: str, context: Any) -> None:
        headers = dict(case.headers or {})
        headers["Authorization"] = f"Bearer {data}"
        for name, value in headers.items():
            if name.lower() == "idempotency-key" and _valid_key(value):
                headers[name] = (uuid.uuid4().hex + str(value))[:128]
        case.headers = headers


def _valid_key(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 128
        and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)
    )
