"""Everything a running server holds: config, store, bus, writer, hub, auth, limits, sockets.

``Services.start()`` brings them up in order and ``stop()`` takes them down in reverse, so the
ASGI lifespan, the CLI and tests share one sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from .. import config_loaders as loaders
from ..audit import AuditRing, audit, close_audit_file, open_audit_file
from ..auth import Claims, PasswordHasher, TokenIssuer
from ..bus import Bus, BusEvent, open_bus
from ..clock import SYSTEM_CLOCK, Clock
from ..config import Config, load_preferences_schema
from ..document import mask_document
from ..errors import ConfigError, LiveSettingsError, TokenExpired, Unauthorized
from ..jwks import JwksCache
from ..store import Store, open_store
from ..teams import is_team_key
from .admins import Admins
from .hub import Hub
from .memberships import Memberships
from .metrics import Gauge, Metrics
from .nodes import Heartbeats
from .passwords import PasswordPool
from .ratelimit import RateLimiter, WindowCounter
from .security import address_key
from .sql_writes import SqlWriteDrain, SqlWriteQueue
from .stats import StatsSampler
from .writer import Writer

__all__ = ["Connections", "Services"]

log = logging.getLogger("livesettings.server")

_VERIFIED_CACHE = 10_000
_SEEN_USERS = 100_000  # users whose last connection time a node remembers

CloseFn = Callable[[int, str], Awaitable[None]]


OnMembership = Callable[[str, str | None], None]
"""Told ``(doc, role)`` when the connection's user's role in a team changed (None: removed)."""


@dataclass(eq=False)
class _Conn:
    user_id: str
    close: CloseFn
    jti: str | None = None  # of the token the socket is authorised by now (a re-auth moves it)
    on_membership: OnMembership | None = None
    team_docs: Callable[[], Iterable[str]] | None = None  # the team documents it follows
    kind: str = "ws"  # "ws" (a WebSocket) or "sse" (an event stream), for /v1/admin/stats


@dataclass
class Connections:
    """Live sockets and event streams per user, so revocations and shutdown can end them."""

    by_user: dict[str, set[_Conn]] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=lambda: {"ws": 0, "sse": 0})
    # When each user last opened or closed one here (Unix seconds), for /v1/admin/users;
    # the most recent _SEEN_USERS users only.
    seen: OrderedDict[str, float] = field(default_factory=OrderedDict)
    clock: Clock = SYSTEM_CLOCK

    def add(
        self,
        user_id: str,
        close: CloseFn,
        *,
        jti: str | None = None,
        on_membership: OnMembership | None = None,
        team_docs: Callable[[], Iterable[str]] | None = None,
        kind: str = "ws",
    ) -> _Conn:
        conn = _Conn(user_id, close, jti, on_membership, team_docs, kind)
        self.by_user.setdefault(user_id, set()).add(conn)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self._saw(user_id)
        return conn

    def remove(self, conn: _Conn) -> None:
        conns = self.by_user.get(conn.user_id)
        if conns is not None and conn in conns:
            conns.discard(conn)
            self.kinds[conn.kind] -= 1
            self._saw(conn.user_id)
            if not conns:
                del self.by_user[conn.user_id]

    def _saw(self, user_id: str) -> None:
        self.seen[user_id] = self.clock.time()
        self.seen.move_to_end(user_id)
        if len(self.seen) > _SEEN_USERS:
            self.seen.popitem(last=False)

    def last_seen(self, user_id: str) -> float | None:
        """When ``user_id`` was last connected here: now while connected, else when its
        last connection here opened or closed (None: not since this node started)."""
        if self.by_user.get(user_id):
            return self.clock.time()
        return self.seen.get(user_id)

    def count(self, user_id: str | None = None) -> int:
        if user_id is not None:
            return len(self.by_user.get(user_id, ()))
        return sum(len(c) for c in self.by_user.values())

    def membership(self, user_id: str, doc: str, role: str | None) -> None:
        """Tell each connection of ``user_id`` that its role in ``doc``'s team is ``role``."""
        for conn in list(self.by_user.get(user_id, ())):
            if conn.on_membership is not None:
                try:
                    conn.on_membership(doc, role)
                except Exception:
                    log.exception("a connection failed to take a membership change")

    def followed_teams(self) -> set[tuple[str, str]]:
        """``(user_id, doc)`` of every team document a connection here follows."""
        return {
            (conn.user_id, doc)
            for conns in self.by_user.values()
            for conn in conns
            if conn.team_docs is not None
            for doc in conn.team_docs()
        }

    async def close_user(self, user_id: str, code: int, reason: str) -> None:
        for conn in list(self.by_user.get(user_id, ())):
            with contextlib.suppress(Exception):
                await conn.close(code, reason)

    async def close_token(self, jti: str, code: int, reason: str) -> None:
        """Close the sockets and streams authorised by the token ``jti``."""
        for conn in [c for cs in self.by_user.values() for c in cs if c.jti == jti]:
            with contextlib.suppress(Exception):
                await conn.close(code, reason)

    async def close_all(self, code: int, reason: str) -> None:
        conns = [c for cs in self.by_user.values() for c in cs]
        await asyncio.gather(*(c.close(code, reason) for c in conns), return_exceptions=True)


class Services:
    """The running parts of one server node. Every part that reads the time reads ``clock``
    (tests pass one they can move, so nothing waits on wall time for an expiry)."""

    def __init__(self, config: Config, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.clock = clock
        self.metrics = Metrics()
        self.connections = Connections(clock=clock)
        self.metrics.connections = Gauge(
            "livesettings_connections",
            "Open WebSocket and SSE connections.",
            read=lambda: float(self.connections.count()),
        )
        self.schema = (
            load_preferences_schema(config.preferences_schema)
            if config.preferences_schema
            else None
        )
        self.keyring = loaders.load_keyring(config)
        secret, public = loaders.load_signing(config)
        self.issuer = (
            TokenIssuer(
                secret,
                ttl_seconds=config.access_token_ttl,
                issuer=config.jwt_issuer,
                audience=config.jwt_audience,
                clock=clock,
            )
            if secret
            else None
        )
        loaders.check_token_claims(config)
        self.key_sets = loaders.load_key_sets(config, clock=clock)
        self.verifier = loaders.token_verifier(config, secret, public, self.key_sets, clock=clock)
        self.hasher = PasswordHasher(
            time_cost=config.argon2_time_cost, memory_cost=config.argon2_memory_cost
        )
        self.passwords = PasswordPool(
            self.hasher, workers=config.argon2_workers, queue=config.argon2_queue
        )
        self.metrics.extra.append(
            Gauge(
                "livesettings_password_hashes_in_flight",
                "Password hashes and verifies running or waiting for a thread.",
                read=lambda: float(self.passwords.in_flight),
            )
        )
        self.bus: Bus = open_bus(config.resolved_bus_url, database_url=config.resolved_database_url)
        backend: dict[str, Any] = {}
        if config.is_postgres:
            # The store notifies inside its transaction; a bus that publishes elsewhere (Redis)
            # spares PostgreSQL that NOTIFY and its database-wide lock.
            backend["notify"] = bool(getattr(self.bus, "store_notifies", False))
        else:
            backend["synchronous"] = config.sqlite_synchronous
        self.store: Store = open_store(
            config.resolved_database_url,
            keyring=self.keyring,
            limits=config.limits,
            schema=self.schema,
            changelog_retain=config.changelog_retain,
            commit_delay_ms=config.commit_delay_ms,
            now_ms=clock.time_ms,
            **backend,
        )
        pool_stats = getattr(self.store, "pool_stats", None)
        if callable(pool_stats):
            for key, help_text in (
                ("size", "Connections the database pool may hold."),
                ("in_use", "Database connections in use."),
                ("waits", "Times a request waited for a database connection."),
            ):
                self.metrics.extra.append(
                    Gauge(
                        f"livesettings_db_pool_{key}",
                        help_text,
                        read=lambda key=key: float(pool_stats().get(key, 0)),  # type: ignore[misc]
                    )
                )
        self.metrics.extra.append(
            Gauge(
                "livesettings_bus_reconnects",
                "Times this node's bus reconnected (then caught subscribers up from the log).",
                read=lambda: float(getattr(self.bus, "reconnects", 0)),
            )
        )
        self.hub = Hub(
            self.store, self.metrics, replay_limit=config.max_replay, view=self.view, clock=clock
        )
        self.memberships = Memberships(self.store, self.connections)
        self.admins = Admins(self.store, config.admin_claim, monotonic=clock.monotonic)
        self.audit_ring = AuditRing(100)  # GET /v1/admin/audit: this node's last lines
        self.writer = Writer(
            self.store,
            self.bus,
            self.metrics,
            max_batch=config.max_batch,
            on_committed=self.hub.note_committed,
        )
        # /v1/admin/stats: this node's numbers each second, and the nodes heard on the bus.
        self.stats = StatsSampler(self.metrics, lambda: dict(self.connections.kinds), clock=clock)
        self.heartbeats = Heartbeats(
            self.bus,
            version=__version__,
            connections=self.connections.count,
            clock=clock,
            interval=config.heartbeat_interval,
        )
        bucket = functools.partial(RateLimiter, clock=clock.monotonic)
        window = functools.partial(WindowCounter, clock=clock.monotonic)
        self.write_limiter = bucket(config.write_rate, config.write_burst)
        self.connect_limiter = bucket(config.connect_rate, config.connect_burst)
        # Failed sign-ins: per username from one address (the hard limit, so a stranger's
        # guesses do not lock the user out elsewhere), per username from anywhere (a much
        # higher ceiling against guessing from many addresses), and per address.
        self.signin_by_user = window(config.signin_limit, config.signin_window)
        self.signin_by_username = window(config.signin_limit_per_username, config.signin_window)
        self.signin_by_address = window(config.signin_limit_per_address, config.signin_window)
        # Every sign-in and refresh, successful or not: each issues tokens and stores a row.
        self.auth_by_user = bucket(config.auth_rate, config.auth_burst)
        self.auth_by_address = bucket(config.auth_rate_per_address, config.auth_burst_per_address)
        self.signup_by_address = window(config.signup_limit_per_address, config.signup_window)
        self.revoked_before: dict[str, int] = {}
        self.revoked_tokens: dict[str, int] = {}  # jti -> when the token expires anyway
        self._verified: OrderedDict[str, Claims] = OrderedDict()
        self._verified_keys = self.verifier.keys_version
        self._revocation_cursor = 0
        self._token_revocation_cursor = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.sql_writes: SqlWriteDrain | None = None  # PostgreSQL only: writes made in SQL
        self.draining = False
        self.started = False
        self._audit_file: logging.Handler | None = None

    async def start(self) -> None:
        path = self.config.resolved_audit_log
        try:
            self._audit_file = open_audit_file(path)
            self.audit_ring.open()
        except OSError as exc:
            raise ConfigError(f"cannot open the audit log {path}: {exc.strerror}") from exc
        if not self.config.is_postgres:
            # The embedded default sets itself up (idempotent; refuses a schema from a newer
            # version); PostgreSQL needs `livesettings setup` run by the owner.
            for line in await self.store.setup():
                log.info("setup: %s", line)
        await self.store.open()
        for row_id, user_id, at_ms in await self.store.revocations_since(0):
            self._note_revocation(row_id, user_id, at_ms)
        for row_id, jti, expires_at in await self.store.token_revocations_since(0):
            self._note_token_revocation(row_id, jti, expires_at)
        await self.bus.start(self._on_bus_events, self._on_bus_resync)
        self.writer.start()
        self.stats.start()
        self.heartbeats.start()
        if isinstance(self.store, SqlWriteQueue):
            self.sql_writes = SqlWriteDrain(self, self.store)
            self.sql_writes.start()
        self._tasks.append(asyncio.create_task(self._poll_revocations()))
        for key_set in self.key_sets:
            if key_set.url is not None:
                await self._refresh_key_set(key_set)
            if key_set.max_age > 0:
                self._tasks.append(asyncio.create_task(self._keep_fresh(key_set)))
        self.started = True

    def _on_bus_events(self, events: Sequence[BusEvent]) -> None:
        """Document events go to the hub; membership events to the user's connections."""
        self.hub.on_events(self.memberships.documents(events))

    def _on_bus_resync(self) -> None:
        """Events may have been missed: catch subscribers up, and read memberships again."""
        self.hub.on_resync()
        self.memberships.resync()

    async def drain(self) -> None:
        """Stop taking work: close sockets with 1001 so clients reconnect elsewhere."""
        if self.draining:
            return
        self.draining = True
        await self.connections.close_all(1001, "server shutting down")

    async def stop(self) -> None:
        await self.drain()
        await self.heartbeats.stop()  # its last beat says so, while the bus is up
        await self.stats.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.sql_writes is not None:
            await self.sql_writes.stop()
            self.sql_writes = None
        await self.writer.stop()
        await self.hub.close()
        await self.memberships.close()
        await self.bus.close()
        await self.store.close()
        self.passwords.close()
        close_audit_file(self._audit_file)
        self.audit_ring.close()
        self._audit_file = None
        self.started = False

    def address_key(self, address: str) -> str:
        """What per-address limits count ``address`` under: its /64 (IPv6) or the configured
        IPv4 prefix."""
        return address_key(address, self.config)

    def view(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Stored settings as a user may see them: secrets masked, schema defaults filled."""
        shown = mask_document(settings)
        if self.schema is not None and isinstance(shown.get("preferences"), dict):
            shown["preferences"] = self.schema.fill_defaults(shown["preferences"])
        return shown

    # -- tokens ---------------------------------------------------------------------------
    def verify_token(self, token: str) -> Claims:
        """The claims of a valid, unrevoked token, with the keys loaded now (no I/O)."""
        return self._unrevoked(self.verifier.verify(token))

    async def authenticate(
        self, token: str, *, address: str | Callable[[], str], via: str
    ) -> Claims:
        """The claims of a valid, unrevoked token; a refusal is audited (never the token).

        ``address`` is the caller's, or a function giving it: only a refusal needs it.

        An unknown key id may refetch an identity provider's JWKS (not more than once per
        ``jwks_refresh_interval``); ``via`` says where the token came from (http, websocket).
        """
        try:
            if self._verified_keys != self.verifier.keys_version:
                # A JWKS refresh changed the keys: a key may have been retired, so every
                # cached verification is redone (a token of a retired key is then refused).
                self._verified.clear()
                self._verified_keys = self.verifier.keys_version
            claims = self._verified.get(token)
            if claims is None or claims.exp <= self.clock.time():
                claims = await self.verifier.verify_async(token)
                # Verifying a signature costs more than the rest of a small write; a token
                # verified once stays valid until its exp (revocations are checked each time).
                self._verified[token] = claims
                if len(self._verified) > _VERIFIED_CACHE:
                    self._verified.popitem(last=False)
            return self._unrevoked(claims)
        except Unauthorized as exc:
            if not isinstance(address, str):
                address = address()
            audit("token_rejected", code=exc.code, reason=exc.message, via=via, address=address)
            if exc.code == "jwks_unavailable":
                reasons = "; ".join(k.last_error for k in self.key_sets if k.last_error)
                log.warning("cannot verify a token: %s", reasons or exc.message)
            raise

    def _unrevoked(self, claims: Claims) -> Claims:
        if is_team_key(claims.sub):
            # Team documents are keyed `team:<id>`: no token may act as one.
            raise Unauthorized("a token's subject may not start with 'team:'", code="invalid_token")
        revoked = self.revoked_before.get(claims.sub)
        if revoked is not None and (claims.iat or 0) * 1000 < revoked:
            raise Unauthorized("this session was ended; sign in again", code="session_revoked")
        if claims.jti is not None and claims.jti in self.revoked_tokens:
            raise Unauthorized("this token was revoked", code="token_revoked")
        return claims

    async def _refresh_key_set(self, key_set: JwksCache) -> None:
        try:
            await key_set.refresh()
        except ConfigError as exc:
            # Not fatal: tokens that need these keys are refused until a fetch succeeds.
            log.warning("%s; tokens signed by its keys are refused until it loads", exc.message)
            return
        log.info("%s: %d signing key(s) loaded", key_set.source, len(key_set.keys))
        for why in key_set.skipped:
            log.info("%s: skipped %s", key_set.source, why)

    async def _keep_fresh(self, key_set: JwksCache) -> None:
        """Refetch a JWKS every ``max_age``, so keys the provider retired stop working."""
        while True:
            await asyncio.sleep(key_set.max_age)
            await self._refresh_key_set(key_set)

    def check_expiry(self, claims: Claims) -> None:
        if claims.exp <= self.clock.time():
            raise TokenExpired("token expired")

    async def revoke_user(self, user_id: str) -> None:
        """End every session of a user: refresh tokens, access tokens issued so far, sockets."""
        now_ms = self.clock.time_ms()
        await self.store.revoke_refresh_tokens(user_id)
        await self.store.revoke_sessions(user_id, now_ms)
        self.revoked_before[user_id] = max(self.revoked_before.get(user_id, 0), now_ms)
        await self.connections.close_user(user_id, 4001, "session ended")

    def _note_token_revocation(self, row_id: int, jti: str, expires_at: int) -> None:
        self._token_revocation_cursor = max(self._token_revocation_cursor, row_id)
        self.revoked_tokens[jti] = max(self.revoked_tokens.get(jti, 0), expires_at)

    def _forget_expired_token_revocations(self) -> None:
        # An expired token is refused anyway; leeway seconds later its revocation can go.
        cutoff = self.clock.time() - self.config.jwt_leeway - 60
        for jti in [j for j, exp in self.revoked_tokens.items() if exp < cutoff]:
            del self.revoked_tokens[jti]

    def _note_revocation(self, row_id: int, user_id: str, at_ms: int) -> None:
        self._revocation_cursor = max(self._revocation_cursor, row_id)
        self.revoked_before[user_id] = max(self.revoked_before.get(user_id, 0), at_ms)

    async def _poll_revocations(self) -> None:
        """Revocations made by another process (the CLI, another node) end local sockets."""
        while True:
            await asyncio.sleep(1.0)
            try:
                rows = await self.store.revocations_since(self._revocation_cursor)
                tokens = await self.store.token_revocations_since(self._token_revocation_cursor)
            except LiveSettingsError:
                continue
            for row_id, user_id, at_ms in rows:
                known = self.revoked_before.get(user_id, 0)
                self._note_revocation(row_id, user_id, at_ms)
                if at_ms > known:
                    await self.connections.close_user(user_id, 4001, "session ended")
            for row_id, jti, expires_at in tokens:
                self._note_token_revocation(row_id, jti, expires_at)
                await self.connections.close_token(jti, 4001, "token revoked")
            if tokens:
                self._forget_expired_token_revocations()
