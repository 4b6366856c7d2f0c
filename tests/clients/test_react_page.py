"""The React package's example in Chromium: the seed's settings page against a real server.

The example is bundled with esbuild against real React 19 and served from its own origin;
the server runs as a process on a random port, with that origin allowed.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.browser.helpers import (
    ARTIFACTS,
    PASSWORD,
    SERVER_SETTINGS,
    FrameLog,
    api_get,
    new_user,
    sign_in,
    wait_until,
)
from tests.clients.react_support import (
    app_url,
    new_context,
    open_app,
    states_seen,
    wait_state,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

# Short heartbeat timings for these tests only; the library's defaults stay 5 s / 10 s.
FAST = {"heartbeatInterval": 400, "heartbeatTimeout": 1500, "maxReconnectDelay": 800}


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(Path(ARTIFACTS) / f"react-{name}.png"), full_page=True)


def _indicator(page: Page) -> Locator:
    return page.get_by_role("status")


def _no_errors(*pages: Page) -> None:
    for page in pages:
        assert page.errors == []  # type: ignore[attr-defined]


def test_two_tabs_follow_each_other_and_the_indicator_walks_to_synced(
    browser: Browser, contexts: list[BrowserContext], server: ServerProcess, site: str
) -> None:
    user = new_user(server, "react-tabs")
    context = new_context(browser, contexts)
    url = app_url(site, server.url, user.token)
    one = open_app(context, url)
    two = open_app(context, url)
    expect(_indicator(one)).to_contain_text("Synced")
    expect(_indicator(one).locator("time")).to_have_count(1)  # the last sync time

    one.get_by_label("Theme").select_option("dark")
    expect(_indicator(one)).to_have_attribute("data-state", "unsaved")  # the 1.5 s delay
    expect(_indicator(one)).to_contain_text("Unsaved changes")
    expect(two.get_by_label("Theme")).to_have_value("dark")  # the other tab, at once
    wait_state(one, "synced")
    seen = states_seen(one)
    walk = seen[seen.index("unsaved Unsaved changes") :]
    assert walk[:3] == ["unsaved Unsaved changes", "syncing Saving…", "synced Synced"], seen
    assert api_get(server, user.token)["settings"]["theme"] == "dark"

    two.get_by_label("AI provider").select_option("anthropic")
    two.get_by_label("Model").fill("claude-sonnet-4")
    expect(one.get_by_label("AI provider")).to_have_value("anthropic")
    expect(one.get_by_label("Model")).to_have_value("claude-sonnet-4")
    wait_state(two, "synced")
    wait_until(
        lambda: (
            api_get(server, user.token)["settings"]["ai_providers"]
            == {"default": "anthropic", "anthropic": {"model": "claude-sonnet-4"}}
        ),
        what="the model saved",
    )

    # A key is shown by its last four characters only, in both tabs, and never as plaintext.
    one.get_by_label("Anthropic API key").fill("sk-ant-0123456789-wxyz")
    one.get_by_role("button", name="Save key for Anthropic").click()
    expect(two.locator('[data-key="anthropic"]')).to_contain_text("Saved key ending in wxyz")
    expect(one.locator('[data-key="anthropic"]')).to_contain_text("Saved key ending in wxyz")
    for page in (one, two):
        assert "sk-ant-0123456789-wxyz" not in page.content()
    wait_state(one, "synced")
    _shot(one, "tabs")
    _no_errors(one, two)


def test_the_example_signs_in_with_its_form(
    browser: Browser, contexts: list[BrowserContext], server: ServerProcess, site: str
) -> None:
    user = new_user(server, "react-signin")
    page = open_app(
        new_context(browser, contexts),
        f"{site}/#" + urlencode({"server": server.url}),
        synced=False,
    )
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_count(1)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    wait_state(page, "synced")
    page.get_by_label("Theme").select_option("system")
    wait_until(
        lambda: api_get(server, user.token)["settings"]["theme"] == "system", what="theme saved"
    )
    # The wrong password's 401 is the only error the browser reported.
    assert [e for e in page.errors if "401" not in e] == []  # type: ignore[attr-defined]


def test_offline_shows_offline_and_edits_are_saved_when_back(
    browser: Browser, contexts: list[BrowserContext], server: ServerProcess, site: str
) -> None:
    user = new_user(server, "react-offline")
    context = new_context(browser, contexts)
    page = open_app(context, app_url(site, server.url, user.token, **FAST))

    context.set_offline(True)
    wait_state(page, "offline")
    expect(_indicator(page)).to_contain_text("Offline")
    page.get_by_label("Model").fill("written-offline")
    expect(_indicator(page)).to_contain_text(re.compile(r"Offline — 1 unsaved change"))
    # A key is never queued offline: refused at once, in words.
    page.get_by_label("OpenAI API key").fill("sk-offline-0123456789abcd")
    page.get_by_role("button", name="Save key for OpenAI").click()
    expect(page.locator('[data-key="openai"] [role="alert"]')).to_have_text(
        "API keys are never stored offline: retry when the connection is back"
    )
    _shot(page, "offline")

    context.set_offline(False)
    wait_state(page, "synced", timeout=15)
    stored = api_get(server, user.token)["settings"]
    assert stored["ai_providers"]["openai"]["model"] == "written-offline"
    assert stored["api_keys"] == {}


def test_an_ended_session_is_shown_as_an_error(
    browser: Browser, contexts: list[BrowserContext], server: ServerProcess, site: str
) -> None:
    user = new_user(server, "react-ended")
    session = sign_in(server, user)
    url = app_url(
        site, server.url, session["access_token"], refreshToken=session["refresh_token"], **FAST
    )
    page = open_app(new_context(browser, contexts), url)
    with server.client() as client:  # signed out elsewhere: every session of the user ends
        response = client.post(
            "/v1/auth/logout", headers={"Authorization": f"Bearer {session['access_token']}"}
        )
        assert response.status_code == 204
    wait_state(page, "error")
    expect(_indicator(page).locator('[data-part="label"]')).to_have_text(
        "Error: Your session has ended: sign in again."
    )
    # The seed page's own line says the same, from useSettingsSync's syncError.
    expect(
        page.get_by_text("Error: Your session has ended: sign in again.", exact=True)
    ).to_have_count(2)


def test_save_now_and_refresh_with_manual_saving(
    browser: Browser, contexts: list[BrowserContext], server: ServerProcess, site: str
) -> None:
    user = new_user(server, "react-manual")
    context = new_context(browser, contexts)
    # The token as an async function (a new one on each render: the client stays).
    page = open_app(context, app_url(site, server.url, user.token, manual=1, tokenAs="function"))
    revision = api_get(server, user.token)["revision"]

    page.get_by_label("Model").fill("saved-by-hand")
    expect(_indicator(page)).to_have_attribute("data-state", "unsaved")
    time.sleep(2.0)  # longer than the default auto-save delay: nothing is sent without a click
    assert api_get(server, user.token)["revision"] == revision
    expect(_indicator(page)).to_have_attribute("data-state", "unsaved")

    page.get_by_role("button", name="Save Now").click()
    wait_state(page, "synced")
    assert api_get(server, user.token)["settings"]["ai_providers"]["openai"]["model"] == (
        "saved-by-hand"
    )

    # Refresh: a reload of the whole document from the server (a snapshot), where a page
    # load with a cache only asks for what it missed.
    frames = FrameLog(page)
    page.reload()
    wait_state(page, "synced")
    assert _frames(frames.received, "snapshot") == []
    assert [f for f in _frames(frames.sent, "subscribe") if f["since"] is None] == []
    page.get_by_role("button", name="Refresh").click()
    wait_until(
        lambda: (
            _frames(frames.received, "snapshot")
            and [f for f in _frames(frames.sent, "subscribe") if f["since"] is None]
        ),
        what="a reload from the server",
        page=page,
    )
    # Many renders with a new token function each, and still the one client and socket.
    assert frames.sockets == 1
    wait_state(page, "synced")
    expect(page.get_by_label("Model")).to_have_value("saved-by-hand")
    _no_errors(page)


def _frames(log: list[str], kind: str) -> list[dict[str, object]]:
    frames = [json.loads(text) for text in log]
    return [f for f in frames if isinstance(f, dict) and f.get("type") == kind]


def test_a_conflict_is_shown_to_the_side_that_lost(
    browser: Browser, contexts: list[BrowserContext], server: ServerProcess, site: str
) -> None:
    user = new_user(server, "react-conflict")
    other = sign_in(server, user)
    a = open_app(new_context(browser, contexts), app_url(site, server.url, user.token, manual=1))
    # B: a client the app made, given to the provider as `client`.
    b_url = app_url(site, server.url, other["access_token"], manual=1, tokenAs="client")
    b = open_app(new_context(browser, contexts), b_url)

    # A edits, then B, each without seeing the other's edit; A saves first, then B. B's
    # later edit wins, and A is told that its value lost.
    a.get_by_label("Model").fill("model-from-a")
    time.sleep(0.05)
    b.get_by_label("Model").fill("model-from-b")
    a.get_by_role("button", name="Save Now").click()
    wait_until(lambda: _model(server, user.token) == "model-from-a", what="A saved")
    expect(b.get_by_label("Model")).to_have_value("model-from-b")  # its own edit stays on top
    b.get_by_role("button", name="Save Now").click()
    wait_until(lambda: _model(server, user.token) == "model-from-b", what="B saved")
    expect(a.get_by_label("Model")).to_have_value("model-from-b")
    conflicts = a.get_by_role("list", name="Conflicts").get_by_role("listitem")
    expect(conflicts).to_have_count(1)
    expect(conflicts).to_have_text(
        'Conflict on /ai_providers/openai/model: your "model-from-a" lost to "model-from-b". '
        "Dismiss"
    )
    # useRealtimeSettings told A of B's change (and of nothing of its own).
    expect(a.get_by_test_id("remote-updates")).not_to_have_text("Remote updates: 0")
    _shot(a, "conflict")

    a.get_by_role("button", name="Dismiss").click()
    expect(conflicts).to_have_count(0)
    wait_state(a, "synced")
    wait_state(b, "synced")
    _no_errors(a, b)


def _model(server: ServerProcess, token: str) -> object:
    return api_get(server, token)["settings"]["ai_providers"].get("openai", {}).get("model")


def test_preferences_without_a_schema_are_edited_as_json(
    browser: Browser, contexts: list[BrowserContext], server: ServerProcess, site: str
) -> None:
    user = new_user(server, "react-json")
    page = open_app(new_context(browser, contexts), app_url(site, server.url, user.token))
    editor = page.get_by_label("Preferences (JSON)")
    expect(editor).to_have_value("{}")

    editor.fill('{"compact": tru')
    page.get_by_role("button", name="Apply preferences").click()
    expect(page.locator('[data-part="preferences"] [role="alert"]')).to_contain_text(
        "Preferences are not valid JSON"
    )
    editor.fill('{"compact": true, "font": {"size": 14}}')
    page.get_by_role("button", name="Apply preferences").click()
    expect(page.locator('[data-part="preferences"] [role="alert"]')).to_have_count(0)
    wait_until(
        lambda: (
            api_get(server, user.token)["settings"]["preferences"]
            == {"compact": True, "font": {"size": 14}}
        ),
        what="the preferences saved",
    )

    # A value the server refuses is dropped, and the seed page's syncError says why.
    page.get_by_label("Language").fill("not a language tag")
    page.get_by_label("Language").press("Enter")
    expect(page.get_by_text(re.compile(r"^Error: /language must be a BCP 47"))).to_have_count(1)
    expect(page.get_by_label("Language")).to_have_value("en")
    wait_state(page, "synced")  # a refused edit is no state of the connection


SCHEMA = {
    "type": "object",
    "properties": {
        "compact": {"type": "boolean", "title": "Compact mode"},
        "density": {"enum": ["low", "high"], "title": "Density"},
        "editor": {
            "type": "object",
            "title": "Editor",
            "properties": {"font_size": {"type": "integer", "title": "Font size"}},
        },
    },
}


def test_preferences_are_drawn_from_the_operators_schema(
    browser: Browser,
    contexts: list[BrowserContext],
    tmp_path: Path,
    site: str,
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA), encoding="utf-8")
    proc = ServerProcess(
        tmp_path / "data", **SERVER_SETTINGS, allowed_origins=site, preferences_schema=schema
    )
    proc.start()
    try:
        user = new_user(proc, "react-schema")
        page = open_app(new_context(browser, contexts), app_url(site, proc.url, user.token))
        page.get_by_label("Compact mode").check()
        page.get_by_label("Density").select_option("high")
        page.get_by_label("Font size").fill("16")
        page.get_by_label("Font size").press("Enter")
        expect(page.get_by_label("Preferences (JSON)")).to_have_count(0)
        wait_until(
            lambda: (
                api_get(proc, user.token)["settings"]["preferences"]
                == {"compact": True, "density": "high", "editor": {"font_size": 16}}
            ),
            what="the preferences saved",
        )
        _shot(page, "schema")
        _no_errors(page)
    finally:
        proc.stop()
