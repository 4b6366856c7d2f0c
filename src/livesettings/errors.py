"""The one exception tree of livesettings.

Every error carries the DESIGN's snake_case ``code``, the HTTP ``status`` it maps to, a human
``message`` and optional JSON-serialisable ``details``. The server turns them into
``{"error": {"code", "message", "details"}}`` bodies and WebSocket ``error`` frames; the clients
turn those back into the same classes.

    LiveSettingsError
    ├── BadRequest                400  malformed JSON, wrong frame shape
    ├── Unauthorized              401  no token, bad token
    │   └── TokenExpired          401
    ├── Forbidden                 403  wrong role, foreign Origin, signup disabled
    ├── NotFound                  404
    ├── Conflict                  409  username taken
    ├── RevisionGone              410  revert beyond the retained window
    ├── PreconditionFailed        412  stale If-Match
    ├── TooLarge                  413  body, patch or document over its limit
    ├── ValidationError           422  a value the document does not accept (has ``path``)
    │   ├── TooDeep               422
    │   ├── KeyTooLong            422
    │   └── IdempotencyKeyReused  422
    ├── PreconditionRequired      428  PUT without If-Match
    ├── RateLimited               429  (has ``retry_after`` seconds)
    ├── OfflineSecret             —    a client refused to queue a secret while offline
    ├── ConfigError               —    the configuration cannot be used
    ├── SnapshotError             —    a backup or restore was refused
    ├── StorageError              503  the database failed or is unreachable
    ├── CryptoError               500  a secret or data key does not decrypt
    └── ConnectionClosed          —    a client's connection ended
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, ClassVar

__all__ = [
    "BadRequest",
    "ConfigError",
    "Conflict",
    "ConnectionClosed",
    "CryptoError",
    "Forbidden",
    "IdempotencyKeyReused",
    "KeyTooLong",
    "LiveSettingsError",
    "NotFound",
    "OfflineSecret",
    "PreconditionFailed",
    "PreconditionRequired",
    "RateLimited",
    "RevisionGone",
    "SnapshotError",
    "StorageError",
    "TokenExpired",
    "TooDeep",
    "TooLarge",
    "Unauthorized",
    "ValidationError",
    "error_from_payload",
]


class LiveSettingsError(Exception):
    """Root of every livesettings error."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.details = details

    def to_payload(self) -> dict[str, Any]:
        """The ``error`` object of an HTTP error body."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class BadRequest(LiveSettingsError):
    code = "bad_request"
    status = 400


class Unauthorized(LiveSettingsError):
    code = "unauthorized"
    status = 401


class TokenExpired(Unauthorized):
    code = "token_expired"


class Forbidden(LiveSettingsError):
    code = "forbidden"
    status = 403


class NotFound(LiveSettingsError):
    code = "not_found"
    status = 404


class Conflict(LiveSettingsError):
    code = "conflict"
    status = 409


class RevisionGone(LiveSettingsError):
    code = "revision_gone"
    status = 410


class PreconditionFailed(LiveSettingsError):
    code = "precondition_failed"
    status = 412


class TooLarge(LiveSettingsError):
    code = "too_large"
    status = 413


class ValidationError(LiveSettingsError):
    """A value the document does not accept; ``path`` is the JSON Pointer of the culprit."""

    code = "invalid"
    status = 422

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        code: str | None = None,
        details: Any = None,
    ) -> None:
        if details is None:
            details = {"path": path}
        super().__init__(message, code=code, details=details)
        self.path = path


class TooDeep(ValidationError):
    code = "too_deep"


class KeyTooLong(ValidationError):
    code = "key_too_long"


class IdempotencyKeyReused(ValidationError):
    code = "idempotency_key_reused"


class PreconditionRequired(LiveSettingsError):
    code = "precondition_required"
    status = 428


class RateLimited(LiveSettingsError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: float = 1.0, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class OfflineSecret(LiveSettingsError):
    code = "offline_secret"
    status = 409


class ConfigError(LiveSettingsError):
    code = "config_error"
    status = 500


class SnapshotError(LiveSettingsError):
    """A backup or restore was refused; the message says why and what to do."""

    code = "snapshot_refused"
    status = 500


class StorageError(LiveSettingsError):
    code = "storage_unavailable"
    status = 503


class CryptoError(LiveSettingsError):
    code = "decrypt_failed"
    status = 500


class ConnectionClosed(LiveSettingsError):
    code = "connection_closed"
    status = 503


_BY_STATUS: dict[int, type[LiveSettingsError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: RevisionGone,
    412: PreconditionFailed,
    413: TooLarge,
    422: ValidationError,
    428: PreconditionRequired,
    429: RateLimited,
    503: StorageError,
}

_BY_CODE: dict[str, type[LiveSettingsError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        TokenExpired,
        Forbidden,
        NotFound,
        Conflict,
        RevisionGone,
        PreconditionFailed,
        TooLarge,
        ValidationError,
        TooDeep,
        KeyTooLong,
        IdempotencyKeyReused,
        PreconditionRequired,
        RateLimited,
        OfflineSecret,
        ConfigError,
        SnapshotError,
        StorageError,
        CryptoError,
        ConnectionClosed,
    )
}


# Every code the server sends, with its class, is listed once in spec/error_codes.json (the
# browser client and tests/test_error_codes.py read it too). Codes that share a class with
# another code come from there, so an error frame (which carries no status) is rebuilt as the
# class that raised it.
def _codes_of_the_spec() -> dict[str, type[LiveSettingsError]]:
    text = resources.files("livesettings").joinpath("spec/error_codes.json").read_text("utf-8")
    classes = {cls.__name__: cls for cls in _BY_CODE.values()}
    return {
        code: classes[entry["class"]]
        for code, entry in json.loads(text)["codes"].items()
        if entry["class"] in classes and code not in _BY_CODE
    }


_BY_CODE.update(_codes_of_the_spec())


def error_from_payload(payload: Any, status: int | None = None) -> LiveSettingsError:
    """Rebuild an exception from a server's error body or ``error`` frame."""
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        payload = payload["error"]
    if not isinstance(payload, dict):
        payload = {}
    code = str(payload.get("code") or "error")
    message = str(payload.get("message") or "the server reported an error")
    details = payload.get("details")
    cls = _BY_CODE.get(code) or (_BY_STATUS.get(status) if status else None) or LiveSettingsError
    if issubclass(cls, ValidationError):
        path = details.get("path", "") if isinstance(details, dict) else ""
        return cls(message, path=str(path), code=code, details=details)
    if cls is RateLimited:
        retry = details.get("retry_after", 1.0) if isinstance(details, dict) else 1.0
        return RateLimited(message, retry_after=float(retry), details=details)
    return cls(message, code=code, details=details)
