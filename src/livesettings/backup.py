"""Backups and migration as JSON lines: ``livesettings export`` and ``livesettings import``.

One line per user (:func:`~livesettings.store.codec.exported_to_json`): the account (username
and Argon2 hash), the document with its leaf records and revision, and the data key *wrapped*
by its master key. Secrets stay sealed and data keys stay wrapped, so a backup is useless
without the keyring that wrapped them, and a restore needs that keyring to read any secret.
A team's document and data key are on such a line too, under the key ``team:<team_id>``.

After the users, one line per team (:func:`~livesettings.store.codec.team_to_json`, marked
``"kind": "team"``): its name, creator, creation time and members with their roles. A line
without ``kind`` is a user's, so an export made before teams still imports; a line of an
unknown kind is refused. Members are restored as they were, also those whose user has no
account in the target (a user id may belong to an external token issuer).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .errors import BadRequest, Conflict
from .store import ExportedUser, Store
from .store.base import ExportedTeam
from .store.codec import (
    TEAM_KIND,
    dumps,
    exported_from_json,
    exported_to_json,
    team_from_json,
    team_to_json,
)

__all__ = ["ExportResult", "ImportResult", "export_users", "import_users", "parse_line"]


@dataclass
class ExportResult:
    """How many users were written, and how many data keys each master key id wraps."""

    users: int = 0
    teams: int = 0
    master_key_ids: Counter[str] = field(default_factory=Counter)


@dataclass
class ImportResult:
    """How many users (and teams) were imported or skipped (already present), and the users'
    data keys' master key ids (a restore can read only the secrets of ids in its keyring)."""

    imported: int = 0
    skipped: int = 0
    teams: int = 0
    teams_skipped: int = 0
    master_key_ids: Counter[str] = field(default_factory=Counter)


async def export_users(
    store: Store,
    write: Callable[[bytes], object],
    *,
    on_progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write every user, then every team, of ``store`` as one UTF-8 JSON line each through
    ``write``."""
    result = ExportResult()
    async for user in store.export_users():
        write(dumps(exported_to_json(user)).encode("utf-8") + b"\n")
        result.users += 1
        _done(user, result.master_key_ids, on_progress)
    async for team in store.export_teams():
        write(dumps(team_to_json(team)).encode("utf-8") + b"\n")
        result.teams += 1
        if on_progress is not None:
            on_progress(1)
    return result


def _done(
    user: ExportedUser, master_key_ids: Counter[str], on_progress: Callable[[int], None] | None
) -> None:
    """Count ``user``'s master key (if it has a data key) and report one more line done."""
    if user.wrapped_key is not None:
        master_key_ids[user.wrapped_key.master_key_id] += 1
    if on_progress is not None:
        on_progress(1)


def parse_line(raw: bytes | str, number: int) -> ExportedUser | ExportedTeam | None:
    """The user or team on line ``number`` (1-based), ``None`` for a blank line.

    ``BadRequest(code="malformed_export")`` names the line when it is not an export line.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise BadRequest(f"line {number}: not UTF-8 text", code="malformed_export") from None
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise BadRequest(f"line {number}: not valid JSON", code="malformed_export") from None
    if not isinstance(value, dict):
        raise BadRequest(f"line {number}: not a JSON object", code="malformed_export")
    kind = value.get("kind")
    try:
        if kind == TEAM_KIND:
            return team_from_json(value)
        if kind is None:
            return exported_from_json(value)
        raise BadRequest(f"unknown kind of line {kind!r} (made by a newer version?)")
    except BadRequest as exc:
        raise BadRequest(f"line {number}: {exc.message}", code="malformed_export") from exc


async def import_users(
    store: Store,
    lines: Iterable[bytes | str],
    *,
    skip_existing: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import export lines into ``store``, each user and each team (with its members) in its
    own transaction.

    A user or team that already exists raises ``Conflict`` naming the line, or is counted as
    skipped with ``skip_existing`` (so an interrupted import can be run again to finish).
    Lines before the one that failed stay imported.
    """
    result = ImportResult()
    for number, raw in enumerate(lines, start=1):
        user = parse_line(raw, number)
        if user is None:
            continue
        if isinstance(user, ExportedTeam):
            await _import_team(store, user, number, skip_existing, result)
            if on_progress is not None:
                on_progress(1)
            continue
        try:
            await store.import_user(user)
        except Conflict as exc:
            if not (skip_existing and await _exists(store, user.user_id)):
                raise Conflict(f"line {number}: {exc.message}", details=exc.details) from exc
            result.skipped += 1
            if on_progress is not None:
                on_progress(1)
        else:
            result.imported += 1
            _done(user, result.master_key_ids, on_progress)
    return result


async def _import_team(
    store: Store, team: ExportedTeam, number: int, skip_existing: bool, result: ImportResult
) -> None:
    try:
        await store.import_team(team)
    except Conflict as exc:
        if not skip_existing:
            raise Conflict(f"line {number}: {exc.message}", details=exc.details) from exc
        result.teams_skipped += 1
    else:
        result.teams += 1


async def _exists(store: Store, user_id: str) -> bool:
    # A username taken by *another* user is a real conflict, not "already imported".
    if await store.get_user(user_id) is not None:
        return True
    if await store.get_wrapped_key(user_id) is not None:
        return True
    doc = await store.get_document(user_id)
    return doc.revision > 0 or doc.created_at is not None
