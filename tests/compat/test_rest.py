"""``/rest/v1/user_preferences``, the PostgREST subset, with plain HTTP against a real server on
each backend: the seed's row, arrays and single objects, inserts and upserts, PostgREST's column
replacement turned into versioned merges, sealed and masked API keys, row-level access, its
error bodies, and a REST write pushed to a livesettings client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.compat.conftest import ORIGIN, issue_token, new_email
from tests.support.server import TEST_JWT_SECRET, ServerProcess
from tests.support.ws import WsClient

PASSWORD = "correct horse 1"
OBJECT = "application/vnd.pgrst.object+json"
TABLE = "/rest/v1/user_preferences"
COLUMNS = [
    "id",
    "user_id",
    "theme",
    "language",
    "preferences",
    "ai_providers",
    "api_keys",
    "created_at",
    "updated_at",
]
SECRET = "sk-live-0123456789abcdefWXYZ"


@pytest.fixture(scope="module")
def anon(server: ServerProcess) -> str:
    return issue_token(server, "--anon")


@pytest.fixture(scope="module")
def service(server: ServerProcess) -> str:
    return issue_token(server, "--user", "backend", "--service")


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


class Person:
    """A user signed in through /auth/v1, with the headers supabase-js sends for it."""

    def __init__(self, http: httpx.Client, anon: str) -> None:
        answer = http.post(
            "/auth/v1/signup",
            json={"email": new_email(), "password": PASSWORD},
            headers={"apikey": anon},
        )
        assert answer.status_code == 200, answer.text
        session = answer.json()
        self.id: str = session["user"]["id"]
        self.token: str = session["access_token"]
        self.headers = {"apikey": anon, "Authorization": f"Bearer {self.token}"}
        self.own = {"Authorization": f"Bearer {self.token}"}

    def mine(self) -> str:
        return f"{TABLE}?select=*&user_id=eq.{self.id}"


def _settings(http: httpx.Client, person: Person) -> dict[str, Any]:
    answer = http.get("/v1/settings", headers=person.own)
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def _upsert(http: httpx.Client, person: Person, row: dict[str, Any]) -> httpx.Response:
    return http.post(
        f"{TABLE}?on_conflict=user_id",
        json={"user_id": person.id, **row},
        headers={
            **person.headers,
            "Prefer": "resolution=merge-duplicates,return=representation",
        },
    )


def test_reads_are_arrays_or_one_object(http: httpx.Client, anon: str) -> None:
    ada = Person(http, anon)
    empty = http.get(ada.mine(), headers=ada.headers)
    assert (empty.status_code, empty.json()) == (200, [])
    none = http.get(ada.mine(), headers={**ada.headers, "Accept": OBJECT})
    assert none.status_code == 406
    assert none.json() == {
        "code": "PGRST116",
        "details": "The result contains 0 rows",
        "hint": None,
        "message": "Cannot coerce the result to a single JSON object",
    }
    created = http.post(TABLE, json={"user_id": ada.id, "theme": "dark"}, headers=ada.headers)
    assert (created.status_code, created.text) == (201, "")
    rows = http.get(ada.mine(), headers=ada.headers).json()
    assert len(rows) == 1 and list(rows[0]) == COLUMNS
    row = rows[0]
    assert (row["user_id"], row["theme"], row["language"]) == (ada.id, "dark", "en")
    assert (row["preferences"], row["ai_providers"], row["api_keys"]) == ({}, {}, {})
    assert isinstance(row["id"], int) and row["created_at"] and row["updated_at"]
    one = http.get(ada.mine(), headers={**ada.headers, "Accept": OBJECT})
    assert one.status_code == 200 and one.json() == row
    assert one.headers["content-type"].startswith(OBJECT)
    picked = http.get(
        f"{TABLE}?select=theme,lang:language&user_id=eq.{ada.id}", headers=ada.headers
    )
    assert picked.json() == [{"theme": "dark", "lang": "en"}]
    by_id = http.get(f"{TABLE}?select=id&id=eq.{row['id']}", headers=ada.headers)
    assert by_id.json() == [{"id": row["id"]}]
    assert http.get(f"{TABLE}?id=eq.{row['id'] + 1000}", headers=ada.headers).json() == []
    counted = http.get(ada.mine(), headers={**ada.headers, "Prefer": "count=exact"})
    assert counted.headers["content-range"] == "0-0/1"
    assert http.head(ada.mine(), headers=ada.headers).status_code == 200
    # Without a filter a user reads its own row: row-level security chooses.
    assert http.get(TABLE, headers=ada.headers).json() == rows


def test_query_errors_are_postgrest_bodies(http: httpx.Client, anon: str) -> None:
    ada = Person(http, anon)
    cases = [
        (f"{TABLE}?select=nope", 400, "42703"),
        (f"{TABLE}?nope=eq.1", 400, "42703"),
        (f"{TABLE}?theme=neq.dark", 400, "PGRST100"),
        (f"{TABLE}?preferences=eq.x", 400, "PGRST100"),
        (f"{TABLE}?select=preferences->a", 400, "PGRST100"),
        (f"{TABLE}?or=(theme.eq.dark)", 400, "PGRST100"),
        ("/rest/v1/profiles?select=*", 404, "PGRST205"),
        ("/rest/v1/rpc/do_things", 404, "PGRST202"),
    ]
    for path, status, code in cases:
        answer = http.get(path, headers=ada.headers)
        assert answer.status_code == status, (path, answer.text)
        body = answer.json()
        assert set(body) == {"code", "details", "hint", "message"}, path
        assert body["code"] == code, (path, body)
    schema = http.get(TABLE, headers={**ada.headers, "Accept-Profile": "private"})
    assert (schema.status_code, schema.json()["code"]) == (406, "PGRST106")
    deleted = http.delete(ada.mine(), headers=ada.headers)
    assert deleted.status_code == 405


def test_tokens_and_the_apikey(http: httpx.Client, anon: str) -> None:
    ada = Person(http, anon)
    bare = http.get(ada.mine(), headers=ada.own)
    assert bare.status_code == 401 and bare.json()["message"] == "No API key found in request"
    by_query = http.get(f"{ada.mine()}&apikey={anon}", headers=ada.own)
    assert by_query.status_code == 200
    forged = http.get(ada.mine(), headers={"apikey": anon, "Authorization": "Bearer x.y.z"})
    assert (forged.status_code, forged.json()["code"]) == (401, "PGRST301")
    expired = jwt.encode({"sub": ada.id, "exp": int(time.time()) - 5}, TEST_JWT_SECRET)
    stale = http.get(ada.mine(), headers={"apikey": anon, "Authorization": f"Bearer {expired}"})
    assert stale.status_code == 401
    assert stale.json() == {
        "code": "PGRST303",
        "details": None,
        "hint": None,
        "message": "JWT expired",
    }
    bad_key = http.get(ada.mine(), headers={**ada.headers, "apikey": anon[:-3] + "abc"})
    assert (bad_key.status_code, bad_key.json()["code"]) == (401, "PGRST301")


def test_upsert_patch_and_column_replacement(http: httpx.Client, anon: str) -> None:
    ada = Person(http, anon)
    first = _upsert(
        http,
        ada,
        {
            "theme": "dark",
            "preferences": {"a": 1, "b": {"c": 2, "d": 3}},
            "ai_providers": {"default": "openai"},
            "updated_at": "2001-01-01T00:00:00Z",  # the server's column: ignored
        },
    )
    assert first.status_code == 201, first.text
    row = first.json()[0]
    assert row["preferences"] == {"a": 1, "b": {"c": 2, "d": 3}}
    assert not row["updated_at"].startswith("2001")
    revision = _settings(http, ada)["revision"]
    # An upsert of an existing row merges the columns sent; the others stay.
    second = _upsert(http, ada, {"language": "fr"})
    assert second.status_code == 201
    assert (second.json()[0]["language"], second.json()[0]["theme"]) == ("fr", "dark")
    assert second.json()[0]["id"] == row["id"]
    # A column sent replaces the column: keys left out are deleted (nested ones too).
    patched = http.patch(
        ada.mine(),
        json={"preferences": {"b": {"c": 20}, "e": [1, 2]}},
        headers={**ada.headers, "Prefer": "return=representation", "Accept": OBJECT},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["preferences"] == {"b": {"c": 20}, "e": [1, 2]}
    now = _settings(http, ada)
    assert now["settings"]["preferences"] == {"b": {"c": 20}, "e": [1, 2]}
    assert now["settings"]["ai_providers"] == {"default": "openai"}
    assert now["revision"] == revision + 2  # each write one versioned revision
    minimal = http.patch(ada.mine(), json={"theme": "light"}, headers=ada.headers)
    assert (minimal.status_code, minimal.text) == (204, "")
    same = http.patch(ada.mine(), json={"theme": "light"}, headers=ada.headers)
    assert same.status_code == 204
    assert _settings(http, ada)["revision"] == now["revision"] + 1  # no change, no revision
    reset = http.patch(
        ada.mine(),
        json={"preferences": None},
        headers={**ada.headers, "Prefer": "return=representation"},
    )
    assert reset.json()[0]["preferences"] == {}
    plain = http.post(TABLE, json={"user_id": ada.id}, headers=ada.headers)
    assert plain.status_code == 409 and plain.json()["code"] == "23505"
    ignored = http.post(
        TABLE,
        json={"user_id": ada.id, "theme": "dark"},
        headers={**ada.headers, "Prefer": "resolution=ignore-duplicates,return=representation"},
    )
    assert (ignored.status_code, ignored.json()) == (201, [])
    invalid = http.patch(ada.mine(), json={"theme": "purple"}, headers=ada.headers)
    assert invalid.status_code == 400 and invalid.json()["code"] == "22023"
    unknown = http.patch(ada.mine(), json={"colour": "red"}, headers=ada.headers)
    assert (unknown.status_code, unknown.json()["code"]) == (400, "PGRST204")
    moved = http.patch(ada.mine(), json={"user_id": "someone-else"}, headers=ada.headers)
    assert (moved.status_code, moved.json()["code"]) == (403, "42501")
    conflict = http.post(
        f"{TABLE}?on_conflict=theme",
        json={"user_id": ada.id},
        headers={**ada.headers, "Prefer": "resolution=merge-duplicates"},
    )
    assert (conflict.status_code, conflict.json()["code"]) == (400, "42P10")
    broken = http.patch(
        ada.mine(), content=b"{", headers={**ada.headers, "Content-Type": "application/json"}
    )
    assert (broken.status_code, broken.json()["code"]) == (400, "PGRST102")
    assert _settings(http, ada)["settings"]["theme"] == "light"


def test_api_keys_are_sealed_masked_kept_and_deleted(
    http: httpx.Client, anon: str, service: str
) -> None:
    ada = Person(http, anon)
    other = "sk-other-abcdefghijklmnop"
    made = _upsert(http, ada, {"api_keys": {"openai": SECRET, "anthropic": other}})
    assert made.status_code == 201
    assert SECRET not in made.text and other not in made.text
    keys = made.json()[0]["api_keys"]
    assert keys["openai"]["set"] is True and keys["openai"]["last4"] == "WXYZ"
    # Echoing the masked value back keeps the secret; leaving one out deletes it.
    kept = http.patch(
        ada.mine(),
        json={"api_keys": {"openai": keys["openai"]}, "theme": "dark"},
        headers={**ada.headers, "Prefer": "return=representation"},
    )
    assert kept.status_code == 200, kept.text
    assert kept.json()[0]["api_keys"] == {"openai": keys["openai"]}
    svc = {"Authorization": f"Bearer {service}"}
    secret = http.get(f"/v1/users/{ada.id}/secrets/openai", headers=svc)
    assert secret.status_code == 200 and SECRET in secret.text
    assert http.get(f"/v1/users/{ada.id}/secrets/anthropic", headers=svc).status_code == 404
    invented = http.patch(
        ada.mine(), json={"api_keys": {"mistral": {"set": True}}}, headers=ada.headers
    )
    assert (invented.status_code, invented.json()["code"]) == (400, "22023")
    for answer in (
        http.get(ada.mine(), headers=ada.headers),
        http.get("/v1/settings", headers=ada.own),
        http.get("/v1/settings/changes?since=0", headers=ada.own),
    ):
        assert SECRET not in answer.text and other not in answer.text


def test_row_level_access(http: httpx.Client, anon: str, service: str) -> None:
    ada, bob = Person(http, anon), Person(http, anon)
    assert _upsert(http, ada, {"theme": "dark"}).status_code == 201
    # Bob naming Ada's row sees and changes nothing.
    assert http.get(ada.mine(), headers=bob.headers).json() == []
    assert http.get(ada.mine(), headers={**bob.headers, "Accept": OBJECT}).status_code == 406
    blind = http.patch(
        ada.mine(),
        json={"theme": "light"},
        headers={**bob.headers, "Prefer": "return=representation"},
    )
    assert (blind.status_code, blind.json()) == (200, [])
    assert _settings(http, ada)["settings"]["theme"] == "dark"
    foreign = http.post(TABLE, json={"user_id": ada.id, "theme": "light"}, headers=bob.headers)
    assert (foreign.status_code, foreign.json()["code"]) == (403, "42501")
    # The anon key alone reaches no row.
    as_anon = {"apikey": anon, "Authorization": f"Bearer {anon}"}
    assert http.get(ada.mine(), headers=as_anon).json() == []
    refused = http.post(TABLE, json={"user_id": ada.id}, headers=as_anon)
    assert (refused.status_code, refused.json()["code"]) == (401, "42501")
    # A service token reaches any row it names.
    svc = {"apikey": anon, "Authorization": f"Bearer {service}"}
    assert http.get(ada.mine(), headers=svc).json()[0]["theme"] == "dark"
    assert http.get(TABLE, headers=svc).status_code == 400
    written = http.patch(ada.mine(), json={"language": "de"}, headers=svc)
    assert written.status_code == 204
    assert _settings(http, ada)["settings"]["language"] == "de"
    created = http.post(TABLE, json={"user_id": bob.id, "theme": "system"}, headers=svc)
    assert created.status_code == 201
    assert _settings(http, bob)["settings"]["theme"] == "system"
    both = http.post(
        f"{TABLE}?on_conflict=user_id",
        json=[{"user_id": ada.id, "language": "it"}, {"user_id": bob.id, "language": "nl"}],
        headers={**svc, "Prefer": "resolution=merge-duplicates,return=representation"},
    )
    assert both.status_code == 201, both.text
    assert [(r["user_id"], r["language"]) for r in both.json()] == [(ada.id, "it"), (bob.id, "nl")]
    twice = http.post(
        f"{TABLE}?on_conflict=user_id",
        json=[{"user_id": ada.id}, {"user_id": ada.id}],
        headers={**svc, "Prefer": "resolution=merge-duplicates"},
    )
    assert (twice.status_code, twice.json()["code"]) == (400, "21000")


def test_a_rest_write_is_pushed_to_livesettings_clients(
    server: ServerProcess, http: httpx.Client, anon: str
) -> None:
    ada = Person(http, anon)
    assert _upsert(http, ada, {"preferences": {"a": 1, "b": 2}}).status_code == 201
    with WsClient(server.ws_url) as ws:
        assert ws.auth(ada.token)["type"] == "auth_ok"
        revision = ws.subscribe(None)[-1]["revision"]
        answer = http.patch(
            ada.mine(),
            json={"preferences": {"b": 3}, "api_keys": {"openai": SECRET}},
            headers=ada.headers,
        )
        assert answer.status_code == 204
        change = ws.recv_until("change")[-1]
        assert change["revision"] == revision + 1
        assert change["client_id"] == "rest"
        assert change["patch"]["preferences"] == {"a": None, "b": 3}
        assert change["patch"]["api_keys"]["openai"]["set"] is True
        assert SECRET not in str(ws.frames)


def test_cors_lets_supabase_js_through(compat_server: ServerProcess) -> None:
    sent = [
        "apikey",
        "authorization",
        "x-client-info",
        "content-type",
        "prefer",
        "accept-profile",
        "content-profile",
        "x-supabase-api-version",
        "x-retry-count",
    ]
    with compat_server.client() as http:
        for method, path in (("PATCH", TABLE), ("POST", "/auth/v1/token"), ("HEAD", TABLE)):
            preflight = http.options(
                path,
                headers={
                    "Origin": ORIGIN,
                    "Access-Control-Request-Method": method,
                    "Access-Control-Request-Headers": ",".join(sent),
                },
            )
            assert preflight.status_code == 200, (path, preflight.text)
            allowed = preflight.headers["access-control-allow-headers"].lower()
            assert all(name in allowed for name in sent), allowed
            assert method in preflight.headers["access-control-allow-methods"]
        anon = issue_token(compat_server, "--anon")
        answer = http.get(TABLE, headers={"Origin": ORIGIN, "apikey": anon})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        exposed = answer.headers["access-control-expose-headers"].lower()
        assert "content-range" in exposed and "x-supabase-api-version" in exposed
