"""The client package exports exactly the names meant to be public."""

from __future__ import annotations

import livesettings.client as client


def test_exported_names() -> None:
    assert sorted(client.__all__) == [
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
    for name in client.__all__:
        value = getattr(client, name)
        assert value.__doc__, f"{name} has no docstring"
