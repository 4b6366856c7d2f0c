"""A user's data as one JSON document (data portability): the account, the settings as
``GET /v1/settings`` shows them, the retained change history as the change feed shows it,
and the team memberships. Never a plaintext secret: the settings are masked by
:meth:`Services.view`, and the change log holds masked patches only.
"""

from __future__ import annotations

from typing import Any, Final

from ..document import rfc3339
from ..store.base import ChangeRow, ChangesPage, Store
from .services import Services
from .settings_routes import changes_body

__all__ = ["EXPORT_FILENAME", "account_export"]

EXPORT_FILENAME: Final = "livesettings-export.json"

_PAGE: Final = 1000


async def account_export(services: Services, user_id: str) -> dict[str, Any]:
    """The export of ``user_id``'s account (the body of ``GET /v1/account/export``)."""
    store = services.store
    user = await store.get_user(user_id)
    doc = await store.get_document(user_id)
    # Changes up to the document's revision: a write committed meanwhile is in neither.
    changes, complete = await _history(store, user_id, doc.revision)
    teams = await store.teams.teams_of(user_id)
    return {
        "format": "livesettings-account-export",
        "version": 1,
        "exported_at": rfc3339(services.clock.time_ms()),
        "user": {
            "user_id": user_id,
            "username": user.username if user is not None else None,
            "created_at": user.created_at if user is not None else doc.created_at,
        },
        "revision": doc.revision,
        "settings": services.view(doc.settings),
        "updated_at": doc.updated_at,
        "changes": changes_body(ChangesPage(changes, doc.revision, False))["changes"],
        "history_complete": complete,
        "teams": [{"team_id": t.team_id, "name": t.name, "role": t.role} for t in teams],
    }


async def _history(store: Store, user_id: str, upto: int) -> tuple[tuple[ChangeRow, ...], bool]:
    """Every retained change of ``user_id`` up to revision ``upto``, oldest first, and
    whether they reach back to the first revision (none was pruned)."""
    since = await _oldest_readable(store, user_id, upto)
    complete = since == 0
    rows: list[ChangeRow] = []
    while since < upto:
        page = await store.changes_since(user_id, since, _PAGE)
        if page.reset:  # pruned under our feet (a busy user): carry on from what is left
            since = await _oldest_readable(store, user_id, upto, since)
            complete = False
            continue
        taken = [row for row in page.changes if row.revision <= upto]
        rows.extend(taken)
        if len(page.changes) < _PAGE or len(taken) < len(page.changes):
            break
        since = page.changes[-1].revision
    return tuple(rows), complete


async def _oldest_readable(store: Store, user_id: str, upto: int, low: int = 0) -> int:
    """The smallest ``since`` from which the change log of ``user_id`` is readable (the
    retained log reaches back to it), found by bisection between ``low`` and ``upto``: the
    store answers ``reset`` for any ``since`` older than what it retains."""
    if not (await store.changes_since(user_id, low, 1)).reset:
        return low
    high = upto  # reading from the current revision never needs the pruned part
    while high - low > 1:
        middle = (low + high) // 2
        if (await store.changes_since(user_id, middle, 1)).reset:
            low = middle
        else:
            high = middle
    return high
