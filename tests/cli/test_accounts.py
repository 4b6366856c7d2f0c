"""``user add|list|remove|passwd|admin`` and ``token issue``."""

from __future__ import annotations

import json
import re

import pytest

from livesettings.auth import PasswordHasher, TokenVerifier
from livesettings.store import RefreshResult, Store

from .conftest import JWT_SECRET, OLD, Cli, edit, ok

ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
HASHER = PasswordHasher(time_cost=1, memory_cost=1024)


def add(run_cli: Cli, username: str, password: str = "correct horse 1") -> str:
    out = ok(run_cli("user", "add", username, "--password-stdin", input=password + "\n"))
    match = re.fullmatch(rf"created user {username} \(id ({ID})\)\n", out)
    assert match, out
    return match.group(1)


def test_user_add_list_passwd_remove(run_cli: Cli) -> None:
    # The embedded default sets itself up on the first `user add`, as `serve` does.
    alice = add(run_cli, "alice")
    bob = add(run_cli, "bob.b")
    listed = ok(run_cli("user", "list")).splitlines()
    assert (
        listed[0]
        == "USERNAME  USER ID                               CREATED                   ADMIN"
    )
    assert [line[:48] for line in listed[1:3]] == [f"alice     {alice}  ", f"bob.b     {bob}  "]
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line[48:]) for line in listed[1:3]
    )
    assert listed[3] == "2 users"

    async def row_hash(store: Store) -> str:
        row = await store.get_user(alice)
        assert row is not None
        return row.password_hash

    assert HASHER.verify(run_cli.store_do(None, row_hash), "correct horse 1")
    assert ok(run_cli("user", "passwd", "alice", "--password-stdin", input="new horse 22\n")) == (
        "changed the password of alice; 0 refresh tokens revoked, its sessions are ended\n"
    )
    stored = run_cli.store_do(None, row_hash)
    assert HASHER.verify(stored, "new horse 22") and not HASHER.verify(stored, "correct horse 1")

    assert ok(run_cli("user", "remove", "bob.b", "--yes")) == (
        f"removed user bob.b (id {bob}); its sessions are ended\n"
    )
    assert ok(run_cli("user", "list")).splitlines()[1:] == [listed[1], "1 user"]


def test_user_add_prompts_twice_without_echo(run_cli: Cli) -> None:
    result = run_cli("user", "add", "carol", input="s3cret-pass\ns3cret-pass\n")
    assert result.exit_code == 0
    assert result.stdout == "Password: \nRepeat the password: \n" + (
        result.stdout.splitlines()[-1] + "\n"
    )
    assert "s3cret-pass" not in result.stdout + result.stderr
    mismatch = run_cli("user", "add", "dave", input="s3cret-pass\nother-pass\n")
    assert mismatch.exit_code == 1
    assert "Error: The two entered values do not match." in mismatch.stderr + mismatch.stdout


def test_user_add_refusals(run_cli: Cli) -> None:
    add(run_cli, "alice")
    taken = run_cli("user", "add", "alice", "--password-stdin", input="another pass 1\n")
    assert (taken.exit_code, taken.stdout, taken.stderr) == (
        1,
        "",
        "error: the username 'alice' is taken\n",
    )
    weak = run_cli("user", "add", "erin", "--password-stdin", input="short\n")
    assert (weak.exit_code, weak.stderr) == (1, "error: password must be 8 to 1024 characters\n")
    bad = run_cli("user", "add", "no spaces", "--password-stdin", input="long enough 1\n")
    assert (bad.exit_code, bad.stderr) == (
        1,
        "error: username must be 3 to 64 characters: letters, digits, '_', '.', '@', '+' or '-'\n",
    )


def test_passwd_and_remove_end_every_session(run_cli: Cli) -> None:
    alice = add(run_cli, "alice")
    bob = add(run_cli, "bob")

    async def sessions(store: Store) -> None:
        for user_id, name in ((alice, "a"), (bob, "b")):
            await store.add_refresh_token(f"hash-{name}", user_id, f"family-{name}", 2**40)
        await store.commit([edit(bob, "m1", {"api_keys": {"openai": "sk-bob-0123456789"}})])

    run_cli.store_do(OLD, sessions)
    assert ok(run_cli("user", "passwd", alice, "--password-stdin", input="brand new 99\n")) == (
        "changed the password of alice; 1 refresh token revoked, its sessions are ended\n"
    )
    assert ok(run_cli("user", "remove", "bob", "-y")).startswith("removed user bob ")

    async def state(store: Store) -> tuple[RefreshResult, list[str], object, object, int]:
        used = await store.use_refresh_token("hash-a", "hash-a2", 2**40, 1)
        revoked = [user_id for _, user_id, _ in await store.revocations_since(0)]
        doc = await store.get_document(bob)
        return (
            used,
            revoked,
            await store.get_user(bob),
            await store.get_wrapped_key(bob),
            doc.revision,
        )

    used, revoked, bob_row, bob_key, bob_revision = run_cli.store_do(OLD, state)
    assert used.status == "invalid"
    assert sorted(revoked) == sorted([alice, bob])
    assert (bob_row, bob_key, bob_revision) == (None, None, 0)


def test_unknown_users(run_cli: Cli) -> None:
    add(run_cli, "alice")
    for args in (("user", "remove", "zed", "--yes"), ("token", "issue", "--user", "zed")):
        result = run_cli(*args)
        assert (result.exit_code, result.stdout) == (1, "")
        assert result.stderr.startswith("error: no user 'zed'")
    passwd = run_cli("user", "passwd", "zed", input="never asked 1\n")
    assert (passwd.exit_code, passwd.stdout, passwd.stderr) == (1, "", "error: no user 'zed'\n")
    declined = run_cli("user", "remove", "alice", input="n\n")
    assert declined.exit_code == 1
    assert "Aborted!" in declined.stderr
    assert ok(run_cli("user", "list")).endswith("1 user\n")


def test_admins_are_made_listed_and_unmade(run_cli: Cli) -> None:
    out = ok(run_cli("user", "add", "root", "--admin", "--password-stdin", input="admin pass 11\n"))
    match = re.fullmatch(rf"created admin root \(id ({ID})\)\n", out)
    assert match, out
    root = match.group(1)
    alice = add(run_cli, "alice")
    listed = ok(run_cli("user", "list")).splitlines()
    assert listed[0].endswith("  ADMIN")
    assert listed[1].startswith("alice") and not listed[1].endswith("admin")
    assert listed[2].startswith(f"root      {root}  ") and listed[2].endswith("  admin")
    assert listed[3] == "2 users, 1 admin"

    assert ok(run_cli("user", "admin", "alice", "--on")) == f"alice (id {alice}) is now an admin\n"
    assert ok(run_cli("user", "admin", alice, "--on")) == (
        f"alice (id {alice}) was already an admin\n"
    )
    assert ok(run_cli("user", "admin", "root", "--off")) == (
        f"root (id {root}) is no longer an admin\n"
    )
    assert ok(run_cli("user", "admin", "root", "--off")) == f"root (id {root}) was not an admin\n"

    async def admins(store: Store) -> set[str]:
        return await store.admin_ids()

    assert run_cli.store_do(None, admins) == {alice}
    # Grants and revokes are audited (the embedded default's audit log), never a password.
    lines = [json.loads(line) for line in (run_cli.data_dir / "audit.log").read_text().splitlines()]
    granted = [
        (e["event"], e["user_id"], e["by"]) for e in lines if e["event"].startswith("admin_")
    ]
    assert granted == [
        ("admin_granted", root, "cli"),
        ("admin_granted", alice, "cli"),
        ("admin_revoked", root, "cli"),
    ]
    assert "admin pass 11" not in (run_cli.data_dir / "audit.log").read_text()

    unknown = run_cli("user", "admin", "zed", "--on")
    assert (unknown.exit_code, unknown.stdout) == (1, "")
    assert unknown.stderr.startswith("error: no built-in user 'zed'")
    neither = run_cli("user", "admin", "alice")
    assert neither.exit_code == 2 and "--on" in neither.stderr
    # Removing the account takes the flag with it.
    ok(run_cli("user", "remove", "alice", "--yes"))
    assert run_cli.store_do(None, admins) == set()


def test_token_issue_prints_a_verifiable_token(run_cli: Cli) -> None:
    alice = add(run_cli, "alice")
    verifier = TokenVerifier(hs256_secret=JWT_SECRET.encode())

    by_name = run_cli("token", "issue", "--user", "alice")
    assert (by_name.exit_code, by_name.stderr) == (0, "")
    assert by_name.stdout.count("\n") == 1
    claims = verifier.verify(by_name.stdout.strip())
    assert (claims.sub, claims.role, claims.exp - int(claims.raw["iat"])) == (alice, None, 900)

    by_id = verifier.verify(ok(run_cli("token", "issue", "--user", alice, "--ttl", "60")).strip())
    assert (by_id.sub, by_id.exp - int(by_id.raw["iat"])) == (alice, 60)

    service = verifier.verify(
        ok(run_cli("token", "issue", "--user", "billing", "--service")).strip()
    )
    assert (service.sub, service.role, service.is_service) == ("billing", "service", True)

    bad_ttl = run_cli("token", "issue", "--user", "alice", "--ttl", "0")
    assert bad_ttl.exit_code == 2
    assert "Invalid value for '--ttl': 0 is not in the range x>=1." in bad_ttl.stderr


def test_token_issue_carries_the_configured_audience_and_issuer(run_cli: Cli) -> None:
    add(run_cli, "alice")
    out = ok(run_cli("token", "issue", "--user", "alice", jwt_audience="app", jwt_issuer="me"))
    claims = TokenVerifier(hs256_secret=JWT_SECRET.encode(), audience="app", issuer="me").verify(
        out.strip()
    )
    assert (claims.raw["aud"], claims.raw["iss"]) == ("app", "me")


def test_token_issue_without_a_secret(run_cli: Cli) -> None:
    result = run_cli(
        "token",
        "issue",
        "--user",
        "svc",
        "--service",
        jwt_secret=None,
        database_url="postgresql://app@db.invalid/x",
        jwt_public_key="-----BEGIN PUBLIC KEY-----\nnot really\n-----END PUBLIC KEY-----",
    )
    assert (result.exit_code, result.stdout) == (3, "")
    assert result.stderr == (
        "error: token issue signs HS256 tokens and no LIVESETTINGS_JWT_SECRET is configured; "
        "with an identity provider, issue tokens there\n"
    )


@pytest.mark.parametrize("command", [("user", "list"), ("token", "issue", "--user", "x")])
def test_before_setup(run_cli: Cli, command: tuple[str, ...]) -> None:
    result = run_cli(*command)
    assert (result.exit_code, result.stdout) == (4, "")
    assert result.stderr == (
        f"error: the SQLite database {run_cli.db} does not exist; run `livesettings setup` first\n"
    )
