"""Where the page keeps its tokens: the refresh token in an HttpOnly, SameSite=Strict cookie
scoped to /v1/auth, the access token in memory — never in localStorage, sessionStorage or
IndexedDB, and no page of another origin can spend the cookie."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from livesettings.server.cookies import REFRESH_COOKIE
from tests.browser.helpers import (
    PASSWORD,
    new_user,
    open_context,
    open_page,
    refresh_cookie,
    sign_in,
    wait_status,
)
from tests.support.idp import audit_events
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

STORAGE_DUMP = """async () => {
  const dump = [JSON.stringify(Object.assign({}, localStorage)),
                JSON.stringify(Object.assign({}, sessionStorage))];
  const names = [];
  for (const { name } of await indexedDB.databases()) {
    names.push(name);
    const db = await new Promise((resolve, reject) => {
      const request = indexedDB.open(name);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    for (const store of db.objectStoreNames) {
      const values = await new Promise((resolve) => {
        const request = db.transaction(store).objectStore(store).getAll();
        request.onsuccess = () => resolve(request.result);
      });
      dump.push(name, store, JSON.stringify(values));
    }
    db.close();
  }
  return { names, dump: dump.join("\\n") };
}"""

# What an older version of the page left behind: the whole session in both storages and in
# IndexedDB.
LEGACY_SESSION = """async (session) => {
  const text = JSON.stringify(session);
  localStorage.setItem("livesettings:session", text);
  sessionStorage.setItem("livesettings:session", text);
  await new Promise((resolve, reject) => {
    const request = indexedDB.open("livesettings", 1);
    request.onupgradeneeded = () => request.result.createObjectStore("kv");
    request.onerror = () => reject(request.error);
    request.onsuccess = () => {
      const db = request.result;
      const tx = db.transaction("kv", "readwrite");
      tx.objectStore("kv").put(session, "livesettings:session");
      tx.oncomplete = () => { db.close(); resolve(); };
    };
  });
}"""


def _storage(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(STORAGE_DUMP)
    return result


def _assert_no_token(page: Page, *tokens: str) -> None:
    stored = _storage(page)
    for token in tokens:
        assert token not in stored["dump"]
    assert "eyJ" not in stored["dump"]  # no JWT at all, whichever
    assert "livesettings" not in stored["names"]  # the older versions' database is gone


def _refresh_status(server: ServerProcess, cookie_value: str) -> int:
    response = httpx.post(
        server.url + "/v1/auth/refresh",
        json={},
        headers={"X-Refresh-Cookie": "1", "Cookie": f"{REFRESH_COOKIE}={cookie_value}"},
    )
    return response.status_code


def test_the_page_keeps_its_tokens_out_of_storage_and_the_refresh_token_in_the_cookie(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    user = new_user(shared_server, "tokens")
    context = open_context(browser, contexts, url)
    page = open_page(context, url, synced=False)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    legacy = sign_in(shared_server, user)
    page.evaluate(LEGACY_SESSION, legacy)
    assert legacy["access_token"] in _storage(page)["dump"]  # the check sees such data

    # On load, whatever an older version stored is removed.
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.wait_for_function("indexedDB.databases().then((d) => d.length === 0)")
    _assert_no_token(page, legacy["access_token"], legacy["refresh_token"])

    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    wait_status(page, "Synced")
    access = page.evaluate("livesettings._token")  # in the page's memory only
    assert access.startswith("eyJ")
    cookie = refresh_cookie(context)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/v1/auth"
    assert cookie["secure"] is False  # plain http on loopback (https sets Secure)
    assert 29 * 86400 < cookie["expires"] - time.time() <= 30 * 86400
    assert len(cookie["value"]) >= 40
    _assert_no_token(page, access, cookie["value"])
    # Scripts cannot see it: HttpOnly (and the page's path is outside /v1/auth anyway).
    seen = page.evaluate("document.cookie")
    assert REFRESH_COOKIE not in seen and cookie["value"] not in seen
    assert page.evaluate("localStorage.getItem('livesettings:user')") is not None

    # A reload keeps the user signed in: a new access token from the (rotated) cookie.
    page.reload()
    wait_status(page, "Synced")
    expect(page.locator("#signin")).to_be_hidden()
    reloaded = page.evaluate("livesettings._token")
    assert reloaded != access
    rotated = refresh_cookie(context)
    assert rotated is not None and rotated["value"] != cookie["value"]
    _assert_no_token(page, access, reloaded, cookie["value"], rotated["value"])

    # Signing out clears the cookie; the refresh token it held is dead on the server too.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert refresh_cookie(context) is None
    assert _refresh_status(shared_server, rotated["value"]) == 401
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    _assert_no_token(page, access, reloaded)


CROSS_ORIGIN_TRY = """async (target) => {
  const tries = [];
  try {
    const response = await fetch(target + "/v1/auth/refresh", {
      method: "POST",
      credentials: "include",
      headers: { "X-Refresh-Cookie": "1", "Content-Type": "application/json" },
      body: "{}",
    });
    tries.push(`read ${response.status}`);
  } catch {
    tries.push("blocked");
  }
  try {
    // A "simple" request needs no preflight; the header cannot go with it.
    await fetch(target + "/v1/auth/refresh", {
      method: "POST",
      mode: "no-cors",
      credentials: "include",
      headers: { "X-Refresh-Cookie": "1", "Content-Type": "text/plain" },
      body: "{}",
    });
    tries.push("sent");
  } catch {
    tries.push("failed");
  }
  return tries;
}"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_page_of_another_origin_cannot_spend_the_refresh_cookie(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    user = new_user(shared_server, "csrf")
    context = open_context(browser, contexts, url, user.session)
    page = open_page(context, url)
    before = refresh_cookie(context)
    assert before is not None

    # Two attacker pages in the same browser: another port of the same host (same site, so
    # SameSite does not stop the cookie there) and another site.
    for evil in (f"http://127.0.0.1:{_free_port()}", f"http://localhost:{shared_server.port}"):
        attacker = context.new_page()
        attacker.route(
            f"{evil}/attack",
            lambda route: route.fulfill(
                status=200, content_type="text/html", body="<!doctype html><title>x</title>"
            ),
        )
        attacker.goto(f"{evil}/attack")
        # The readable request never passes its preflight; the opaque one (its answer an
        # error the attacker cannot read, or a network error) carries no mode header.
        tries = attacker.evaluate(CROSS_ORIGIN_TRY, url)
        assert tries[0] == "blocked" and tries[1] in ("sent", "failed"), (evil, tries)
        attacker.close()

    # Neither attempt reached a refresh that used the cookie: it is the one the page left.
    after = refresh_cookie(context)
    assert after is not None and after["value"] == before["value"]
    assert "refresh_reuse" not in [e["event"] for e in audit_events(shared_server.log_text())]
    page.reload()
    wait_status(page, "Synced")
    expect(page.locator("#signin")).to_be_hidden()
