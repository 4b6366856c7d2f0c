"""Team routes (DESIGN §11) against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

from tests.conftest import Backend
from tests.support.server import ServerProcess, wait_for
from tests.support.users import signup
from tests.teams.helpers import add_member, create_team, doc_rows, service_token


def _logged(proc: ServerProcess, *events: str) -> None:
    """Each event has an audit line in the server's output (read by a thread: wait a bit)."""
    for event in events:
        assert wait_for(lambda event=event: f'"event":"{event}"' in proc.log_text()), event


def _team_routes(team_id: str) -> list[tuple[str, str, dict[str, object] | None]]:
    base = f"/v1/teams/{team_id}"
    return [
        ("DELETE", base, None),
        ("GET", f"{base}/members", None),
        ("PUT", f"{base}/members/someone", {"role": "member"}),
        ("DELETE", f"{base}/members/someone", None),
        ("GET", f"{base}/settings", None),
        ("PATCH", f"{base}/settings", {"theme": "dark"}),
        ("PUT", f"{base}/settings", {"theme": "dark"}),
        ("GET", f"{base}/settings/changes", None),
        ("POST", f"{base}/settings/revert", {"revision": 0}),
        ("GET", f"{base}/settings/events", None),
        ("GET", f"{base}/secrets/openai", None),
        ("GET", f"/v1/settings/effective?team={team_id}", None),
    ]


def test_a_team_is_created_listed_and_shared_with_roles(server: ServerProcess) -> None:
    with server.client() as http:
        owner, bob = signup(http), signup(http)
        team_id = create_team(http, owner, "Acme")
        listed = http.get("/v1/teams", headers=owner.headers).json()["teams"]
        assert [(t["team_id"], t["name"], t["role"]) for t in listed] == [
            (team_id, "Acme", "owner")
        ]
        assert http.get("/v1/teams", headers=bob.headers).json() == {"teams": []}
        # Added by username (built-in users), then re-roled by id.
        response = http.put(
            f"/v1/teams/{team_id}/members/{bob.username}",
            json={"username": bob.username, "role": "viewer"},
            headers=owner.headers,
        )
        assert response.status_code == 200, response.text
        add_member(http, team_id, owner, bob, "member")
        members = http.get(f"/v1/teams/{team_id}/members", headers=bob.headers).json()
        assert {(m["user_id"], m["role"], m["username"]) for m in members["members"]} == {
            (owner.user_id, "owner", owner.username),
            (bob.user_id, "member", bob.username),
        }
        assert http.get("/v1/teams", headers=bob.headers).json()["teams"][0]["role"] == "member"
        # The team's document is separate from both members' own.
        patched = http.patch(
            f"/v1/teams/{team_id}/settings", json={"theme": "dark"}, headers=bob.headers
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["revision"] == 1
        got = http.get(f"/v1/teams/{team_id}/settings", headers=owner.headers)
        assert got.json()["settings"]["theme"] == "dark"
        assert got.headers["etag"] == '"1"'
        assert http.get("/v1/settings", headers=bob.headers).json()["revision"] == 0
        changes = http.get(f"/v1/teams/{team_id}/settings/changes", headers=owner.headers)
        assert [c["patch"] for c in changes.json()["changes"]] == [{"theme": "dark"}]
    _logged(server, "team_created", "team_member_added", "team_member_role_changed")


def test_a_non_member_gets_404_on_every_team_route(server: ServerProcess) -> None:
    with server.client() as http:
        owner, stranger = signup(http), signup(http)
        team_id = create_team(http, owner)
        missing = str(uuid.uuid4())
        for target in (team_id, missing, "not-a-uuid"):
            for method, path, body in _team_routes(target):
                response = http.request(method, path, json=body, headers=stranger.headers)
                assert response.status_code == 404, (method, path, response.text)
                assert response.json()["error"]["code"] == "not_found", (method, path)
        # Nothing changed for the owner.
        got = http.get(f"/v1/teams/{team_id}/settings", headers=owner.headers).json()
        assert got["revision"] == 0


def test_roles_decide_who_may_write_what(server: ServerProcess) -> None:
    with server.client() as http:
        owner, admin, member, viewer = (signup(http) for _ in range(4))
        team_id = create_team(http, owner)
        for user, role in ((admin, "admin"), (member, "member"), (viewer, "viewer")):
            add_member(http, team_id, owner, user, role)
        settings = f"/v1/teams/{team_id}/settings"
        secret = "sk-team-secret-0123456789"
        ok = http.patch(settings, json={"api_keys": {"openai": secret}}, headers=admin.headers)
        assert ok.status_code == 200, ok.text
        # A member writes the four fields, but not api_keys: 403 with the path.
        refused = http.patch(
            settings,
            json={"theme": "dark", "api_keys": {"openai": "sk-other-0123456789"}},
            headers=member.headers,
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
        assert refused.json()["error"]["details"] == {"path": "/api_keys/openai"}
        deleting = http.patch(settings, json={"api_keys": None}, headers=member.headers)
        assert deleting.status_code == 403
        assert deleting.json()["error"]["details"] == {"path": "/api_keys"}
        allowed = http.patch(
            settings,
            json={"language": "fr", "preferences": {"a": 1}, "ai_providers": {"default": "x"}},
            headers=member.headers,
        )
        assert allowed.status_code == 200, allowed.text
        # A viewer writes nothing: PATCH, PUT and revert are refused.
        for method, path, body, extra in (
            ("PATCH", settings, {"preferences": {"b": 2}}, {}),
            ("PUT", settings, {"theme": "dark"}, {"If-Match": '"2"'}),
            ("POST", f"{settings}/revert", {"revision": 0}, {}),
        ):
            response = http.request(method, path, json=body, headers={**viewer.headers, **extra})
            assert response.status_code == 403, (method, response.text)
            assert response.json()["error"]["code"] == "forbidden"
            assert "path" in response.json()["error"]["details"]
        # A member may not PUT the whole document (it replaces api_keys too).
        put = http.put(
            settings, json={"theme": "dark"}, headers={**member.headers, "If-Match": '"2"'}
        )
        assert put.status_code == 403
        # The secret is masked for every role, and plaintext appears in no answer.
        for user in (owner, admin, member, viewer):
            body = http.get(settings, headers=user.headers)
            assert secret not in body.text
            key = body.json()["settings"]["api_keys"]["openai"]
            assert key["set"] is True and key["last4"] == secret[-4:]
        changes = http.get(f"{settings}/changes", headers=viewer.headers)
        assert secret not in changes.text
        assert http.get(settings, headers=owner.headers).json()["revision"] == 2


def test_managing_members_follows_the_roles(server: ServerProcess) -> None:
    with server.client() as http:
        owner, admin, member, other = (signup(http) for _ in range(4))
        team_id = create_team(http, owner)
        add_member(http, team_id, owner, admin, "admin")
        add_member(http, team_id, admin, member, "member")  # admins add members
        base = f"/v1/teams/{team_id}/members"
        # A member manages nobody; an admin does not manage owners.
        assert (
            http.put(f"{base}/{other.user_id}", json={"role": "viewer"}, headers=member.headers)
        ).status_code == 403
        assert (
            http.put(f"{base}/{other.user_id}", json={"role": "owner"}, headers=admin.headers)
        ).status_code == 403
        assert http.delete(f"{base}/{owner.user_id}", headers=admin.headers).status_code == 403
        assert http.delete(f"{base}/{admin.user_id}", headers=member.headers).status_code == 403
        # Anyone may leave.
        assert http.delete(f"{base}/{member.user_id}", headers=member.headers).status_code == 204
        assert http.get(base, headers=member.headers).status_code == 404
        bad = http.put(f"{base}/{other.user_id}", json={"role": "boss"}, headers=owner.headers)
        assert bad.status_code == 422
    _logged(server, "team_member_removed")


def test_the_last_owner_cannot_leave_or_step_down(server: ServerProcess) -> None:
    with server.client() as http:
        owner, second = signup(http), signup(http)
        team_id = create_team(http, owner)
        base = f"/v1/teams/{team_id}/members"
        leave = http.delete(f"{base}/{owner.user_id}", headers=owner.headers)
        assert leave.status_code == 409
        assert leave.json()["error"]["code"] == "last_owner"
        demote = http.put(f"{base}/{owner.user_id}", json={"role": "admin"}, headers=owner.headers)
        assert demote.status_code == 409
        assert demote.json()["error"]["code"] == "last_owner"
        add_member(http, team_id, owner, second, "owner")
        assert http.delete(f"{base}/{owner.user_id}", headers=owner.headers).status_code == 204
        members = http.get(base, headers=second.headers).json()["members"]
        assert [(m["user_id"], m["role"]) for m in members] == [(second.user_id, "owner")]


def test_team_writes_are_exactly_once_and_merge_like_personal_ones(server: ServerProcess) -> None:
    with server.client() as http:
        owner, member = signup(http), signup(http)
        team_id = create_team(http, owner)
        add_member(http, team_id, owner, member, "member")
        settings = f"/v1/teams/{team_id}/settings"
        key = {"Idempotency-Key": "m-" + uuid.uuid4().hex, "X-Client-Id": "c1"}
        first = http.patch(
            settings, json={"preferences": {"a": 1}}, headers={**member.headers, **key}
        )
        again = http.patch(
            settings, json={"preferences": {"a": 1}}, headers={**member.headers, **key}
        )
        assert first.json()["revision"] == again.json()["revision"] == 1
        reused = http.patch(
            settings, json={"preferences": {"a": 2}}, headers={**member.headers, **key}
        )
        assert reused.status_code == 422
        assert reused.json()["error"]["code"] == "idempotency_key_reused"
        # Two edits on the same base to different leaves both survive; a concurrent edit of
        # the same leaf with an older time loses and is reported.
        base = {"X-Base-Revision": "1"}
        http.patch(
            settings,
            json={"preferences": {"b": 1}},
            headers={**owner.headers, **base, "X-Client-Id": "o", "X-Edited-At": "2000"},
        )
        lost = http.patch(
            settings,
            json={"preferences": {"b": 9, "c": 1}},
            headers={**member.headers, **base, "X-Client-Id": "m", "X-Edited-At": "1000"},
        )
        assert lost.json()["conflicts"][0]["path"] == "/preferences/b"
        assert lost.json()["settings"]["preferences"] == {"a": 1, "b": 1, "c": 1}
        revert = http.post(f"{settings}/revert", json={"revision": 1}, headers=member.headers)
        assert revert.status_code == 200, revert.text
        assert revert.json()["settings"]["preferences"] == {"a": 1}
        strict = http.patch(
            settings, json={"theme": "dark"}, headers={**owner.headers, "If-Match": '"1"'}
        )
        assert strict.status_code == 412


def test_effective_settings_put_the_user_over_the_team(server: ServerProcess) -> None:
    with server.client() as http:
        owner, member = signup(http), signup(http)
        team_id = create_team(http, owner)
        add_member(http, team_id, owner, member, "member")
        http.patch(
            f"/v1/teams/{team_id}/settings",
            json={
                "theme": "dark",
                "language": "de",
                "preferences": {"a": 1, "b": {"c": 1, "d": 1}},
                "api_keys": {"shared": "sk-shared-0123456789", "mine": "sk-team-mine-0123456"},
            },
            headers=owner.headers,
        )
        http.patch(
            "/v1/settings",
            json={
                "language": "fr",
                "preferences": {"b": {"d": 2}},
                "api_keys": {"mine": "sk-own-mine-01234567"},
            },
            headers=member.headers,
        )
        body = http.get(f"/v1/settings/effective?team={team_id}", headers=member.headers)
        assert body.status_code == 200, body.text
        settings = body.json()["settings"]
        assert settings["theme"] == "dark"
        assert settings["language"] == "fr"
        assert settings["preferences"] == {"a": 1, "b": {"c": 1, "d": 2}}
        assert settings["api_keys"]["shared"]["last4"] == "6789"
        assert settings["api_keys"]["mine"]["last4"] == "4567"
        assert "sk-" not in body.text
        assert body.json()["team_revision"] == 1


def test_only_a_service_token_reads_a_team_secret(server: ServerProcess) -> None:
    with server.client() as http:
        owner, stranger = signup(http), signup(http)
        team_id = create_team(http, owner)
        secret = "sk-team-openai-abcdef123456"
        http.patch(
            f"/v1/teams/{team_id}/settings",
            json={"api_keys": {"openai": secret}},
            headers=owner.headers,
        )
        path = f"/v1/teams/{team_id}/secrets/openai"
        as_owner = http.get(path, headers=owner.headers)
        assert as_owner.status_code == 403 and secret not in as_owner.text
        assert http.get(path, headers=stranger.headers).status_code == 404
        service = {"Authorization": f"Bearer {service_token()}"}
        read = http.get(path, headers=service)
        assert read.status_code == 200, read.text
        assert read.json() == {"team_id": team_id, "name": "openai", "value": secret}
        assert http.get(f"/v1/teams/{team_id}/secrets/none", headers=service).status_code == 404
        # The team's document is not a user's: the service user routes refuse its key.
        refused = http.get(f"/v1/users/team:{team_id}/settings", headers=service)
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "invalid_user_id"
    _logged(server, "team_secret_read")
    assert secret not in server.log_text()


def test_deleting_a_team_shreds_its_data_key(backend: Backend, tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    proc = backend.server(tmp_path / "data")
    proc.start()
    with proc.client() as http:
        owner, member = signup(http), signup(http)
        team_id = create_team(http, owner)
        add_member(http, team_id, owner, member, "viewer")
        http.patch(
            f"/v1/teams/{team_id}/settings",
            json={"theme": "dark", "api_keys": {"openai": "sk-doomed-0123456789"}},
            headers=owner.headers,
        )
        key = f"team:{team_id}"
        before = doc_rows(backend, proc, key)
        assert before["data_keys"] == 1 and before["user_preferences"] == 1
        assert http.delete(f"/v1/teams/{team_id}", headers=member.headers).status_code == 403
        assert http.delete(f"/v1/teams/{team_id}", headers=owner.headers).status_code == 204
        assert doc_rows(backend, proc, key) == dict.fromkeys(before, 0)
        service = {"Authorization": f"Bearer {service_token()}"}
        assert http.get(f"/v1/teams/{team_id}/secrets/openai", headers=service).status_code == 404
        assert http.get(f"/v1/teams/{team_id}/settings", headers=owner.headers).status_code == 404
        assert http.get("/v1/teams", headers=member.headers).json() == {"teams": []}
    _logged(proc, "team_deleted")


def test_team_limits_are_configurable(backend: Backend, tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    proc = backend.server(tmp_path / "data", max_teams_per_user=2, max_team_members=2)
    proc.start()
    with proc.client() as http:
        owner, a, b = signup(http), signup(http), signup(http)
        team_id = create_team(http, owner)
        create_team(http, owner)
        third = http.post("/v1/teams", json={"name": "x"}, headers=owner.headers)
        assert third.status_code == 409
        assert third.json()["error"]["code"] == "limit_reached"
        add_member(http, team_id, owner, a, "member")
        full = http.put(
            f"/v1/teams/{team_id}/members/{b.user_id}",
            json={"role": "member"},
            headers=owner.headers,
        )
        assert full.status_code == 409
        assert full.json()["error"]["code"] == "limit_reached"
