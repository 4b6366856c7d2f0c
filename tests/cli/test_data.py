"""``keys rotate``, ``export`` and ``import``, and the library functions behind them."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from livesettings.backup import import_users
from livesettings.crypto import Keyring, open_secret, unwrap_data_key
from livesettings.errors import BadRequest
from livesettings.keys import rotate_data_keys
from livesettings.store import Store

from .conftest import NEW, OLD, Cli, edit, ok

SECRETS = {
    "u1": {"openai": "sk-u1-openai-0123456789", "anthropic": "sk-ant-u1-abcdefgh"},
    "u2": {"openai": "sk-u2-openai-9876543210"},
    "u3": {"mistral": "short"},
}


def write_secrets(run_cli: Cli, keys: str = OLD) -> None:
    async def write(store: Store) -> None:
        for n, (user_id, secrets) in enumerate(SECRETS.items()):
            await store.commit([edit(user_id, f"m{n}", {"api_keys": secrets, "theme": "dark"})])
            await store.commit([edit(user_id, f"p{n}", {"preferences": {"n": n}})])
        await store.commit([edit("u4", "plain", {"language": "fr"})])  # no secrets, no data key

    run_cli.store_do(keys, write)


def read_secrets(run_cli: Cli, keys: str) -> dict[str, dict[str, str]]:
    """Every secret, decrypted the long way: the stored wrapped key under ``keys`` only."""
    keyring = Keyring.parse(keys)

    async def read(store: Store) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for user_id in SECRETS:
            wrapped = await store.get_wrapped_key(user_id)
            assert wrapped is not None
            data_key = unwrap_data_key(keyring, user_id, wrapped)
            sealed = (await store.get_document(user_id)).settings["api_keys"]
            out[user_id] = {
                name: open_secret(user_id, name, env, data_key) for name, env in sealed.items()
            }
        return out

    return run_cli.store_do(keys, read)


def test_rotation_then_only_the_new_key_reads_every_secret(run_cli: Cli) -> None:
    ok(run_cli("setup"))
    write_secrets(run_cli)
    assert read_secrets(run_cli, OLD) == SECRETS
    result = run_cli("keys", "rotate", master_keys=f"{NEW},{OLD}")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "-    active master key: new\n"
        "ok   re-wrapped: 3 data keys under new\n"
        "-    data keys: new: 3\n"
        "ok   old: wraps no data key now; it can be removed from the keyring\n"
        "rotation complete: every data key is under new\n"
    )
    assert read_secrets(run_cli, NEW) == SECRETS
    verified = ok(run_cli("verify", master_keys=NEW))
    assert (
        "ok   decrypt probe: new seals and opens; 1 stored data key unwrapped, 1 secret opened\n"
        in verified
    )
    assert "-    data keys: new: 3\n" in verified
    # Nothing left to do: a second run is a no-op that says so.
    assert ok(run_cli("keys", "rotate", master_keys=NEW)) == (
        "-    active master key: new\n"
        "ok   re-wrapped: 0 data keys under new\n"
        "-    data keys: new: 3\n"
        "rotation complete: every data key is under new\n"
    )


def test_an_interrupted_rotation_resumes(run_cli: Cli) -> None:
    ok(run_cli("setup"))
    write_secrets(run_cli)
    ring = f"{NEW},{OLD}"
    first = run_cli("keys", "rotate", "--batch-size", "1", "--max-keys", "2", master_keys=ring)
    assert ok(first) == (
        "-    active master key: new\n"
        "ok   re-wrapped: 2 data keys under new\n"
        "-    data keys: new: 2, old: 1\n"
        "stopped after 2 data keys with 1 left; run `livesettings keys rotate` again to continue\n"
    )
    # Both keys are needed meanwhile, and the old one alone no longer reads the moved users.
    assert read_secrets(run_cli, ring) == SECRETS
    with pytest.raises(Exception, match="not in the keyring"):
        read_secrets(run_cli, OLD)
    assert ok(run_cli("keys", "rotate", "--batch-size", "1", master_keys=ring)) == (
        "-    active master key: new\n"
        "ok   re-wrapped: 1 data key under new\n"
        "-    data keys: new: 3\n"
        "ok   old: wraps no data key now; it can be removed from the keyring\n"
        "rotation complete: every data key is under new\n"
    )
    assert read_secrets(run_cli, NEW) == SECRETS


def test_rotation_interrupted_mid_batch_resumes(run_cli: Cli) -> None:
    """A crash (here: an exception out of the progress callback) loses nothing: every
    data key is under one master key or the other, and a new run finishes the job."""
    ok(run_cli("setup"))
    write_secrets(run_cli)
    ring = Keyring.parse(f"{NEW},{OLD}")

    def crash(n: int) -> None:
        raise KeyboardInterrupt

    async def interrupted(store: Store) -> dict[str, int]:
        with pytest.raises(KeyboardInterrupt):
            await rotate_data_keys(store, ring, batch_size=2, on_progress=crash)
        return await store.count_wrapped_keys()

    assert run_cli.store_do(f"{NEW},{OLD}", interrupted) == {"new": 2, "old": 1}

    async def resumed(store: Store) -> tuple[int, bool, dict[str, int]]:
        result = await rotate_data_keys(store, ring, batch_size=2)
        return result.rewrapped, result.stopped, result.counts

    assert run_cli.store_do(f"{NEW},{OLD}", resumed) == (1, False, {"new": 3})
    assert read_secrets(run_cli, NEW) == SECRETS


def test_rotation_refuses_keys_under_a_master_key_the_ring_lacks(run_cli: Cli) -> None:
    ok(run_cli("setup"))
    write_secrets(run_cli)
    result = run_cli("keys", "rotate", master_keys=NEW)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "error: 3 data keys are wrapped by master key 'old', which is not in the keyring "
        "(new (active)); add it after the active key and run again\n"
    )
    assert read_secrets(run_cli, OLD) == SECRETS  # untouched


def test_rotation_without_a_keyring(run_cli: Cli) -> None:
    ok(run_cli("setup"))
    (run_cli.data_dir / "master.keys").unlink(missing_ok=True)
    result = run_cli("keys", "rotate", master_keys=None)
    assert (result.exit_code, result.stderr) == (
        3,
        "error: no master keys: set LIVESETTINGS_MASTER_KEYS=new:…,old:… (the new key first)\n",
    )


def test_export_then_import_into_an_empty_database_round_trips(
    run_cli: Cli, tmp_path: Path
) -> None:
    ok(run_cli("setup"))
    ok(run_cli("user", "add", "alice", "--password-stdin", input="correct horse 1\n"))
    write_secrets(run_cli)
    backup = tmp_path / "backup.jsonl"
    exported = run_cli("export", "-o", str(backup))
    assert (exported.exit_code, exported.stderr) == (0, "")
    assert exported.stdout == (
        f"exported 5 users to {backup}\nrestoring their secrets needs master key(s): old\n"
    )
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    lines = backup.read_bytes().splitlines()
    users = [json.loads(line) for line in lines]
    assert sorted(u["user_id"] for u in users if u["username"] is None) == ["u1", "u2", "u3", "u4"]
    assert [u["username"] for u in users if u["username"]] == ["alice"]
    for user in users:  # secrets only in sealed form
        for name, value in user["document"]["settings"]["api_keys"].items():
            assert value["$sealed"] == 1
            assert SECRETS[user["user_id"]][name] not in backup.read_text()

    target = Cli(tmp_path / "restored", LIVESETTINGS_MASTER_KEYS=OLD)
    imported = target("import", "-i", str(backup))
    assert (imported.exit_code, imported.stderr) == (0, "")
    assert (
        imported.stdout
        == "imported 5 users\nok   data keys: 3 data keys wrapped by old, in the keyring\n"
    )
    # The restored database exports the same lines, and every secret decrypts there.
    again = target("export")
    assert (again.exit_code, again.stderr) == (
        0,
        "exported 5 users\nrestoring their secrets needs master key(s): old\n",
    )
    assert again.stdout_bytes == backup.read_bytes()
    assert read_secrets(target, OLD) == SECRETS
    assert ok(target("verify")).endswith("verify: 7 checks passed\n")
    alice_token = ok(target("token", "issue", "--user", "alice"))
    assert alice_token.count(".") == 2


def test_export_to_stdout_and_import_from_stdin(run_cli: Cli, tmp_path: Path) -> None:
    ok(run_cli("setup"))
    write_secrets(run_cli)
    exported = run_cli("export")
    assert exported.exit_code == 0
    target = Cli(tmp_path / "restored", LIVESETTINGS_MASTER_KEYS=NEW)
    imported = target("import", input=exported.stdout_bytes)
    assert imported.exit_code == 0
    assert imported.stdout == (
        "imported 4 users\n"
        "warn data keys: 3 data keys wrapped by old, which is not in the keyring: their secrets "
        "cannot be read until it is added to LIVESETTINGS_MASTER_KEYS\n"
    )
    assert read_secrets(target, f"{NEW},{OLD}") == SECRETS


def test_import_refuses_existing_users_and_bad_lines(run_cli: Cli, tmp_path: Path) -> None:
    ok(run_cli("setup"))
    write_secrets(run_cli)
    backup = tmp_path / "backup.jsonl"
    ok(run_cli("export", "-o", str(backup)))
    again = run_cli("import", "-i", str(backup))
    assert (again.exit_code, again.stdout) == (1, "")
    assert again.stderr == (
        "error: line 1: user 'u1' already exists; users and teams on earlier lines were imported "
        "(run again with --skip-existing to continue)\n"
    )
    assert ok(run_cli("import", "-i", str(backup), "--skip-existing")) == (
        "imported 0 users\nskipped 4 users already present\n"
    )

    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(backup.read_bytes().splitlines()[0] + b"\n{not json\n")
    target = Cli(tmp_path / "restored", LIVESETTINGS_MASTER_KEYS=OLD)
    bad = target("import", "-i", str(broken))
    assert (bad.exit_code, bad.stderr) == (
        1,
        "error: line 2: not valid JSON; users and teams on earlier lines were imported "
        "(run again with --skip-existing to continue)\n",
    )
    # Fixing the file and running again with --skip-existing finishes the import.
    broken.write_bytes(backup.read_bytes())
    assert ok(target("import", "-i", str(broken), "--skip-existing")) == (
        "imported 3 users\nskipped 1 user already present\n"
        "ok   data keys: 2 data keys wrapped by old, in the keyring\n"
    )
    missing = target("import", "-i", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 2


def test_teams_and_their_members_are_exported_and_imported(run_cli: Cli, tmp_path: Path) -> None:
    ok(run_cli("setup"))
    for name in ("ann", "bea"):
        ok(run_cli("user", "add", name, "--password-stdin", input=f"correct horse {name}\n"))
    made = ok(run_cli("team", "create", "Design", "--owner", "ann"))
    team_id = made.strip().rsplit("id ", 1)[1].rstrip(")")
    ok(run_cli("team", "add", team_id, "bea", "--role", "viewer"))
    backup = tmp_path / "backup.jsonl"
    assert ok(run_cli("export", "-o", str(backup))) == f"exported 2 users and 1 team to {backup}\n"
    team = json.loads(backup.read_bytes().splitlines()[-1])
    assert (team["kind"], team["team_id"], team["name"]) == ("team", team_id, "Design")

    target = Cli(tmp_path / "restored", LIVESETTINGS_MASTER_KEYS=OLD)
    assert ok(target("import", "-i", str(backup))) == "imported 2 users and 1 team\n"
    assert f"{team_id}  2 members" in ok(target("team", "list"))
    assert f"{team_id}  viewer" in ok(target("team", "list", "--user", "bea"))
    assert ok(target("import", "-i", str(backup), "--skip-existing")) == (
        "imported 0 users\nskipped 2 users and 1 team already present\n"
    )
    assert target("export").stdout_bytes == backup.read_bytes()


async def test_import_names_a_malformed_line() -> None:
    with pytest.raises(BadRequest, match=r"^line 1: an export line is malformed: 'user_id'$"):
        await import_users(None, [b'{"document": {}}'])  # type: ignore[arg-type]


def test_progress_is_drawn_only_on_a_terminal(run_cli: Cli, tmp_path: Path) -> None:
    ok(run_cli("setup"))
    write_secrets(run_cli)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESETTINGS_")}
    env.update({k: v for k, v in run_cli.env.items() if v is not None})
    env.update(
        {
            "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
            "LIVESETTINGS_MASTER_KEYS": f"{NEW},{OLD}",
        }
    )

    def on_a_terminal(*args: str) -> tuple[str, str]:
        leader, follower = pty.openpty()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "livesettings", *args],
                stdout=subprocess.PIPE,
                stderr=follower,
                env=env,
                timeout=30,
                check=True,
            )
            os.close(follower)
            drawn = b""
            with contextlib.suppress(OSError):  # EIO once the terminal has no writer left
                while chunk := os.read(leader, 65536):
                    drawn += chunk
        finally:
            os.close(leader)
        return done.stdout.decode(), drawn.decode()

    out, drawn = on_a_terminal("keys", "rotate")
    assert out.endswith("rotation complete: every data key is under new\n")
    assert "re-wrapping data keys  [####################################]  100%" in drawn
    out, drawn = on_a_terminal("export", "-o", str(tmp_path / "b.jsonl"))
    assert out.startswith("exported 4 users")
    assert drawn.endswith("\rexporting users: 4\r\n")


def test_rotation_skips_a_damaged_data_key_and_names_it(run_cli: Cli) -> None:
    ok(run_cli("setup"))
    write_secrets(run_cli)
    # u1's wrapped key copied into u2's row: bound to u1, it must not unwrap for u2.
    with sqlite3.connect(run_cli.db) as conn:
        conn.execute(
            "UPDATE data_keys SET key_id = (SELECT key_id FROM data_keys WHERE user_id = 'u1'), "
            "blob = (SELECT blob FROM data_keys WHERE user_id = 'u1') WHERE user_id = 'u2'"
        )
    conn.close()
    damaged = run_cli.store_do(OLD, lambda store: store.get_wrapped_key("u2"))
    assert damaged is not None
    key_id = damaged.id
    for rewrapped in ("2 data keys", "0 data keys"):  # a second run skips it again, no loop
        result = run_cli("keys", "rotate", "--batch-size", "1", master_keys=f"{NEW},{OLD}")
        assert result.exit_code == 1
        assert result.stdout == (
            "-    active master key: new\n"
            f"ok   re-wrapped: {rewrapped} under new\n"
            "-    data keys: new: 2, old: 1\n"
            f"FAIL user u2: data key '{key_id}' does not decrypt for this user under master "
            "key 'old'\n"
        )
        assert result.stderr == (
            "error: keys rotate: 1 data key could not be re-wrapped (damaged or foreign); "
            "every other one was\n"
        )
