"""The JSON error answers, one each, for the app's exception handlers and the lean routes
(``lean_routes.py``), which answer outside FastAPI's handlers and must answer the same."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from ..errors import LiveSettingsError, PreconditionFailed, RateLimited, TooLarge, Unauthorized
from .services import Services

__all__ = ["BodyTooLarge", "error_response", "http_error_response", "refusal_response"]

log = logging.getLogger("livesettings.server")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body grows past the limit (an HTTPException,
    which FastAPI's body parsing lets through to the error handlers)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the limit of {limit} bytes")
        self.limit = limit


def error_response(exc: LiveSettingsError) -> JSONResponse:
    """``exc`` as its JSON error body, with the headers its kind asks for."""
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="livesettings"'  # RFC 6750 §3
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, round(exc.retry_after + 0.499)))
    if isinstance(exc, PreconditionFailed) and isinstance(exc.details, dict):
        headers["ETag"] = f'"{exc.details.get("revision")}"'
    return JSONResponse({"error": exc.to_payload()}, status_code=exc.status, headers=headers)


def refusal_response(
    exc: LiveSettingsError, services: Services, method: str, path: str
) -> JSONResponse:
    """A route's refusal: counted in the metrics, logged when it is the server's fault."""
    services.metrics.errors.inc(code=exc.code)
    if exc.status >= 500:
        log.error("%s %s failed: %s", method, path, exc.code)
    return error_response(exc)


def http_error_response(exc: HTTPException, allowed: list[str] | None = None) -> JSONResponse:
    """An HTTPException (404, 405 with the ``allowed`` methods, 408, a body over the limit)."""
    if isinstance(exc, BodyTooLarge):
        return error_response(TooLarge(str(exc.detail), details={"limit": exc.limit}))
    code = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout"}.get(
        exc.status_code, "http_error"
    )
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405 and allowed is not None:
        headers["Allow"] = ", ".join(allowed)
    return JSONResponse(
        {"error": {"code": code, "message": str(exc.detail)}},
        status_code=exc.status_code,
        headers=headers or None,
    )
