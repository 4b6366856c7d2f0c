"""PostgreSQL driver errors translated where they enter, and the parts of a URL they name.

Every asyncpg error that leaves :mod:`livesettings.store.postgres` goes through
:func:`translate` (a statement) or :func:`connect_error` (a connection), so a caller sees one
of :mod:`livesettings.errors` with a message that says what to fix — never the password.
"""

from __future__ import annotations

import getpass
import logging
import os
from typing import Final
from urllib.parse import unquote, urlsplit

import asyncpg

from ..errors import ConfigError, LiveSettingsError, StorageError, ValidationError
from ..urls import redact_url

__all__ = [
    "CONNECTION_ERRORS",
    "DRIVER_ERRORS",
    "connect_error",
    "lacks_rights",
    "location_of",
    "role_of",
    "translate",
]

logger = logging.getLogger(__name__)

# Driver errors that mean the server or the connection is gone (or never came).
CONNECTION_ERRORS: Final = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InternalClientError,  # e.g. a backend terminated while the connection was idle
)
DRIVER_ERRORS: Final = (asyncpg.PostgresError, *CONNECTION_ERRORS, TimeoutError)


def translate(exc: BaseException, timeout: float | None) -> LiveSettingsError:
    """A driver error as one of ours, with a message that says what happened."""
    if isinstance(exc, LiveSettingsError):
        return exc
    if isinstance(
        exc, asyncpg.UntranslatableCharacterError | asyncpg.CharacterNotInRepertoireError
    ):
        return ValidationError(
            "a value holds a character PostgreSQL cannot store (U+0000)",
            path="",
            code="invalid_value",
        )
    if isinstance(exc, TimeoutError | asyncpg.QueryCanceledError):
        after = "" if timeout is None else f" within {timeout:g} s"
        return StorageError(f"PostgreSQL did not answer{after}; is the database overloaded?")
    if isinstance(exc, CONNECTION_ERRORS):
        return StorageError(f"lost the connection to PostgreSQL: {exc or type(exc).__name__}")
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return StorageError(
            f"PostgreSQL refused the app role: {exc}; run `livesettings setup`, which grants "
            "the app role what it needs"
        )
    if isinstance(
        exc,
        asyncpg.UndefinedTableError | asyncpg.UndefinedFunctionError | asyncpg.UndefinedColumnError,
    ):
        return StorageError(
            f"the livesettings schema is missing or outdated ({exc}); run `livesettings setup`"
        )
    if isinstance(exc, asyncpg.PostgresError):
        return StorageError(f"PostgreSQL refused a statement: {exc}")
    logger.error("a database call failed unexpectedly", exc_info=exc)
    return LiveSettingsError("the database call failed on the server", code="internal_error")


def lacks_rights(exc: BaseException) -> ConfigError:
    """The role connected as may not read the livesettings tables."""
    return ConfigError(
        f"the role of LIVESETTINGS_DATABASE_URL may not read the livesettings tables "
        f"({exc}); run `livesettings setup`, which grants the app role what it needs"
    )


def connect_error(exc: BaseException, url: str) -> LiveSettingsError:
    """Why a connection could not be made, naming the database but never the password."""
    where = location_of(url)
    role, _ = role_of(url)
    if isinstance(exc, LiveSettingsError):
        return exc
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return ConfigError(f"the database {where} does not exist: {exc}")
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return ConfigError(f"PostgreSQL at {where} refused the password of role {role!r}")
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        hint = (
            "; run `livesettings setup` (with LIVESETTINGS_ADMIN_DATABASE_URL) to create it"
            if "does not exist" in str(exc)
            else ""
        )
        return ConfigError(f"PostgreSQL at {where} refused role {role!r}: {exc}{hint}")
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return StorageError(f"PostgreSQL at {where} has no connection slot left: {exc}")
    if isinstance(exc, TimeoutError):
        return StorageError(f"cannot reach PostgreSQL at {where}: no answer in time")
    if isinstance(exc, CONNECTION_ERRORS):
        return StorageError(f"cannot reach PostgreSQL at {where}: {exc}")
    if isinstance(exc, asyncpg.PostgresError):
        return StorageError(f"PostgreSQL at {where} refused the connection: {exc}")
    if isinstance(exc, ValueError):  # asyncpg's DSN parser
        return ConfigError(f"the database URL {redact_url(url)!r} is malformed: {exc}")
    raise exc


def role_of(url: str) -> tuple[str, str | None]:
    """The role and password a ``postgresql://role:password@host/db`` URL names."""
    parts = urlsplit(url)
    role = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return role or os.environ.get("PGUSER") or getpass.getuser(), password


def location_of(url: str) -> str:
    """``host:port/database`` of a URL, for messages."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or "localhost"
    return f"{host}:{port or 5432}{parts.path or '/'}"
