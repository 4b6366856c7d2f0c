"""``serve``'s siblings: ``--help``/``--version``, ``setup``, ``verify``, ``check-db``,
``check-auth``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import click
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from livesettings import __version__
from livesettings.auth import TokenIssuer
from livesettings.cli import cli
from livesettings.store import SCHEMA_VERSION, Store

from .conftest import JWT_SECRET, NEW, OLD, Cli, edit, ok

ROOT = Path(__file__).resolve().parents[2]


def test_python_m_livesettings_help_and_version() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    version = subprocess.run(
        [sys.executable, "-m", "livesettings", "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert (version.returncode, version.stdout, version.stderr) == (
        0,
        f"livesettings, version {__version__}\n",
        "",
    )
    helped = subprocess.run(
        [sys.executable, "-m", "livesettings", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert helped.returncode == 0
    commands = helped.stdout.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in commands] == [
        "backup",
        "check-auth",
        "check-db",
        "export",
        "import",
        "keys",
        "migrate",
        "restore",
        "serve",
        "setup",
        "team",
        "token",
        "user",
        "verify",
    ]
    assert "  verify      Check schema, durability, keys and bus; exit 1 on a failure." in commands


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


def test_every_command_has_help_with_a_one_line_description(run_cli: Cli) -> None:
    paths = _commands(cli)
    assert sorted(" ".join(path) for path in paths) == [
        "backup",
        "check-auth",
        "check-db",
        "export",
        "import",
        "keys",
        "keys rotate",
        "migrate",
        "restore",
        "serve",
        "setup",
        "team",
        "team add",
        "team create",
        "team delete",
        "team list",
        "team remove",
        "token",
        "token issue",
        "token revoke",
        "user",
        "user add",
        "user admin",
        "user list",
        "user passwd",
        "user remove",
        "verify",
    ]
    for path in paths:
        out = ok(run_cli(*path, "--help"))
        assert out.startswith(f"Usage: livesettings {' '.join(path)} ")
        summary = out.split("\n\n", 2)[1].strip()
        assert "\n" not in summary and summary.endswith("."), summary
        assert ok(run_cli(*path, "-h")) == out


def test_setup_is_idempotent(run_cli: Cli) -> None:
    first = ok(run_cli("setup")).splitlines()
    assert first[0] == "created table livesettings_meta"
    assert first[-3:] == [
        f"recorded schema version {SCHEMA_VERSION}",
        "master keys: old (active)",
        f"setup complete: schema version {SCHEMA_VERSION}",
    ]
    assert ok(run_cli("setup")) == (
        f"schema is up to date (version {SCHEMA_VERSION})\n"
        "master keys: old (active)\n"
        f"setup complete: schema version {SCHEMA_VERSION}\n"
    )


def test_setup_of_the_embedded_default_generates_private_key_files(run_cli: Cli) -> None:
    out = ok(run_cli("setup", master_keys=None, jwt_secret=None))
    key_file, secret_file = run_cli.data_dir / "master.keys", run_cli.data_dir / "jwt.secret"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    key_id = key_file.read_text().split(":")[0]
    assert f"master keys: {key_id} (active)\n" in out
    assert key_file.read_text().split(":")[1].strip() not in out  # never the key itself
    assert ok(run_cli("verify", master_keys=None, jwt_secret=None)) == (
        f"ok   database: sqlite:///{run_cli.db}\n"
        f"ok   schema version: {SCHEMA_VERSION}\n"
        "ok   journal mode: wal\n"
        "ok   synchronous: FULL\n"
        f"ok   master keys: {key_id} (active)\n"
        f"ok   decrypt probe: {key_id} seals and opens; 0 stored data keys unwrapped, "
        "0 secrets opened\n"
        f"ok   token keys: HS256 secret (file {secret_file})\n"
        "-    bus: memory:// (in-process, one worker)\n"
        "verify: 7 checks passed\n"
    )


def test_verify_reports_wal_full_and_that_stored_keys_decrypt(run_cli: Cli) -> None:
    ok(run_cli("setup"))

    async def write(store: Store) -> None:
        await store.commit([edit("u1", "m1", {"api_keys": {"openai": "sk-live-0123456789"}})])
        await store.commit([edit("u2", "m2", {"theme": "dark"})])

    run_cli.store_do(OLD, write)
    result = run_cli("verify")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        f"ok   database: sqlite:///{run_cli.db}\n"
        f"ok   schema version: {SCHEMA_VERSION}\n"
        "ok   journal mode: wal\n"
        "ok   synchronous: FULL\n"
        "ok   master keys: old (active)\n"
        "-    data keys: old: 1\n"
        "ok   decrypt probe: old seals and opens; 1 stored data key unwrapped, 1 secret opened\n"
        "ok   token keys: HS256 secret (LIVESETTINGS_JWT_SECRET)\n"
        "-    bus: memory:// (in-process, one worker)\n"
        "verify: 7 checks passed\n"
    )
    # An operator's weaker choice is reported, not failed.
    relaxed = run_cli("verify", sqlite_synchronous="normal")
    assert relaxed.exit_code == 0
    assert (
        "warn synchronous: NORMAL (LIVESETTINGS_SQLITE_SYNCHRONOUS; a power cut may lose the "
        "last commits)\n" in relaxed.stdout
    )


def test_verify_fails_naming_the_check_when_the_keyring_lacks_a_key(run_cli: Cli) -> None:
    ok(run_cli("setup"))

    async def write(store: Store) -> None:
        await store.commit([edit("u1", "m1", {"api_keys": {"k": "a-secret-value-123"}})])

    run_cli.store_do(OLD, write)
    result = run_cli("verify", master_keys=NEW)
    assert result.exit_code == 1
    assert (
        "ok   master keys: new (active)\n"
        "-    data keys: old: 1\n"
        "FAIL data keys: 1 data key wrapped by 'old', which is not in the ring\n"
        "ok   decrypt probe: new seals and opens; 0 stored data keys unwrapped, 0 secrets opened\n"
    ) in result.stdout
    assert result.stderr == "error: verify: 1 check failed: data keys\n"


def test_verify_before_setup_and_on_a_bad_keyring(run_cli: Cli) -> None:
    missing = run_cli("verify")
    assert (missing.exit_code, missing.stdout) == (4, "")
    assert missing.stderr == (
        f"error: the SQLite database {run_cli.db} does not exist; run `livesettings setup` first\n"
    )
    ok(run_cli("setup"))
    bad = run_cli("verify", master_keys="k1:" + "A" * 10)
    assert (bad.exit_code, bad.stdout) == (3, "")
    assert bad.stderr == (
        "error: LIVESETTINGS_MASTER_KEYS: entry 1 (key id 'k1') must decode to 32 bytes, got 7\n"
    )
    bare = run_cli("verify", master_keys="A" * 43 + "=")
    assert (bare.exit_code, bare.stderr) == (
        3,
        "error: LIVESETTINGS_MASTER_KEYS: entry 1 is not of the form id:base64\n",
    )


def test_check_db(run_cli: Cli) -> None:
    ok(run_cli("setup"))
    lines = ok(run_cli("check-db")).splitlines()
    assert lines[0] == f"ok   connection: sqlite:///{run_cli.db}"
    assert re.fullmatch(r"ok   server: SQLite \d+\.\d+\.\d+", lines[1])
    assert re.fullmatch(
        r"ok   round trip: \d+\.\d\d ms \(median of 5, slowest \d+\.\d\d ms\)", lines[2]
    )
    assert lines[3:] == [
        "-    backend: sqlite",
        f"-    path: {run_cli.db}",
        "-    journal mode: wal",
        "-    synchronous: FULL",
        f"-    schema version: {SCHEMA_VERSION}",
        "check-db: 3 checks passed",
    ]


def test_check_db_on_an_unreachable_database(run_cli: Cli, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/no/such/dir/x.db"
    result = run_cli("check-db", database_url=url)
    assert (result.exit_code, result.stdout) == (4, "")
    assert result.stderr == (
        f"error: the SQLite database {tmp_path}/no/such/dir/x.db does not exist; "
        "run `livesettings setup` first\n"
    )
    unknown = run_cli("check-db", "--database-url", "mysql://db/x")
    assert (unknown.exit_code, unknown.stderr) == (
        3,
        "error: unsupported database URL 'mysql://db/x': use sqlite:///path/to/file.db or "
        "postgresql://…\n",
    )


def test_check_db_on_an_unreachable_postgres(run_cli: Cli) -> None:
    pytest.importorskip("livesettings.store.postgres")
    result = run_cli("check-db", database_url="postgresql://app:hunter2@127.0.0.1:1/livesettings")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: ")
    assert "hunter2" not in result.stdout + result.stderr


def test_check_auth_modes_and_tokens(run_cli: Cli) -> None:
    modes = (
        "ok   HS256 secret: LIVESETTINGS_JWT_SECRET (built-in users, `token issue`)\n"
        "-    public key: not configured\n"
        "-    JWKS: not configured\n"
        "-    audience: not checked\n"
        "-    issuer: not checked\n"
        "-    service access: built-in service tokens (`token issue --service`)\n"
        "ok   algorithms: HS256\n"
    )
    assert ok(run_cli("check-auth")) == modes + "check-auth: 2 checks passed\n"

    issuer = TokenIssuer(JWT_SECRET.encode())
    token, exp = issuer.issue("user-7", role="service", ttl_seconds=3600)
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))
    assert ok(run_cli("check-auth", "--token", token)) == modes + (
        "ok   token: accepted (HS256)\n"
        "-    user id: user-7\n"
        "-    role: service\n"
        "-    service access: yes\n"
        f"-    jti: {jwt.decode(token, options={'verify_signature': False})['jti']}\n"
        f"-    expires: {expires} (in 59 minutes)\n"
        "check-auth: 3 checks passed\n"
    )

    forged = jwt.encode({"sub": "user-7", "exp": exp}, "another-secret-of-at-least-32-bytes!!")
    refused = run_cli("check-auth", "--token", forged)
    assert refused.exit_code == 1
    assert refused.stdout == modes + "FAIL token: refused: token signature is invalid\n"
    assert refused.stderr == "error: check-auth: 1 check failed: token\n"

    old, _ = issuer.issue("user-7", now=time.time() - 7200)
    expired = run_cli("check-auth", "--token", old)
    assert expired.exit_code == 1
    assert expired.stdout.endswith("FAIL token: token expired\n")
    assert JWT_SECRET not in refused.stdout + expired.stdout


def test_check_auth_with_a_jwks_file_audience_and_issuer(run_cli: Cli, tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "idp-1", "alg": "ES256"}]}))
    claims = {"sub": "idp-user", "exp": int(time.time()) + 600, "aud": "app", "iss": "https://idp"}
    token = jwt.encode(claims, private, algorithm="ES256", headers={"kid": "idp-1"})
    result = run_cli(
        "check-auth",
        "--token",
        token,
        jwt_secret=None,
        jwks_file=str(jwks),
        jwt_audience="app",
        jwt_issuer="https://idp",
        database_url="postgresql://app@db.invalid/livesettings",
    )
    assert result.stdout.splitlines()[:10] == [
        "-    HS256 secret: not configured (no built-in users)",
        "-    public key: not configured",
        f"-    JWKS file: {jwks} (1 key)",
        "-    audience: app",
        "-    issuer: https://idp",
        "-    service access: built-in service tokens (`token issue --service`)",
        "ok   algorithms: ES256",
        "ok   token: accepted (ES256)",
        "-    user id: idp-user",
        "-    role: none (a user token)",
    ]
    assert result.exit_code == 0
    wrong_audience = jwt.encode(
        {**claims, "aud": "other"}, private, algorithm="ES256", headers={"kid": "idp-1"}
    )
    refused = run_cli(
        "check-auth",
        "--token",
        wrong_audience,
        jwt_secret=None,
        jwks_file=str(jwks),
        jwt_audience="app",
        jwt_issuer="https://idp",
    )
    assert refused.exit_code == 1
    assert "FAIL token: refused: " in refused.stdout


def test_config_errors_exit_3(run_cli: Cli, tmp_path: Path) -> None:
    bad_port = run_cli("check-db", port="http")
    assert (bad_port.exit_code, bad_port.stderr) == (
        3,
        "error: LIVESETTINGS_PORT: invalid value 'http': invalid literal for int() with base "
        "10: 'http'\n",
    )
    missing = run_cli("--config", str(tmp_path / "nope.toml"), "verify")
    assert missing.exit_code == 3
    assert missing.stderr.startswith(f"error: cannot read config file {tmp_path / 'nope.toml'}")
    short = run_cli("check-auth", jwt_secret="too-short")
    assert (short.exit_code, short.stderr) == (
        1,
        "error: check-auth: 1 check failed: verification\n",
    )
    assert "FAIL verification: the JWT secret must be at least 32 bytes\n" in short.stdout
    assert "too-short" not in short.stdout
    assert run_cli("verify", "--bogus").exit_code == 2


def test_verify_and_check_db_without_a_schema(run_cli: Cli) -> None:
    run_cli.data_dir.mkdir()
    run_cli.db.touch()
    expected = (
        f"the SQLite database {run_cli.db} has no livesettings schema; "
        "run `livesettings setup` first"
    )
    verified = run_cli("verify")
    assert (verified.exit_code, verified.stdout, verified.stderr) == (
        1,
        f"FAIL database: {expected}\n",
        "error: verify: 1 check failed: database\n",
    )
    checked = run_cli("check-db")
    assert (checked.exit_code, checked.stdout, checked.stderr) == (
        1,
        f"ok   connection: sqlite:///{run_cli.db}\nFAIL open: {expected}\n",
        "error: check-db: 1 check failed: open\n",
    )


def test_a_toml_config_file_is_read_and_the_environment_wins(run_cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "livesettings.toml"
    config.write_text('[livesettings]\nsqlite_synchronous = "EXTRA"\njwt_audience = "from-file"\n')
    ok(run_cli("--config", str(config), "setup"))
    verified = ok(run_cli("--config", str(config), "verify"))
    assert "ok   synchronous: EXTRA\n" in verified
    auth = ok(run_cli("check-auth", config=str(config), jwt_audience="from-env"))
    assert "-    audience: from-env\n" in auth


def test_check_auth_reports_an_unreachable_jwks_url(run_cli: Cli) -> None:
    result = run_cli(
        "check-auth",
        jwks_url="http://127.0.0.1:1/.well-known/jwks.json",
        jwt_audience="app",
        jwt_issuer="idp",
    )
    assert result.exit_code == 1
    assert re.search(
        r"^FAIL JWKS URL: cannot fetch http://127\.0\.0\.1:1/\.well-known/jwks\.json: .+$",
        result.stdout,
        re.M,
    )
    assert result.stderr == "error: check-auth: 1 check failed: JWKS URL\n"
