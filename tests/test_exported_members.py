"""The public API is what was meant: every exported name exists and nothing else leaks."""

from __future__ import annotations

import importlib
import pkgutil

import livesettings

EXPECTED = {
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
    "SnapshotError",
    "StorageError",
    "TokenExpired",
    "TooDeep",
    "TooLarge",
    "Unauthorized",
    "ValidationError",
    "__version__",
}


def test_top_level_exports() -> None:
    assert set(livesettings.__all__) == EXPECTED
    for name in livesettings.__all__:
        assert getattr(livesettings, name) is not None


def test_every_error_descends_from_the_root() -> None:
    for name in livesettings.__all__:
        value = getattr(livesettings, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, livesettings.LiveSettingsError), name


def test_every_module_declares_all_and_exports_what_exists() -> None:
    for info in pkgutil.walk_packages(livesettings.__path__, "livesettings."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"{info.name} has no __all__"
        for name in exported:
            assert hasattr(module, name), f"{info.name}.__all__ names missing {name}"
