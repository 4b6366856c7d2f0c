"""The storage interface every backend implements, and the rows it speaks in.

A backend is chosen by URL scheme (:func:`livesettings.store.open_store`); the same storage test
suite (``tests/store/``) runs against each. Backends never decide merge semantics: they load what
:func:`livesettings.store.planning.plan_mutation` needs inside one transaction, and write what it
returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from .. import errors
from ..crypto import WrappedKey
from ..errors import LiveSettingsError
from ..merge import Conflict, Mutation, Record
from ..paths import Path
from .teams import MemberRow, TeamStore

__all__ = [
    "EXPORT_PAGE",
    "SCHEMA_VERSION",
    "SEARCH_LIMIT_MAX",
    "TOKEN_REVOCATION_GRACE_S",
    "AppliedMutation",
    "ChangeRow",
    "ChangesPage",
    "CommitOutcome",
    "ExportedTeam",
    "ExportedUser",
    "PendingMutation",
    "RefreshResult",
    "Store",
    "StoredDocument",
    "TeamSummary",
    "UserRow",
    "UserSummary",
    "export_in_pages",
    "like_pattern",
    "username_taken",
]

SCHEMA_VERSION = 3

EXPORT_PAGE = 200
"""Users per page of ``export_users`` (one read transaction each)."""

TOKEN_REVOCATION_GRACE_S = 24 * 3600
"""How long past its expiry a token revocation is kept (covers any clock leeway)."""

SEARCH_LIMIT_MAX = 100
"""The most rows one ``search_users`` / ``search_teams`` call returns."""


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """A user's document as stored: secrets sealed, leaf records, revision."""

    user_id: str
    revision: int
    settings: dict[str, Any]
    records: dict[Path, Record]
    updated_at: str | None = None
    created_at: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """One committed mutation as kept in the change log (``patch`` is effective and masked)."""

    user_id: str
    revision: int
    patch: dict[str, Any]
    mutation_id: str
    client_id: str
    committed_at: int
    conflicts: tuple[dict[str, Any], ...] = ()
    inverse: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChangesPage:
    """Changes after a revision, or ``reset=True`` when the log no longer reaches back."""

    changes: tuple[ChangeRow, ...]
    revision: int
    reset: bool


@dataclass(frozen=True, slots=True)
class AppliedMutation:
    """What is remembered of a mutation id, so a repeat returns the original answer."""

    mutation_id: str
    body_hash: str
    revision: int
    conflicts: tuple[dict[str, Any], ...]


MutationKind = Literal["patch", "put", "revert"]


@dataclass(frozen=True, slots=True)
class PendingMutation:
    """One write waiting for the writer: a merge patch, a whole document or a revert.

    ``user_id`` is the document key (a user id, or ``team:<team_id>``); ``actor`` the user
    writing a team's document (PostgreSQL's row-level security then requires them to be a
    member). ``body_hash`` identifies the request body for idempotency;
    ``expected_revision`` is the strict ``If-Match`` revision; ``revert_to`` the revision a
    revert restores.
    """

    user_id: str
    mutation: Mutation
    body_hash: str
    kind: MutationKind = "patch"
    expected_revision: int | None = None
    revert_to: int | None = None
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    """The answer to one pending mutation after its group commit.

    ``change`` is the change-log row when a revision was created; ``repeated`` marks a mutation
    id seen before (nothing changed); ``error`` is set when the mutation was refused (its
    savepoint rolled back, the rest of the batch unaffected).
    """

    user_id: str
    mutation_id: str
    revision: int
    conflicts: tuple[Conflict, ...] = ()
    conflict_payloads: tuple[dict[str, Any], ...] = ()
    change: ChangeRow | None = None
    settings: dict[str, Any] | None = None
    repeated: bool = False
    error: LiveSettingsError | None = None


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    username: str
    password_hash: str
    created_at: str


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """Presenting a refresh token: ``ok``, ``reused`` (family revoked) or ``invalid``."""

    status: Literal["ok", "reused", "invalid"]
    user_id: str | None = None
    family_id: str | None = None


@dataclass(frozen=True, slots=True)
class ExportedUser:
    """One line of ``livesettings export``: a user, its document and its wrapped data key."""

    user_id: str
    username: str | None
    password_hash: str | None
    document: StoredDocument
    wrapped_key: WrappedKey | None


@dataclass(frozen=True, slots=True)
class ExportedTeam:
    """A team line of ``livesettings export``: the team's row and its members (its document
    and data key are on the user lines, under the key ``team:<team_id>``)."""

    team_id: str
    name: str
    created_by: str
    created_at: str
    members: tuple[MemberRow, ...]


@dataclass(frozen=True, slots=True)
class UserSummary:
    """A user as the admin dashboard lists one: never a secret, a hash or a key.

    A user known only by a document (an identity provider's) has no ``username``; its
    ``created_at`` is the document's. ``revision`` 0 and ``updated_at`` None: no document yet.
    """

    user_id: str
    username: str | None
    created_at: str | None
    admin: bool
    revision: int
    updated_at: str | None
    teams: int


@dataclass(frozen=True, slots=True)
class TeamSummary:
    """A team as the admin dashboard lists one: its row, member count and document revision."""

    team_id: str
    name: str
    members: int
    revision: int
    created_at: str


def like_pattern(text: str, *, contains: bool) -> str:
    r"""``text`` as a LIKE pattern, escaped with a backslash: ``%text%`` or ``text%``.

    >>> like_pattern("50%_a", contains=False)
    '50\\%\\_a%'
    """
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%" if contains else f"{escaped}%"


def username_taken(user_id: str, username: str) -> errors.Conflict:
    """The error of an account whose username another account has."""
    return errors.Conflict(
        f"the username {username!r} is already taken",
        details={"username": username, "user_id": user_id},
    )


async def export_in_pages(
    page: Callable[[str], Awaitable[list[ExportedUser]]],
) -> AsyncIterator[ExportedUser]:
    """Every user, in user id order: ``page(after)`` reads up to :data:`EXPORT_PAGE` of them."""
    after = ""
    while True:
        users = await page(after)
        for user in users:
            yield user
        if len(users) < EXPORT_PAGE:
            return
        after = users[-1].user_id


@runtime_checkable
class Store(Protocol):
    """A durable home for documents, their change log, users, tokens and data keys."""

    url: str

    @property
    def teams(self) -> TeamStore:
        """Teams and memberships (their documents use the document methods below)."""

    async def open(self) -> None:
        """Connect; raise ``ConfigError`` when the schema is missing or of an unknown version."""

    async def close(self) -> None: ...

    async def setup(self) -> list[str]:
        """Create or upgrade the schema idempotently; return what was done, line by line."""

    async def schema_version(self) -> int | None: ...

    async def ping(self) -> None:
        """Raise ``StorageError`` when the database is unreachable."""

    async def info(self) -> dict[str, Any]:
        """Facts for ``verify``/``check-db``: backend, version, journal mode, sync level, …"""

    # documents and the change log: ``user_id`` is the document key; ``actor`` (a team's
    # document read for a user) makes PostgreSQL's row-level security require membership.
    async def get_document(self, user_id: str, *, actor: str | None = None) -> StoredDocument: ...

    async def row_id(self, user_id: str) -> int | str | None:
        """The document row's own primary key (``user_preferences.id``; a seed table adopted
        in place keeps its own, often a uuid); None before the first write. It never changes
        while the row lives (the Supabase-compatible endpoints show it as ``id``)."""

    async def commit(self, batch: Sequence[PendingMutation]) -> list[CommitOutcome]:
        """Apply every pending mutation in one transaction, each atomic; durable on return."""

    async def changes_since(
        self, user_id: str, since: int, limit: int, *, actor: str | None = None
    ) -> ChangesPage: ...

    async def snapshot_and_changes(
        self, user_id: str, since: int | None, limit: int, *, actor: str | None = None
    ) -> tuple[StoredDocument | None, ChangesPage]:
        """For a subscriber: the missed changes, or (``since`` null, too old, from the future)
        the document as a snapshot — read consistently in one transaction."""

    # users and tokens
    async def create_user(self, user_id: str, username: str, password_hash: str) -> UserRow: ...

    async def get_user(self, user_id: str) -> UserRow | None: ...

    async def get_user_by_username(self, username: str) -> UserRow | None: ...

    async def list_users(self) -> list[UserRow]:
        """Every account by username, with ``password_hash`` empty: listing never shows one."""

    async def remove_user(self, user_id: str) -> bool: ...

    async def set_password(self, user_id: str, password_hash: str) -> bool: ...

    # admins (the /admin dashboard)
    async def is_admin(self, user_id: str) -> bool:
        """Whether the built-in user has the admin flag."""

    async def set_admin(self, user_id: str, on: bool) -> bool:
        """Grant (``on``) or take back the admin flag of a built-in user. True when the flag
        changed; False when there is no built-in user of that id (granting) or the flag was
        already so — callers that must tell those apart look the user up first. Export and
        import do not carry the flag (grant it again after an import)."""

    async def admin_ids(self) -> set[str]:
        """The ids of every user with the admin flag."""

    async def search_users(self, q: str, limit: int) -> list[UserSummary]:
        """Up to ``limit`` users whose username contains ``q`` (case-insensitive) or whose id
        starts with it (an empty ``q``: the first ones), built-in accounts and users known
        only by a document alike, by username then id. Read with LIMIT in SQL: never more
        rows than asked for in memory."""

    async def search_teams(self, q: str, limit: int) -> list[TeamSummary]:
        """Up to ``limit`` teams whose name contains ``q`` (case-insensitive) or whose id
        starts with it, by name then id."""

    async def add_refresh_token(
        self,
        token_hash: str,
        user_id: str,
        family_id: str,
        expires_at: int,
        *,
        max_families: int | None = None,
    ) -> None:
        """Store the first token of a new family (a sign-in). With ``max_families``, the
        user's live families beyond that many are deleted, least recently refreshed first
        (the new one stays)."""

    async def refresh_token_owner(self, token_hash: str) -> str | None:
        """The user a refresh token was issued to (whatever its state), or None."""

    async def use_refresh_token(
        self, token_hash: str, new_hash: str, new_expires_at: int, now: int
    ) -> RefreshResult:
        """Rotate: mark the presented token used and store its successor in the same family.
        A token presented twice revokes its whole family (``reused``)."""

    async def revoke_refresh_tokens(self, user_id: str) -> int: ...

    async def revoke_sessions(self, user_id: str, at_ms: int) -> None:
        """Record that every token of ``user_id`` issued before ``at_ms`` is void (logout,
        password change, removal); servers poll :meth:`revocations_since` and close sockets."""

    async def revocations_since(self, after_id: int) -> list[tuple[int, str, int]]:
        """``(id, user_id, at_ms)`` rows with ``id > after_id``, oldest first."""

    async def revoke_token(self, jti: str, expires_at: int) -> None:
        """Record that the token with this ``jti`` is void until ``expires_at`` (Unix seconds,
        when it would expire anyway); rows past their expiry are pruned meanwhile. Servers
        poll :meth:`token_revocations_since`."""

    async def token_revocations_since(self, after_id: int) -> list[tuple[int, str, int]]:
        """``(id, jti, expires_at)`` rows with ``id > after_id``, oldest first."""

    # data keys
    async def get_wrapped_key(self, user_id: str) -> WrappedKey | None: ...

    async def wrapped_keys_not_under(
        self, master_key_id: str, limit: int
    ) -> list[tuple[str, WrappedKey]]:
        """Data keys still wrapped by another master key (rotation resumes from these)."""

    async def replace_wrapped_key(self, user_id: str, old: WrappedKey, new: WrappedKey) -> bool:
        """Compare-and-set the wrapped key of a user; False when it changed meanwhile."""

    async def count_wrapped_keys(self) -> dict[str, int]:
        """How many data keys each master key id wraps."""

    async def data_key_users_after(self, after: str, limit: int) -> list[str]:
        """Users with a data key, in user id order, after ``after`` (data-key rotation)."""

    async def renew_data_key(self, user_id: str) -> int | None:
        """Give the user a new data key and re-seal every secret under it, atomically and
        serialised with the user's writes (from any process). How many secrets were
        re-sealed; None when the user has no data key. ``CryptoError``: nothing changed."""

    async def scrub_key_tables(self, *, documents: bool) -> list[str]:
        """After a rotation: leave no old wrapped key (and with ``documents`` no old sealed
        secret) in the database's files — WAL and backups aside. Report lines; those that
        start ``warning:`` say what could not be done and how to fix it."""

    # export / import
    def export_users(self) -> AsyncIterator[ExportedUser]: ...

    async def import_user(self, user: ExportedUser) -> None: ...

    def export_teams(self) -> AsyncIterator[ExportedTeam]:
        """Every team with its members, in team id order."""

    async def import_team(self, team: ExportedTeam) -> None:
        """Write an exported team and its members as they were (no role rule or limit is
        applied); ``Conflict`` when a team with that id exists."""
