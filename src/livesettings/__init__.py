"""livesettings: real-time settings synchronisation for applications.

One durable settings document per user, pushed at once to every tab, device and service of that
user; offline edits replay exactly once; concurrent edits merge field by field.
"""

from __future__ import annotations

from .client import Ack, AsyncClient, Change, ChangeOrigin, Client, ConnectionState, Status
from .config import Config
from .errors import (
    BadRequest,
    ConfigError,
    Conflict,
    ConnectionClosed,
    CryptoError,
    Forbidden,
    IdempotencyKeyReused,
    KeyTooLong,
    LiveSettingsError,
    NotFound,
    OfflineSecret,
    PreconditionFailed,
    PreconditionRequired,
    RateLimited,
    RevisionGone,
    StorageError,
    TokenExpired,
    TooDeep,
    TooLarge,
    Unauthorized,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "Ack",
    "AsyncClient",
    "BadRequest",
    "Change",
    "ChangeOrigin",
    "Client",
    "Config",
    "ConfigError",
    "Conflict",
    "ConnectionClosed",
    "ConnectionState",
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
    "Status",
    "StorageError",
    "TokenExpired",
    "TooDeep",
    "TooLarge",
    "Unauthorized",
    "ValidationError",
    "__version__",
]
