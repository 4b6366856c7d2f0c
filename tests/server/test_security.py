"""``server/security.py`` and the settings behind it: the Origin rule, client addresses
behind trusted proxies, and what the configuration refuses."""

from __future__ import annotations

import pytest

from livesettings.config import Config
from livesettings.errors import ConfigError
from livesettings.server.ratelimit import WindowCounter
from livesettings.server.security import forwarded_address, origin_allowed


def _config(**settings: object) -> Config:
    return Config.load(env={}, overrides=settings)


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "127.0.0.1:8000", True),  # no Origin: not a browser
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://127.0.0.1:8000", "127.0.0.1:8001", False),
        ("http://localhost:8000", "127.0.0.1:8000", True),  # a local name, the server's port
        ("http://localhost:8001", "127.0.0.1:8000", False),
        # A name the server does not know (see tests/security/test_perimeter.py): DNS rebinding.
        ("http://example.com", "example.com", False),
        ("https://example.com:443", "example.com", False),
        ("http://192.0.2.7:8000", "192.0.2.7:8000", True),  # an address cannot be rebound
        ("null", "127.0.0.1:8000", False),
        ("garbage", "127.0.0.1:8000", False),
        ("http://[::1]:8000", "[::1]:8000", True),
        ("http://127.0.0.1:8000", None, False),
    ],
)
def test_same_origin_without_a_public_url(
    origin: str | None, host: str | None, allowed: bool
) -> None:
    assert origin_allowed(origin, host, _config()) is allowed


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://settings.example.com", True),
        ("https://SETTINGS.example.com:443", True),
        ("http://settings.example.com", False),  # scheme counts
        ("https://settings.example.com:8443", False),
        ("http://10.0.0.5:8000", False),  # the Host the node sees is not the page's origin
        ("https://app.example.com", True),  # LIVESETTINGS_ALLOWED_ORIGINS
        ("https://app.example.com.evil.net", False),
    ],
)
def test_behind_a_proxy_the_public_url_is_the_own_origin(origin: str, allowed: bool) -> None:
    config = _config(
        public_url="https://settings.example.com/", allowed_origins="https://app.example.com"
    )
    assert origin_allowed(origin, "10.0.0.5:8000", config) is allowed


def test_a_star_allows_every_origin() -> None:
    assert origin_allowed("https://anything.example", "x", _config(allowed_origins="*"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "address"),
    [
        ("203.0.113.9", "1.2.3.4", "", "203.0.113.9"),  # nobody trusted: the header is ignored
        ("203.0.113.9", "1.2.3.4", "127.0.0.1", "203.0.113.9"),  # not from the proxy
        ("127.0.0.1", "1.2.3.4", "127.0.0.1", "1.2.3.4"),
        ("127.0.0.1", "6.6.6.6, 1.2.3.4", "127.0.0.1", "1.2.3.4"),  # left of it: the client's
        ("10.1.0.7", "1.2.3.4, 10.2.0.1", "10.0.0.0/8", "1.2.3.4"),  # a chain of proxies
        ("10.1.0.7", "10.3.0.1, 10.2.0.1", "10.0.0.0/8", "10.3.0.1"),  # all proxies: leftmost
        ("::1", "2001:db8::1", "::1", "2001:db8::1"),
        ("127.0.0.1", "[2001:db8::2]:443", "127.0.0.1", "2001:db8::2"),
        ("127.0.0.1", "1.2.3.4:5555", "127.0.0.1", "1.2.3.4"),
        ("127.0.0.1", "unknown", "127.0.0.1", "unknown"),
        ("192.0.2.1", "1.2.3.4", "*", "1.2.3.4"),
        (None, None, "", "unknown"),
    ],
)
def test_the_client_address_counts_forwarded_hops_of_trusted_proxies_only(
    peer: str | None, forwarded: str | None, trusted: str, address: str
) -> None:
    assert forwarded_address(peer, forwarded, _config(trusted_proxies=trusted)) == address


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"public_url": "settings.example.com"}, "LIVESETTINGS_PUBLIC_URL"),
        ({"allowed_origins": "example.com"}, "LIVESETTINGS_ALLOWED_ORIGINS"),
        ({"trusted_proxies": "proxy.internal"}, "LIVESETTINGS_TRUSTED_PROXIES"),
        ({"jwks_url": "file:///etc/jwks.json"}, "LIVESETTINGS_JWKS_URL"),
        ({"write_burst": 0}, "LIVESETTINGS_WRITE_BURST must be at least 1"),
        ({"max_replay": 0}, "LIVESETTINGS_MAX_REPLAY must be at least 1"),
        ({"write_rate": -1}, "LIVESETTINGS_WRITE_RATE must not be negative"),
        ({"jwt_leeway": -5}, "LIVESETTINGS_JWT_LEEWAY must not be negative"),
        ({"jwks_timeout": 0}, "LIVESETTINGS_JWKS_TIMEOUT must be positive"),
    ],
)
def test_unusable_security_settings_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(**settings)


def test_security_defaults() -> None:
    config = _config()
    assert (config.write_rate, config.write_burst) == (50.0, 200)
    assert (config.connect_rate, config.connect_burst) == (20.0, 100)
    assert config.max_connections_per_user == 100
    assert (config.signin_limit, config.signin_limit_per_address, config.signin_window) == (
        10,
        100,
        900,
    )
    assert (config.signup_limit_per_address, config.signup_window) == (20, 3600)
    assert (config.max_replay, config.max_frame_bytes, config.max_patch_bytes) == (
        1000,
        1024 * 1024,
        64 * 1024,
    )
    assert (config.jwks_refresh_interval, config.jwks_max_age, config.jwks_timeout) == (
        60.0,
        3600.0,
        5.0,
    )
    assert config.jwt_leeway == 0 and config.trusted_proxies == ()
    assert config.resolved_audit_log == config.data_dir / "audit.log"
    assert _config(audit_log="-").resolved_audit_log is None
    assert _config(database_url="postgresql://app@db/x").resolved_audit_log is None


def test_window_counters_forget_the_oldest_keys_beyond_their_bound() -> None:
    now = [0.0]
    counter = WindowCounter(2, 60, max_keys=3, clock=lambda: now[0])
    for name in ("a", "b", "c", "d"):
        counter.add(name)
        counter.add(name)
    assert counter.blocked_for("a") == 0.0  # forgotten
    assert counter.blocked_for("d") == 60.0
    now[0] = 30.0
    assert counter.blocked_for("d") == 30.0
    now[0] = 60.0
    assert counter.blocked_for("d") == 0.0
