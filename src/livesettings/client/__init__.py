"""The Python client SDK: live settings in any Python process, online or offline.

:class:`AsyncClient` is the core (asyncio); :class:`Client` runs it on a background thread for
code without an event loop. Both keep one user's settings in sync over ``/v1/realtime``, show
edits at once, queue them while offline (in a SQLite cache with ``cache_path=``), replay them
exactly once on reconnect, and tell subscribers about every change — or about a reset.
Like the browser client, they also tell the masked API keys when they change
(``on_api_keys_update``), conflicts as :class:`EditConflict` objects (``on_conflict``) and
refused edits as :class:`ErrorEvent` objects (``on_error``).

Team documents (shared settings, with roles): ``AsyncClient(..., doc=team_doc(team_id))``
follows a team's document the same way, ``on_membership`` tells role changes (a removed
member stops receiving it), and ``teams()``, ``create_team()``, ``members()``,
``set_member()``, ``leave_team()``, ``effective_settings()``… manage teams as the token's user.

``export_account()`` returns the user's data as JSON (secrets masked), and
``delete_account(password=None)`` deletes the account and closes the client.
"""

from __future__ import annotations

from .backoff import backoff
from .cache import OfflineCache
from .core import AsyncClient
from .events import EditConflict, ErrorEvent
from .handles import Subscription, UpdateHandle
from .state import Ack, Change, ChangeOrigin
from .status import ConnectionState, Status
from .sync import Client, SyncUpdateHandle
from .teams import Member, Membership, Team, can_write, team_doc
from .tokens import RefreshingToken, Tokens, sign_in, sign_up

__all__ = [
    "Ack",
    "AsyncClient",
    "Change",
    "ChangeOrigin",
    "Client",
    "ConnectionState",
    "EditConflict",
    "ErrorEvent",
    "Member",
    "Membership",
    "OfflineCache",
    "RefreshingToken",
    "Status",
    "Subscription",
    "SyncUpdateHandle",
    "Team",
    "Tokens",
    "UpdateHandle",
    "backoff",
    "can_write",
    "sign_in",
    "sign_up",
    "team_doc",
]
