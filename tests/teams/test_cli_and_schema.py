"""``livesettings team …`` for operators, and the upgrade of a schema-1 database to 2."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from livesettings.store import SCHEMA_VERSION
from tests.cli.conftest import Cli
from tests.conftest import Backend
from tests.support.postgres import SUPERUSER, run_setup, sql, url
from tests.support.server import ServerProcess
from tests.support.users import signup
from tests.teams.helpers import add_member, create_team


def test_the_team_commands_manage_teams(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "data")
    for name in ("ann", "bea"):
        assert (
            cli("user", "add", name, "--password-stdin", input="correct horse 1\n").exit_code == 0
        )
    made = cli("team", "create", "Design", "--owner", "ann")
    assert made.exit_code == 0, made.output
    team_id = made.output.strip().rsplit("id ", 1)[1].rstrip(")")
    assert cli("team", "add", team_id, "bea", "--role", "admin").exit_code == 0
    listed = cli("team", "list")
    assert listed.exit_code == 0
    assert f"{team_id}  2 members" in listed.output and "Design" in listed.output
    mine = cli("team", "list", "--user", "bea")
    assert f"{team_id}  admin" in mine.output
    # The last owner stays, even for an operator.
    refused = cli("team", "remove", team_id, "ann")
    assert refused.exit_code == 1
    assert "last owner" in refused.output + refused.stderr
    assert cli("team", "remove", team_id, "bea").exit_code == 0
    assert "1 member" in cli("team", "list").output
    bad = cli("team", "delete", "not-a-team", "--yes")
    assert bad.exit_code == 1
    gone = cli("team", "delete", team_id, "--yes")
    assert gone.exit_code == 0, gone.output
    assert cli("team", "list").output.strip() == "no teams"
    audit = (tmp_path / "data" / "audit.log").read_text()
    for event in ("team_created", "team_member_added", "team_member_removed", "team_deleted"):
        assert f'"event":"{event}"' in audit


def test_removing_a_user_takes_them_out_of_their_teams_but_not_a_last_owner(
    tmp_path: Path,
) -> None:
    cli = Cli(tmp_path / "data")
    for name in ("cyan", "dina"):
        assert (
            cli("user", "add", name, "--password-stdin", input="correct horse 1\n").exit_code == 0
        )
    made = cli("team", "create", "Ops", "--owner", "cyan")
    team_id = made.output.strip().rsplit("id ", 1)[1].rstrip(")")
    assert cli("team", "add", team_id, "dina", "--role", "member").exit_code == 0
    refused = cli("user", "remove", "cyan", "--yes")
    assert refused.exit_code == 1
    assert "last owner" in refused.output + refused.stderr
    assert "cyan" in cli("user", "list").output  # nothing was removed
    assert cli("user", "remove", "dina", "--yes").exit_code == 0
    assert "1 member" in cli("team", "list").output
    assert cli("team", "list", "--user", "dina").output.strip() == "no teams"


def _downgrade_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(
            "DROP TABLE team_members; DROP TABLE teams; DROP INDEX IF EXISTS team_members_user;"
            "UPDATE livesettings_meta SET value = '1' WHERE key = 'schema_version';"
        )
    finally:
        conn.close()


def test_a_schema_1_database_is_upgraded_in_place(backend: Backend, tmp_path: Path) -> None:
    proc = backend.server(tmp_path / "data")
    proc.start()
    with proc.client() as http:
        user = signup(http)
        http.patch("/v1/settings", json={"theme": "dark"}, headers=user.headers)
    proc.stop()
    db = backend.databases.get(id(proc))
    if db is None:
        _downgrade_sqlite(proc.data_dir / "livesettings.db")
    else:
        # What a version-1 setup left: no team tables, no membership function, the version.
        on_db = url(SUPERUSER, db.name)
        sql("DROP FUNCTION public.livesettings_member_of(text) CASCADE", url=on_db)
        sql("DROP TABLE public.team_members, public.teams", url=on_db)
        sql("UPDATE public.livesettings_meta SET value = '1'", url=on_db)
        refused = ServerProcess(proc.data_dir, **proc.settings)
        try:
            with pytest.raises(RuntimeError, match="schema version 1"):
                refused.start(timeout=10.0)
        finally:
            refused.stop()
        assert f"recorded schema version {SCHEMA_VERSION}" in run_setup(db)
    again = ServerProcess(proc.data_dir, **proc.settings)
    again.start()
    try:
        with again.client() as http:
            got = http.get("/v1/settings", headers=_token(http, user.username, user.password))
            assert got.json()["settings"]["theme"] == "dark"
            owner_user, other = signup(http), signup(http)
            team_id = create_team(http, owner_user)
            add_member(http, team_id, owner_user, other, "member")
            patched = http.patch(
                f"/v1/teams/{team_id}/settings", json={"theme": "dark"}, headers=other.headers
            )
            assert patched.status_code == 200, patched.text
    finally:
        again.stop()


def _token(http: object, username: str, password: str) -> dict[str, str]:
    import httpx

    assert isinstance(http, httpx.Client)
    body = http.post("/v1/auth/token", json={"username": username, "password": password}).json()
    return {"Authorization": f"Bearer {body['access_token']}"}
