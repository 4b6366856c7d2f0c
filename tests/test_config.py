"""``Config.load``: overrides beat the environment, which beats the TOML file, which beats the
defaults; values are converted by each field's type, bad ones are refused naming the variable
(never echoing a secret), and ``redacted()`` hides secrets and database passwords."""

from __future__ import annotations

from pathlib import Path

import pytest

from livesettings.config import Config
from livesettings.errors import ConfigError


def write_toml(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_overrides_beat_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    toml = write_toml(
        tmp_path / "settings.toml",
        '[livesettings]\nport = 7001\nhost = "127.0.0.2"\nwrite-rate = 5.5\nworkers = 1\n',
    )
    env = {"LIVESETTINGS_PORT": "7002", "LIVESETTINGS_HOST": "127.0.0.3"}
    config = Config.load(env=env, config_file=toml, overrides={"port": 7003, "host": None})
    assert config.port == 7003  # override
    assert config.host == "127.0.0.3"  # environment (a None override does not count)
    assert config.write_rate == 5.5  # file, dashes read as underscores
    assert config.changelog_retain == Config().changelog_retain  # default
    assert set(config.overridden) == {"port", "host", "write_rate", "workers"}


def test_the_file_can_come_from_the_environment_and_need_not_have_a_section(
    tmp_path: Path,
) -> None:
    toml = write_toml(tmp_path / "flat.toml", "port = 7100\n")
    config = Config.load(env={"LIVESETTINGS_CONFIG": toml})
    assert config.port == 7100


def test_an_empty_variable_counts_as_unset() -> None:
    assert Config.load(env={"LIVESETTINGS_PORT": ""}).port == Config().port


def test_values_are_converted_by_field_type() -> None:
    config = Config.load(
        env={
            "LIVESETTINGS_ALLOW_SIGNUP": "no",
            "LIVESETTINGS_ALLOWED_ORIGINS": " https://a.example , ,https://b.example",
            "LIVESETTINGS_DATA_DIR": "some/where",
            "LIVESETTINGS_SQLITE_SYNCHRONOUS": "normal",
            "LIVESETTINGS_JWKS_TIMEOUT": "2.5",
        }
    )
    assert config.allow_signup is False
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    assert config.data_dir == Path("some/where")
    assert config.sqlite_synchronous == "NORMAL"
    assert config.jwks_timeout == 2.5


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("LIVESETTINGS_PORT", "eighty", "LIVESETTINGS_PORT: invalid value 'eighty'"),
        ("LIVESETTINGS_ALLOW_SIGNUP", "maybe", "expected true or false"),
        ("LIVESETTINGS_PORT", "70000", "port 70000 is out of range"),
        ("LIVESETTINGS_WRITE_BURST", "0", "LIVESETTINGS_WRITE_BURST must be at least 1"),
        ("LIVESETTINGS_WRITE_RATE", "-1", "LIVESETTINGS_WRITE_RATE must not be negative"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(variable: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as error:
        Config.load(env={variable: value})
    assert says in error.value.message


def test_unknown_settings_are_refused(tmp_path: Path) -> None:
    toml = write_toml(tmp_path / "typo.toml", "[livesettings]\nprot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        Config.load(env={}, config_file=toml)
    with pytest.raises(ConfigError, match="cannot read config file"):
        Config.load(env={}, config_file=str(tmp_path / "missing.toml"))


def test_a_bad_secret_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as error:
        Config.load(env={"LIVESETTINGS_OPS_TOKEN": "short-secret"})
    assert "LIVESETTINGS_OPS_TOKEN" in error.value.message
    assert "short-secret" not in error.value.message


def test_redacted_hides_secrets_and_database_passwords() -> None:
    config = Config.load(
        env={
            "LIVESETTINGS_JWT_SECRET": "a-very-secret-signing-key-0123456789",
            "LIVESETTINGS_OPS_TOKEN": "ops-token-0123456789abcdef",
            "LIVESETTINGS_DATABASE_URL": "postgresql://app:hunter2@db.example/settings",
            "LIVESETTINGS_ADMIN_DATABASE_URL": "postgresql://owner:swordfish@db.example/settings",
        }
    )
    shown = config.redacted()
    assert shown["jwt_secret"] == shown["ops_token"] == "***"
    assert shown["master_key"] is None  # unset stays visible as unset
    text = repr(shown)
    for secret in ("a-very-secret", "ops-token-0123", "hunter2", "swordfish"):
        assert secret not in text
    assert "db.example" in shown["database_url"]
    assert isinstance(shown["data_dir"], str)
