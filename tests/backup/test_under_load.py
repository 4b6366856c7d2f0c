"""A backup taken while a real server takes writes restores every acknowledged write, and the
restored server opens the secrets with the same keyring."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from livesettings.snapshots import FORMAT_VERSION
from livesettings.store.base import SCHEMA_VERSION
from tests.backup.helpers import SECRET_VALUE, all_changes, livesettings, read_secret
from tests.support.server import ServerProcess
from tests.support.users import User, signup

LOAD = {"write_rate": 100000, "write_burst": 100000, "changelog_retain": 100000}


@dataclass(frozen=True)
class Ack:
    revision: int
    n: int
    at: float  # time.monotonic() when the answer arrived


class Writer(threading.Thread):
    """Writes ``{"preferences": {"n": i}}`` for one user, one request at a time, until
    stopped; records each acknowledged write."""

    def __init__(self, url: str, user: User, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.user, self.stop = url, user, stop
        self.acks: list[Ack] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=10.0) as http:
                n = 0
                while not self.stop.is_set():
                    n += 1
                    r = http.patch(
                        "/v1/settings", json={"preferences": {"n": n}}, headers=self.user.headers
                    )
                    at = time.monotonic()
                    assert r.status_code == 200, r.text
                    self.acks.append(Ack(r.json()["revision"], n, at))
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc


def test_backup_under_write_load_restores_every_acknowledged_write(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", **LOAD)
    server.start()
    stop = threading.Event()
    writers: list[Writer] = []
    try:
        with server.client() as http:
            alice, bob = signup(http), signup(http)
            r = http.patch(
                "/v1/settings", json={"api_keys": {"openai": SECRET_VALUE}}, headers=alice.headers
            )
            assert r.status_code == 200, r.text
        writers = [Writer(server.url, user, stop) for user in (alice, bob)]
        for writer in writers:
            writer.start()
        time.sleep(0.5)  # the writers are in full swing
        started = time.monotonic()
        backup = subprocess.Popen(
            [sys.executable, "-m", "livesettings", "backup", str(tmp_path / "backup")],
            env=server.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = backup.communicate(timeout=60)
        ended = time.monotonic()
        time.sleep(0.2)
    finally:
        stop.set()
        for writer in writers:
            writer.join(10)
        server.stop()
    assert backup.returncode == 0, out + err
    for writer in writers:
        assert writer.error is None, writer.error
        assert any(started < ack.at < ended for ack in writer.acks), "no write during the backup"
        assert any(ack.at < started for ack in writer.acks)
    key_id = (tmp_path / "data" / "master.keys").read_text().split(":", 1)[0]
    assert "keyring is NOT in this backup" in err and key_id in err

    # The backup: a private directory, private files, a manifest that matches them.
    backup_dir = tmp_path / "backup"
    assert stat.S_IMODE(backup_dir.stat().st_mode) == 0o700
    assert sorted(p.name for p in backup_dir.iterdir()) == ["livesettings.db", "manifest.json"]
    for name in ("livesettings.db", "manifest.json"):
        assert stat.S_IMODE((backup_dir / name).stat().st_mode) == 0o600
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["database_file"] == "livesettings.db"
    assert manifest["database_size"] == (backup_dir / "livesettings.db").stat().st_size
    assert manifest["counts"]["users"] == 2
    assert manifest["counts"]["documents"] == 2
    assert manifest["counts"]["teams"] == 0
    assert manifest["counts"]["master_key_ids"] == {key_id: 1}  # alice's data key

    # Restore into an empty data dir that holds only the keyring, kept apart from the backup.
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir(mode=0o700)
    shutil.copy2(tmp_path / "data" / "master.keys", restored_dir / "master.keys")
    done = livesettings("restore", backup_dir, data_dir=restored_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"keyring: holds master key id(s) {key_id}" in done.stdout
    assert "WARNING" not in done.stderr
    assert stat.S_IMODE((restored_dir / "livesettings.db").stat().st_mode) == 0o600

    again = ServerProcess(restored_dir)
    again.start()
    try:
        with again.client() as http:
            revisions = {}
            for writer in writers:
                changes = all_changes(http, writer.user)
                doc = http.get("/v1/settings", headers=writer.user.headers).json()
                last = doc["revision"]
                revisions[writer.user.user_id] = last
                # One consistent moment: the log holds exactly revisions 1..last.
                assert sorted(changes) == list(range(1, last + 1))
                for ack in writer.acks:
                    if ack.at < started:
                        assert ack.revision <= last, "a write acknowledged before is missing"
                    if ack.revision <= last:
                        assert changes[ack.revision]["patch"] == {"preferences": {"n": ack.n}}
                    if ack.revision == last:
                        assert doc["settings"]["preferences"] == {"n": ack.n}
            assert read_secret(http, alice.user_id) == SECRET_VALUE
            # The restored server goes on from where the snapshot was.
            r = http.patch("/v1/settings", json={"theme": "dark"}, headers=bob.headers)
            assert r.json()["revision"] == revisions[bob.user_id] + 1
    finally:
        again.stop()
    counts = manifest["counts"]
    assert counts["changes"] == sum(revisions.values())
    assert counts["revision_sum"] == sum(revisions.values())
    assert counts["revision_max"] == max(revisions.values())
