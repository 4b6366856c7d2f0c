"""The error bodies of the two Supabase APIs, as their clients parse them.

- GoTrue (``/auth/v1``), as auth-js reads it: with ``X-Supabase-Api-Version: 2024-01-01`` (or
  later) on the request, ``{"code": "<error_code>", "message": …}`` and the version echoed
  back; without it, the initial shape ``{"code": <status>, "error_code": …, "msg": …}`` and an
  ``x-sb-error-code`` header.
- PostgREST (``/rest/v1``): ``{"code", "details", "hint", "message"}``.

The codes are the APIs' own (``invalid_credentials``, ``PGRST116``…), not livesettings'
error codes, so they are passed here as values, never written as ``code=`` literals.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response

from ... import strict_json
from ...errors import LiveSettingsError, RateLimited

__all__ = [
    "API_VERSION",
    "API_VERSION_HEADER",
    "GoTrueError",
    "PostgrestError",
    "gotrue_response",
    "json_answer",
    "postgrest_response",
    "retry_after_of",
]

API_VERSION_HEADER: Final = "X-Supabase-Api-Version"
API_VERSION: Final = "2024-01-01"
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


class GoTrueError(Exception):
    """A GoTrue error: HTTP ``status``, its ``error_code`` and message."""

    def __init__(
        self, status: int, error_code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.retry_after = retry_after


class PostgrestError(Exception):
    """A PostgREST error: HTTP ``status`` and the body's four fields."""

    def __init__(
        self,
        status: int,
        pg_code: str,
        message: str,
        *,
        details: str | None = None,
        hint: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.pg_code = pg_code
        self.message = message
        self.details = details
        self.hint = hint
        self.retry_after = retry_after


class _Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return strict_json.dumps(content)


def json_answer(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A JSON answer encoded like the rest of the server's (orjson)."""
    return _Json(body, status_code=status, headers=headers)


def _retry_headers(retry_after: float | None) -> dict[str, str]:
    if retry_after is None:
        return {}
    return {"Retry-After": str(max(1, math.ceil(retry_after)))}


def _versioned(connection: HTTPConnection) -> bool:
    """True when the client speaks GoTrue's 2024-01-01 API (auth-js always does)."""
    sent = connection.headers.get(API_VERSION_HEADER, "").strip()
    return bool(_DATE.fullmatch(sent)) and sent >= API_VERSION


def gotrue_response(connection: HTTPConnection, error: GoTrueError) -> Response:
    """``error`` as GoTrue answers it to this client."""
    headers = {"Cache-Control": "no-store", **_retry_headers(error.retry_after)}
    if _versioned(connection):
        headers[API_VERSION_HEADER] = API_VERSION
        body: dict[str, Any] = {"code": error.error_code, "message": error.message}
    else:
        headers["x-sb-error-code"] = error.error_code
        body = {"code": error.status, "error_code": error.error_code, "msg": error.message}
    return json_answer(body, error.status, headers)


def postgrest_response(error: PostgrestError) -> Response:
    """``error`` as PostgREST answers it."""
    body = {
        "code": error.pg_code,
        "details": error.details,
        "hint": error.hint,
        "message": error.message,
    }
    headers = {"Cache-Control": "no-store", **_retry_headers(error.retry_after)}
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return json_answer(body, error.status, headers)


def retry_after_of(exc: LiveSettingsError) -> float | None:
    """The wait a refusal asks for (429), if any."""
    return exc.retry_after if isinstance(exc, RateLimited) else None
