"""Per-address limits count networks: IPv6 by /64, IPv4 by a configurable prefix."""

from __future__ import annotations

import pytest

from livesettings.config import Config
from livesettings.errors import ConfigError
from livesettings.server.security import address_key

DEFAULT = Config()


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("2001:db8:1:2::a", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # same /64
        ("2001:db8:1:3::a", "2001:db8:1:3::/64"),  # the next /64
        ("2001:DB8:1:2:0:0:0:A", "2001:db8:1:2::/64"),  # spelling does not matter
        ("203.0.113.7", "203.0.113.7"),  # IPv4: the address itself by default
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4-mapped: counted as IPv4
        ("unknown", "unknown"),
        ("not an address", "not an address"),
    ],
)
def test_default_grouping(address: str, key: str) -> None:
    assert address_key(address, DEFAULT) == key


def test_prefixes_are_settings() -> None:
    config = Config.load(
        env={"LIVESETTINGS_ADDRESS_PREFIX_IPV4": "24", "LIVESETTINGS_ADDRESS_PREFIX_IPV6": "48"}
    )
    assert address_key("203.0.113.7", config) == "203.0.113.0/24"
    assert address_key("203.0.113.200", config) == address_key("203.0.113.7", config)
    assert address_key("203.0.114.7", config) == "203.0.114.0/24"
    assert address_key("2001:db8:1:2::a", config) == "2001:db8:1::/48"
    assert address_key("2001:db8:1:ffff::a", config) == "2001:db8:1::/48"
    exact = DEFAULT.replace(address_prefix_ipv6=128)
    assert address_key("2001:db8::1", exact) == "2001:db8::1"
    assert address_key("2001:db8::2", exact) == "2001:db8::2"


@pytest.mark.parametrize(
    ("name", "value"),
    [("ADDRESS_PREFIX_IPV4", "33"), ("ADDRESS_PREFIX_IPV4", "0"), ("ADDRESS_PREFIX_IPV6", "129")],
)
def test_prefixes_out_of_range_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"LIVESETTINGS_{name} must be from 1 to"):
        Config.load(env={f"LIVESETTINGS_{name}": value})
