"""livesettings: real-time settings synchronisation for applications.

One durable settings document per user, pushed at once to every tab, device and service of that
user; offline edits replay exactly once; concurrent edits merge field by field.
"""

from __future__ import annotations

from . import errors as _errors
from .client import Ack, AsyncClient, Change, ChangeOrigin, Client, ConnectionState, Status
from .config import Config
from .errors import *  # noqa: F403  (the exception tree: every class errors.__all__ names)

__version__ = "0.2.0"

__all__ = ["Config", "__version__"]
__all__ += ["Ack", "AsyncClient", "Change", "ChangeOrigin", "Client", "ConnectionState", "Status"]
# The exception tree (not the helper that rebuilds errors from wire payloads).
__all__ += [name for name in _errors.__all__ if name != "error_from_payload"]
