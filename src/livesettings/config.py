"""Configuration: ``LIVESETTINGS_*`` environment variables, an optional TOML file, CLI options.

Precedence, highest first: explicit overrides (CLI options), environment, TOML file, defaults.
Every field's environment name is ``LIVESETTINGS_`` + its upper-cased name.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints
from urllib.parse import urlsplit

from .document import Limits, PreferencesSchema
from .errors import ConfigError
from .urls import redact_url

if TYPE_CHECKING:
    from .auth import ServiceClaim

__all__ = [
    "ENV_PREFIX",
    "Config",
    "is_loopback_host",
    "load_preferences_schema",
    "ops_address",
    "origin_of",
    "parse_admin_claim",
    "proxy_networks",
]

ENV_PREFIX = "LIVESETTINGS_"


@dataclass(frozen=True)
class Config:
    """Everything a server, CLI command or test needs to know; see DESIGN §1."""

    data_dir: Path = Path("./livesettings_data")
    database_url: str | None = None
    admin_database_url: str | None = None
    bus_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1

    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwks_file: str | None = None
    jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: int = 0  # seconds of clock skew tolerated on exp and nbf
    jwks_refresh_interval: float = 60.0  # at most one refetch per interval (unknown kid)
    jwks_max_age: float = 3600.0  # refetched in the background after this long
    jwks_timeout: float = 5.0
    # Without audience and issuer, tokens a provider issued to other applications pass; so
    # serve refuses to start unless this opt-out is set (then it warns).
    idp_audience_issuer_optional: bool = False
    idp_service_claim: str | None = None  # "role:service": provider tokens with service access
    admin_claim: str | None = None  # "role:admin": provider tokens of admins (/admin)
    master_keys: str | None = None
    master_key: str | None = None

    access_token_ttl: int = 900
    # DELETE /v1/account without the password: the token must be at most this many seconds
    # old (a fresh sign-in); 0 always asks for the password.
    fresh_token_max_age: int = 300
    refresh_token_ttl: int = 30 * 24 * 3600
    allow_signup: bool | None = None
    # /auth/v1, /rest/v1/user_preferences and /realtime/v1/websocket (server/compat/).
    supabase_compat: bool = True
    argon2_time_cost: int = 2
    argon2_memory_cost: int = 19456
    argon2_workers: int = 2  # threads hashing passwords, off the event loop
    argon2_queue: int = 32  # hashes waiting for a thread; beyond it, 429 with Retry-After
    max_refresh_families: int = 20  # live sign-ins (refresh-token families) per user

    write_rate: float = 50.0
    write_burst: int = 200
    max_connections_per_user: int = 100
    max_teams_per_user: int = 100  # teams a user may belong to (DESIGN §11)
    max_team_members: int = 1000  # members one team may have
    connect_rate: float = 20.0
    connect_burst: int = 100
    signin_limit: int = 10
    signin_limit_per_address: int = 100
    signin_window: int = 15 * 60
    signup_limit_per_address: int = 20
    signup_window: int = 60 * 60
    signin_limit_per_username: int = 100  # failures per username from all addresses
    auth_rate: float = 0.1  # sign-ins and refreshes per second per user...
    auth_burst: int = 30
    auth_rate_per_address: float = 1.0  # ...and per address
    auth_burst_per_address: int = 120
    address_prefix_ipv4: int = 32  # per-address limits count a network of this prefix
    address_prefix_ipv6: int = 64
    trusted_proxies: tuple[str, ...] = ()
    public_url: str | None = None
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # names besides localhost and HOST a request may use
    ops_token: str | None = None  # bearer token for /metrics and the API docs; unset: open
    ops_address: str | None = None  # host:port serving them instead of the main address
    max_connections: int = 4096  # connections (sockets included) before HTTP answers 503
    keep_alive_timeout: int = 5  # seconds an idle keep-alive connection stays open
    header_timeout: float = 10.0  # seconds from a request's first byte to its last header
    body_timeout: float = 30.0  # seconds from a request's headers to the end of its body

    changelog_retain: int = 1000
    max_replay: int = 1000  # a catch-up longer than this gets a snapshot
    sqlite_synchronous: str = "FULL"
    preferences_schema: str | None = None
    max_document_bytes: int = 256 * 1024
    max_patch_bytes: int = 64 * 1024
    max_depth: int = 32
    max_key_length: int = 256
    max_tombstone_bytes: int = 64 * 1024
    max_patch_leaves: int = 1000
    max_frame_bytes: int = 1024 * 1024
    auth_timeout: float = 10.0
    ws_ping_interval: float = 20.0
    heartbeat_interval: float = 2.0  # seconds between two of a node's heartbeats on the bus
    ws_ping_timeout: float = 20.0
    max_batch: int = 256
    commit_delay_ms: int = 0  # test hook: hold each group commit open this long

    log_level: str = "INFO"
    access_log: bool = False
    audit_log: str | None = None  # a file audit lines are appended to, besides the log
    overridden: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def load(
        cls,
        *,
        env: Mapping[str, str] | None = None,
        config_file: str | os.PathLike[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Config:
        """Build a config from a TOML file, the environment and overrides, then check it."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        config_file = config_file or env.get(ENV_PREFIX + "CONFIG")
        if config_file:
            try:
                with open(config_file, "rb") as fh:
                    raw = tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
            section = raw.get("livesettings", raw)
            values.update({str(k).replace("-", "_"): v for k, v in section.items()})
        for name in _field_names():
            key = ENV_PREFIX + name.upper()
            if key in env and env[key] != "":
                values[name] = env[key]
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
        unknown = sorted(set(values) - set(_field_names()))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        converted = {name: _convert(name, value) for name, value in values.items()}
        converted["overridden"] = tuple(sorted(converted))
        return cls(**converted).checked()

    def checked(self) -> Config:
        if self.sqlite_synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigError("sqlite_synchronous must be one of OFF, NORMAL, FULL, EXTRA")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port {self.port} is out of range")
        if self.workers > 1 and self.resolved_bus_url == "memory://":
            raise ConfigError(
                "the in-process memory:// bus cannot serve more than one worker process; "
                "use PostgreSQL with the postgres bus, or redis://"
            )
        if self.public_url is not None:
            origin_of(self.public_url, "LIVESETTINGS_PUBLIC_URL")
        for origin in self.allowed_origins:
            if origin != "*":
                origin_of(origin, "LIVESETTINGS_ALLOWED_ORIGINS")
        proxy_networks(self.trusted_proxies)
        for name, bits in (("address_prefix_ipv4", 32), ("address_prefix_ipv6", 128)):
            if not 1 <= getattr(self, name) <= bits:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be from 1 to {bits}")
        if self.jwks_url is not None:
            _check_jwks_url(self.jwks_url)
        if self.idp_service_claim is not None:
            from .auth import parse_service_claim  # PyJWT and argon2 only when it is set

            parse_service_claim(self.idp_service_claim)
        if self.admin_claim is not None:
            parse_admin_claim(self.admin_claim)
        for name in _AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be at least 1")
        for name in _NOT_NEGATIVE:
            if getattr(self, name) < 0:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must not be negative")
        for name in ("jwks_timeout", "header_timeout", "body_timeout", "heartbeat_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be positive")
        _check_perimeter(self)
        return self

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'livesettings.db').as_posix()}"

    @property
    def is_postgres(self) -> bool:
        return self.resolved_database_url.startswith(("postgres://", "postgresql://"))

    @property
    def resolved_bus_url(self) -> str:
        if self.bus_url:
            return self.bus_url
        return "postgres" if self.is_postgres else "memory://"

    @property
    def external_auth(self) -> bool:
        """True when an identity provider's keys are configured (public key or JWKS)."""
        return bool(self.jwt_public_key or self.jwks_file or self.jwks_url)

    @property
    def unchecked_token_claims(self) -> tuple[str, ...]:
        """With an identity provider: the settings of ``aud``/``iss`` that are not set (an
        unchecked claim lets in tokens the provider issued to other applications)."""
        if not self.external_auth:
            return ()
        return tuple(
            f"{ENV_PREFIX}{name.upper()}"
            for name in ("jwt_audience", "jwt_issuer")
            if not getattr(self, name)
        )

    @property
    def resolved_audit_log(self) -> Path | None:
        """The file audit lines are appended to: the setting, else ``<data dir>/audit.log``
        with SQLite; ``None`` with PostgreSQL or when set to ``-``."""
        if self.audit_log == "-":
            return None
        if self.audit_log:
            return Path(self.audit_log)
        return None if self.is_postgres else self.data_dir / "audit.log"

    @property
    def signup_allowed(self) -> bool:
        return (not self.is_postgres) if self.allow_signup is None else self.allow_signup

    @property
    def limits(self) -> Limits:
        # Every limit this configuration names; the others keep Limits' defaults.
        return Limits(**{name: getattr(self, name) for name in _LIMIT_FIELDS})

    def redacted(self) -> dict[str, Any]:
        """The settings as they may be printed or logged: secrets replaced by ``***``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value:
                value = "***"
            elif f.name.endswith("database_url") and value:
                value = redact_url(str(value))
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


_SECRET_FIELDS = {"jwt_secret", "master_keys", "master_key", "ops_token"}
# The fields of Limits that Config names too, found once: config.limits is read per write.
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(Config)}
_LIMIT_FIELDS = tuple(f.name for f in dataclasses.fields(Limits) if f.name in _CONFIG_FIELDS)
# Limits that make no sense below one, and rates where 0 switches the limit off.
_AT_LEAST_ONE = (
    "write_burst",
    "connect_burst",
    "max_connections_per_user",
    "max_teams_per_user",
    "max_team_members",
    "signin_limit",
    "signin_limit_per_address",
    "signin_window",
    "signup_limit_per_address",
    "signup_window",
    "signin_limit_per_username",
    "auth_burst",
    "auth_burst_per_address",
    "max_refresh_families",
    "argon2_workers",
    "max_replay",
    "max_frame_bytes",
    "max_connections",
    "keep_alive_timeout",
)
_NOT_NEGATIVE = (
    "fresh_token_max_age",
    "write_rate",
    "connect_rate",
    "auth_rate",
    "auth_rate_per_address",
    "argon2_queue",
    "jwt_leeway",
    "jwks_refresh_interval",
    "jwks_max_age",
)


def origin_of(url: str, setting: str = "origin") -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an origin or URL, the default port filled in.

    ``ConfigError`` naming ``setting`` when ``url`` has no scheme or host.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{setting}: {url!r} is not a URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        raise ConfigError(f"{setting}: {url!r} is not an origin like https://example.com")
    if port is None:
        port = _DEFAULT_PORTS.get(scheme, 0)
    return scheme, parts.hostname.lower(), port


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def proxy_networks(entries: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...] | None:
    """The trusted proxies as networks (an address is a /32 or /128); ``None`` for ``*``."""
    if "*" in entries:
        return None
    networks: list[IPv4Network | IPv6Network] = []
    for entry in entries:
        try:
            networks.append(ip_network(entry, strict=False))
        except ValueError as exc:
            raise ConfigError(
                f"LIVESETTINGS_TRUSTED_PROXIES: {entry!r} is not an IP address or network"
            ) from exc
    return tuple(networks)


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ``::1`` (a URL's host, brackets already stripped)."""
    host = host.lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _check_jwks_url(url: str) -> None:
    # Over plain http anyone on the path could swap the keys and sign any token.
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:
        raise ConfigError(f"LIVESETTINGS_JWKS_URL: {url!r} is not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError("LIVESETTINGS_JWKS_URL must be an https:// URL")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ConfigError(
            f"LIVESETTINGS_JWKS_URL {url} is plain http: anyone on the path could swap the "
            "signing keys; use https:// (http is accepted only for a loopback host)"
        )


def _check_perimeter(config: Config) -> None:
    for entry in config.allowed_hosts:
        if entry != "*" and ("/" in entry or not entry.strip("[].")):
            raise ConfigError(
                f"LIVESETTINGS_ALLOWED_HOSTS: {entry!r} is not a host name like example.com"
            )
    if config.ops_token is not None and len(config.ops_token) < 16:
        raise ConfigError("LIVESETTINGS_OPS_TOKEN must be at least 16 characters")
    if config.ops_address is not None:
        ops_address(config.ops_address)


def ops_address(value: str) -> tuple[str, int]:
    """``LIVESETTINGS_OPS_ADDRESS`` (``host:port``, ``[v6]:port``) as (host, port)."""
    try:
        parts = urlsplit("//" + value.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or port is None or parts.path:
        raise ConfigError(f"LIVESETTINGS_OPS_ADDRESS: {value!r} is not host:port")
    return host, port


def _field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Config) if f.name != "overridden"]


@functools.cache
def _type_hints() -> dict[str, Any]:
    return get_type_hints(Config)


def _convert(name: str, value: Any) -> Any:
    hint = _type_hints()[name]
    text = str(value).strip() if not isinstance(value, list | tuple) else value
    try:
        if hint in (int, "int"):
            return int(value)
        if hint is float:
            return float(value)
        if hint is bool or hint == (bool | None):
            if isinstance(value, bool):
                return value
            lowered = str(text).lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        if hint == tuple[str, ...]:
            items = value if isinstance(value, list | tuple) else str(value).split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
        if hint is Path:
            return Path(str(value))
        if name == "sqlite_synchronous":
            return str(value).upper()
        return str(value)
    except ValueError as exc:
        shown = "***" if name in _SECRET_FIELDS else repr(value)
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: invalid value {shown}: {exc}") from exc


def parse_admin_claim(text: str) -> ServiceClaim:
    """``LIVESETTINGS_ADMIN_CLAIM`` (``CLAIM:VALUE``, the form of ``IDP_SERVICE_CLAIM``):
    identity-provider tokens carrying it are admins of the ``/admin`` dashboard.

    >>> parse_admin_claim("app_metadata.role:admin")
    (('app_metadata', 'role'), 'admin')
    """
    from .auth import parse_service_claim  # PyJWT and argon2 only when it is set

    try:
        return parse_service_claim(text)
    except ConfigError:
        raise ConfigError(
            "LIVESETTINGS_ADMIN_CLAIM must be CLAIM:VALUE, such as role:admin or "
            f"app_metadata.role:admin; got {text!r}"
        ) from None


def load_preferences_schema(path: str | os.PathLike[str]) -> PreferencesSchema:
    """The operator's preferences schema read from a JSON file; a missing, unreadable or
    invalid file is a :class:`ConfigError`."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the preferences schema {path}: {exc}") from exc
    return PreferencesSchema.from_json(text, f"the preferences schema {path}")
