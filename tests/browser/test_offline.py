"""Offline: edits are kept (across reloads too), the status says so, and they are saved once."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.helpers import (
    SERVER_SETTINGS,
    FrameLog,
    FreezableProxy,
    api_get,
    changes_since,
    new_user,
    open_context,
    open_page,
    refresh_cookie,
    sign_in,
    wait_status,
    wait_until,
)
from tests.support.idp import audit_events
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

# Short timings for these tests only; the library's defaults stay 1.5 s / 5 s / 10 s.
FAST = "autoSaveDelay=200&heartbeatInterval=400&heartbeatTimeout=1500&maxReconnectDelay=800"


def _ai(server: ServerProcess, token: str) -> object:
    return api_get(server, token)["settings"]["ai_providers"]


def test_an_offline_device_keeps_its_edits_and_saves_them_exactly_once_when_back(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    user = new_user(shared_server, "offline")
    context_a = open_context(browser, contexts, url, user.session)
    a = open_page(context_a, url, FAST)
    b = open_page(open_context(browser, contexts, url, sign_in(shared_server, user)), url, FAST)
    revision = api_get(shared_server, user.token)["revision"]

    context_a.set_offline(True)
    wait_status(a, "Offline", timeout=10)
    a.get_by_label("Model").fill("written-offline")
    a.get_by_label("Theme").select_option("dark")
    expect(a.locator("html")).to_have_attribute("data-theme", "dark")  # applied at once
    expect(a.locator("#status-text")).to_have_text(re.compile(r"^Offline — [12] unsaved changes?$"))
    expect(a.locator("#status-live")).to_have_text(re.compile(r"^Offline — "))

    # A secret is never queued: refused at once, with words that say what to do.
    a.get_by_label("OpenAI API key").fill("sk-offline-0123456789abcd")
    a.get_by_role("button", name="Save key for OpenAI").click()
    expect(a.locator("#key-openai-error")).to_have_text(
        "API keys are never stored offline: retry when the connection is back"
    )
    expect(a.get_by_label("OpenAI API key")).to_have_value("")
    stored = a.evaluate("JSON.stringify(Object.assign({}, localStorage))")
    assert "sk-offline-0123456789abcd" not in stored

    time.sleep(0.5)  # time enough for a leak to reach the server or the other device
    assert api_get(shared_server, user.token)["revision"] == revision
    expect(b.get_by_label("Model")).to_have_value("")

    context_a.set_offline(False)
    wait_status(a, "Synced")
    expect(b.get_by_label("Model")).to_have_value("written-offline")
    expect(b.get_by_label("Theme")).to_have_value("dark")
    changes = changes_since(shared_server, user.token, revision)
    ids = [c["mutation_id"] for c in changes]
    assert len(ids) == len(set(ids)) and 1 <= len(ids) <= 2  # each edit exactly once
    assert api_get(shared_server, user.token)["revision"] == revision + len(ids)
    assert _ai(shared_server, user.token) == {
        "default": "openai",
        "openai": {"model": "written-offline"},
    }
    assert api_get(shared_server, user.token)["settings"]["api_keys"] == {}


def test_a_silent_network_is_noticed_by_the_heartbeat(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    proxy = FreezableProxy(shared_server.port)
    try:
        url = proxy.url  # the page, its socket and its API calls all go through the proxy
        user = new_user(shared_server, "heartbeat")
        page = open_page(open_context(browser, contexts, url, user.session), url, FAST)
        proxy.frozen.set()
        frozen_at = time.monotonic()
        wait_status(page, "Offline", timeout=10)
        assert time.monotonic() - frozen_at < 10
        # The socket never closed and the browser believes it is online: only the heartbeat
        # (a ping without a pong) can have said "offline".
        assert page.evaluate("navigator.onLine") is True
        page.get_by_label("Model").fill("typed-during-the-outage")
        expect(page.locator("#status-text")).to_have_text("Offline — 1 unsaved change")

        proxy.frozen.clear()
        wait_status(page, "Synced", timeout=10)
        assert _ai(shared_server, user.token) == {
            "default": "openai",
            "openai": {"model": "typed-during-the-outage"},
        }
    finally:
        proxy.close()


def test_edits_made_while_the_server_is_down_survive_a_reload_and_are_saved_once_back(
    browser: Browser, contexts: list[BrowserContext], tmp_path: Path
) -> None:
    server = ServerProcess(tmp_path / "data", **SERVER_SETTINGS)
    server.start()
    try:
        url = server.url
        user = new_user(server, "restart")
        context_a = open_context(browser, contexts, url, user.session)
        a = open_page(context_a, url, FAST)
        assert a.evaluate("navigator.serviceWorker.ready.then((r) => Boolean(r.active))") is True
        b = open_page(open_context(browser, contexts, url, sign_in(server, user)), url, FAST)
        a.get_by_label("Theme").select_option("dark")
        wait_until(lambda: api_get(server, user.token)["settings"]["theme"] == "dark")
        wait_status(a, "Synced")
        revision = api_get(server, user.token)["revision"]

        server.stop()
        wait_status(a, "Offline")
        wait_status(b, "Offline")
        a.get_by_label("Model").fill("written-while-down")
        expect(a.locator("#status-text")).to_have_text("Offline — 1 unsaved change")

        # The server is gone: the page comes from the service worker, the settings and the
        # pending edit from the client's cache.
        a.reload()
        expect(a.get_by_label("Model")).to_have_value("written-while-down")
        expect(a.get_by_label("Theme")).to_have_value("dark")
        expect(a.locator("html")).to_have_attribute("data-theme", "dark")
        wait_status(a, "Offline — 1 unsaved change")

        server.restart()
        wait_status(a, "Synced", timeout=15)
        expect(b.get_by_label("Model")).to_have_value("written-while-down", timeout=15_000)
        wait_status(b, "Synced", timeout=15)
        changes = changes_since(server, user.token, revision)
        assert [c["patch"] for c in changes] == [
            {"ai_providers": {"default": "openai", "openai": {"model": "written-while-down"}}}
        ]
    finally:
        server.stop()


def test_a_reload_while_offline_renders_the_cached_settings(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    user = new_user(shared_server, "reload")
    context = open_context(browser, contexts, url, user.session)
    page = open_page(context, url, FAST)
    assert page.evaluate("navigator.serviceWorker.ready.then((r) => Boolean(r.active))") is True
    # Online, the worker serves the network's page and refreshes its copy (network first).
    page.evaluate(STALE_COPY)
    page.reload()
    wait_status(page, "Synced")
    assert page.evaluate("navigator.serviceWorker.controller !== null") is True
    assert page.title() == "Settings — livesettings"
    assert "<title>Settings — livesettings</title>" in page.evaluate(CACHED_PAGE)
    page.get_by_label("Language").fill("de")
    page.get_by_label("Language").press("Enter")
    page.get_by_label("Model").fill("cached-model")
    wait_until(lambda: api_get(shared_server, user.token)["settings"]["language"] == "de")
    wait_status(page, "Synced")
    revision = api_get(shared_server, user.token)["revision"]

    context.set_offline(True)
    wait_status(page, "Offline")
    page.get_by_label("Max tokens").fill("4096")
    page.reload()
    _expect_rendered(page, language="de", model="cached-model", max_tokens="4096")
    wait_status(page, "Offline — 1 unsaved change")
    assert page.evaluate("livesettings.revision") == revision

    context.set_offline(False)
    wait_status(page, "Synced")
    assert _ai(shared_server, user.token) == {
        "default": "openai",
        "openai": {"model": "cached-model", "max_tokens": 4096},
    }
    assert len(changes_since(shared_server, user.token, revision)) == 1


STALE_COPY = """async () => {
  const cache = await caches.open("livesettings-shell-v1");
  await cache.put("/", new Response("<!doctype html><title>stale</title>", {
    headers: { "Content-Type": "text/html" },
  }));
}"""
CACHED_PAGE = """async () => {
  const cache = await caches.open("livesettings-shell-v1");
  return (await cache.match("/")).text();
}"""


def _expect_rendered(page: Page, *, language: str, model: str, max_tokens: str) -> None:
    expect(page.get_by_label("Language")).to_have_value(language)
    expect(page.get_by_label("Model")).to_have_value(model)
    expect(page.get_by_label("Max tokens")).to_have_value(max_tokens)


def test_an_ended_session_returns_to_sign_in_without_losing_unsaved_edits(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    user = new_user(shared_server, "ended")
    context = open_context(browser, contexts, url, user.session)
    page = open_page(context, url, "autoSaveDelay=off")
    page.get_by_label("Model").fill("kept-through-sign-in")
    expect(page.locator("#status-text")).to_have_text("Unsaved changes (1)")

    # Signed out everywhere from another device: this session's tokens stop working.
    other = sign_in(shared_server, user)
    response = httpx.post(
        f"{url}/v1/auth/logout", headers={"Authorization": f"Bearer {other['access_token']}"}
    )
    assert response.status_code == 204
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#signin-message")).to_have_text(
        "Your session has ended: sign in again. Your 1 unsaved change is kept on this device."
    )
    # The refused refresh cleared the cookie, and the page forgot who was signed in.
    assert refresh_cookie(context) is None
    assert page.evaluate("localStorage.getItem('livesettings:user')") is None
    assert _ai(shared_server, sign_in(shared_server, user)["access_token"]) == {}  # not saved

    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill("correct horse battery 42")
    page.get_by_role("button", name="Sign in", exact=True).click()
    session = sign_in(shared_server, user)
    wait_until(
        lambda: (
            _ai(shared_server, session["access_token"])
            == {"default": "openai", "openai": {"model": "kept-through-sign-in"}}
        ),
        what="the kept edit saved after signing in again",
    )
    expect(page.get_by_label("Model")).to_have_value("kept-through-sign-in")
    wait_status(page, "Synced")


def test_tabs_refresh_the_rotating_token_one_at_a_time(
    browser: Browser, contexts: list[BrowserContext], tmp_path: Path
) -> None:
    # 6 s tokens: refreshed 1.5 s before they expire. Each tab gets its own access token from
    # the one refresh cookie; two tabs sending the same cookie would revoke the whole family
    # (the server's reuse detection) and end the session.
    server = ServerProcess(tmp_path / "data", access_token_ttl=6, **SERVER_SETTINGS)
    server.start()
    try:
        url = server.url
        user = new_user(server, "refresh")
        context = open_context(browser, contexts, url, user.session)
        tabs, logs = [], []
        for _ in range(2):
            tab = context.new_page()
            logs.append(FrameLog(tab))
            tab.goto(url + "/?autoSaveDelay=200")
            wait_status(tab, "Synced")
            tabs.append(tab)

        def auth_tokens(log: FrameLog) -> list[str]:
            return [json.loads(f)["token"] for f in log.sent if f.startswith('{"type":"auth"')]

        # Two refreshes per tab: well past the first tokens' expiry.
        wait_until(
            lambda: all(len(auth_tokens(log)) >= 3 for log in logs),
            timeout=40,
            what="each tab refreshed its token twice",
            page=tabs[0],
        )
        for tab, log in zip(tabs, logs, strict=True):
            expect(tab.locator("#signin")).to_be_hidden()
            wait_status(tab, "Synced")
            # The same socket all along: re-authenticated in time, never cut for expiry.
            assert log.sockets == 1
        sent = [token for log in logs for token in auth_tokens(log)]
        assert user.token not in sent
        assert len(set(sent)) == len(sent)  # every tab its own tokens, each refresh a new one
        cookie = refresh_cookie(context)
        assert cookie is not None and cookie["value"] != user.session["refresh_token"]
        events = [e["event"] for e in audit_events(server.log_text())]
        assert "refresh_reuse" not in events

        tabs[1].get_by_label("Model").fill("after-refresh")
        token = sign_in(server, user)["access_token"]
        wait_until(
            lambda: (
                _ai(server, token) == {"default": "openai", "openai": {"model": "after-refresh"}}
            ),
            what="saved with the refreshed token",
        )
    finally:
        server.stop()
