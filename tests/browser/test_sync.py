"""Tabs and devices of one user stay in sync; conflicts and refused values are shown."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.browser.helpers import (
    PASSWORD,
    FrameLog,
    api_get,
    changes_since,
    new_user,
    open_context,
    open_page,
    sign_in,
    wait_status,
    wait_until,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser


def test_two_tabs_share_an_edit_at_once_and_save_it_after_the_debounce(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    context = open_context(browser, contexts, url)
    tab1 = open_page(context, url, "autoSaveDelay=3000", synced=False)
    # The sign-up form, with the labels a screen reader announces.
    username = f"tabs-{uuid.uuid4().hex[:8]}"
    tab1.get_by_label("Username").fill(username)
    tab1.get_by_label("Password").fill(PASSWORD)
    tab1.get_by_role("button", name="Create account").click()
    wait_status(tab1, "Synced")
    with shared_server.client() as http:  # the page's tokens are out of reach: our own
        signin = http.post("/v1/auth/token", json={"username": username, "password": PASSWORD})
        token = signin.json()["access_token"]
    # Signed in: the cookie is shared. Its long debounce leaves "Save now" a wide margin.
    tab2 = open_page(context, url, "autoSaveDelay=10000")

    edited = time.monotonic()
    tab1.get_by_label("Theme").select_option("dark")
    # Tab 2 shows it at once, through BroadcastChannel, and knows it is not saved yet.
    expect(tab2.get_by_label("Theme")).to_have_value("dark", timeout=2000)
    expect(tab2.locator("html")).to_have_attribute("data-theme", "dark")
    expect(tab2.locator("#status-text")).to_have_text("Unsaved changes (1)")
    assert api_get(shared_server, token)["settings"]["theme"] == "light"
    wait_until(lambda: api_get(shared_server, token)["settings"]["theme"] == "dark", 10, "saved")
    assert time.monotonic() - edited >= 2.9  # not before the 3 s debounce
    wait_status(tab1, "Synced")
    wait_status(tab2, "Synced")
    assert api_get(shared_server, token)["revision"] == 1

    # "Save now" saves at once, long before the debounce would.
    typed = time.monotonic()
    tab2.get_by_label("Model").fill("gpt-4o-mini")
    expect(tab1.get_by_label("Model")).to_have_value("gpt-4o-mini", timeout=2000)
    tab2.get_by_role("button", name="Save now").click()
    wait_until(
        lambda: (
            api_get(shared_server, token)["settings"]["ai_providers"]
            == {"default": "openai", "openai": {"model": "gpt-4o-mini"}}
        ),
        timeout=5,
        what="saved by Save now",
    )
    assert time.monotonic() - typed < 8.0  # tab 2's debounce is 10 s
    wait_status(tab1, "Synced")

    # Recent changes, newest first, and "revert to this" (in the other tab).
    items = tab1.locator("#history-list li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text("Model (OpenAI) → “gpt-4o-mini”")
    expect(items.nth(1)).to_contain_text("Theme → Dark")
    tab1.get_by_role("button", name="Revert to revision 1").click()
    expect(tab2.get_by_label("Model")).to_have_value("", timeout=5000)
    settings = api_get(shared_server, token)
    assert settings["revision"] == 3
    assert settings["settings"]["ai_providers"] == {}
    assert settings["settings"]["theme"] == "dark"
    assert tab1.errors == [] and tab2.errors == []  # type: ignore[attr-defined]


def test_two_devices_of_one_user_sync_through_the_server(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    user = new_user(shared_server, "devices")
    device_a = open_page(
        open_context(browser, contexts, url, user.session), url, "autoSaveDelay=200"
    )
    device_b = open_page(
        open_context(browser, contexts, url, sign_in(shared_server, user)), url, "autoSaveDelay=200"
    )

    language = device_a.get_by_label("Language")
    language.fill("fr")
    language.press("Enter")
    expect(device_b.get_by_label("Language")).to_have_value("fr")

    device_b.get_by_label("Default provider").select_option("anthropic")
    device_b.get_by_label("Model").fill("claude-sonnet-4")
    device_b.get_by_label("Temperature").fill("0.3")
    device_b.get_by_label("Max tokens").fill("2048")
    expect(device_a.get_by_label("Default provider")).to_have_value("anthropic")
    expect(device_a.get_by_label("Model")).to_have_value("claude-sonnet-4")
    expect(device_a.get_by_label("Max tokens")).to_have_value("2048")
    expect(device_a.locator("#temperature-value")).to_have_text("0.3")
    wait_status(device_a, "Synced")
    wait_status(device_b, "Synced")
    stored = api_get(shared_server, user.token)["settings"]
    assert stored["language"] == "fr"
    assert device_a.errors == [] and device_b.errors == []  # type: ignore[attr-defined]
    assert stored["ai_providers"] == {
        "default": "anthropic",
        "anthropic": {"model": "claude-sonnet-4", "temperature": 0.3, "max_tokens": 2048},
    }


def test_concurrent_edits_end_equal_and_the_losing_side_is_told(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    user = new_user(shared_server, "conflict")
    # Manual saving, so that the test decides the order in which the edits reach the server.
    a = open_page(open_context(browser, contexts, url, user.session), url, "autoSaveDelay=off")
    b = open_page(
        open_context(browser, contexts, url, sign_in(shared_server, user)), url, "autoSaveDelay=off"
    )

    # 1. A edits, then B; A saves first. B's later edit, made without seeing A's, wins;
    #    A learns from the pushed change that its value was overwritten.
    a.get_by_label("Model").fill("model-from-a")
    time.sleep(0.05)
    b.get_by_label("Model").fill("model-from-b")
    a.get_by_role("button", name="Save now").click()
    wait_until(lambda: _model(shared_server, user.token) == "model-from-a", what="A saved")
    expect(b.get_by_label("Model")).to_have_value("model-from-b")  # its own edit stays on top
    b.get_by_role("button", name="Save now").click()
    wait_until(lambda: _model(shared_server, user.token) == "model-from-b", what="B saved")
    expect(a.get_by_label("Model")).to_have_value("model-from-b")
    expect(a.locator("#notices")).to_contain_text(
        "Conflict: your change to Model (OpenAI) (“model-from-a”) lost to a change made at the "
        "same time elsewhere. Model (OpenAI) is now “model-from-b”."
    )
    expect(b.locator("#notices .notice")).to_have_count(0)

    # 2. A edits, then B; B saves first. A's older edit arrives last and loses: its ack says so.
    a.get_by_label("Max tokens").fill("111")
    time.sleep(0.05)
    b.get_by_label("Max tokens").fill("222")
    b.get_by_role("button", name="Save now").click()
    wait_until(lambda: _max_tokens(shared_server, user.token) == 222, what="B saved")
    a.get_by_role("button", name="Save now").click()
    expect(a.locator("#notices")).to_contain_text(
        "Conflict: your change to Max tokens (OpenAI) (111) lost to a change made at the same "
        "time elsewhere. Max tokens (OpenAI) is now 222."
    )
    expect(a.get_by_label("Max tokens")).to_have_value("222")
    wait_status(a, "Synced")
    assert _max_tokens(shared_server, user.token) == 222
    expect(b.locator("#notices .notice")).to_have_count(0)


def _model(server: ServerProcess, token: str) -> object:
    return api_get(server, token)["settings"]["ai_providers"].get("openai", {}).get("model")


def _max_tokens(server: ServerProcess, token: str) -> object:
    return api_get(server, token)["settings"]["ai_providers"].get("openai", {}).get("max_tokens")


def test_a_refused_value_shows_the_servers_message_and_is_not_kept_pending(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    user = new_user(shared_server, "invalid")
    # Manual saving: the test decides which edits share a mutation (a debounce under load
    # could split them).
    page = open_context(browser, contexts, url, user.session).new_page()
    frames = FrameLog(page)
    page.goto(url + "/?autoSaveDelay=off")
    wait_status(page, "Synced")
    save_now = page.get_by_role("button", name="Save now")
    language = page.get_by_label("Language")

    # 1. Both edits in one mutation; the server refuses it for /language. The rest of it is
    #    sent again on its own and saved; the refused value is dropped, not left pending.
    page.get_by_label("Model").fill("kept-model")
    language.fill("english")
    language.press("Enter")
    save_now.click()
    expect(page.locator("#language-error")).to_contain_text(
        "/language must be a BCP 47 language tag"
    )
    expect(language).to_have_attribute("aria-invalid", "true")
    expect(language).to_have_value("english")  # left to fix
    wait_until(lambda: _model(shared_server, user.token) == "kept-model", what="model saved")
    kept = {"default": "openai", "openai": {"model": "kept-model"}}
    wait_until(lambda: len(_updates(frames)) >= 2, page=page, what="the rest sent again")
    assert _updates(frames) == [
        {"ai_providers": kept, "language": "english"},
        {"ai_providers": kept},
    ]
    # Everything that can be saved is: the status says so, the message stays by the field.
    wait_status(page, "Synced")
    expect(page.locator("#language-error")).to_be_visible()
    assert page.evaluate("livesettings.status.unsaved") == 0
    assert page.evaluate("livesettings.status.errorCount") == 1
    assert api_get(shared_server, user.token)["settings"]["language"] == "en"

    # 2. A refusal answered after another edit's ack: the same outcome.
    page.get_by_label("Model").fill("second-model")
    save_now.click()
    wait_until(lambda: _model(shared_server, user.token) == "second-model", what="model saved")
    wait_status(page, "Synced")
    language.fill("englisch")
    language.press("Enter")
    save_now.click()
    expect(page.locator("#language-error")).to_contain_text("got 'englisch'")
    wait_until(
        lambda: page.evaluate("livesettings.status.errorCount") == 2, what="the second refusal"
    )
    wait_status(page, "Synced")
    assert page.evaluate("livesettings.status.unsaved") == 0

    language.fill("pt-BR")
    language.press("Enter")
    expect(page.locator("#language-error")).to_be_hidden()
    save_now.click()
    wait_until(
        lambda: api_get(shared_server, user.token)["settings"]["language"] == "pt-BR",
        what="fixed language saved",
    )

    # 3. An over-long key in the preferences: the server's message, next to the field.
    long_key = "k" * 300
    page.get_by_label("Preferences (JSON)").fill(json.dumps({long_key: 1, "density": "compact"}))
    page.get_by_role("button", name="Apply preferences").click()
    save_now.click()
    expect(page.locator("#preferences-error")).to_contain_text(
        "is 300 characters; keys may have at most 256"
    )
    wait_until(
        lambda: (
            api_get(shared_server, user.token)["settings"]["preferences"] == {"density": "compact"}
        ),
        what="the valid part of the preferences saved",
    )
    wait_status(page, "Synced")
    assert page.evaluate("livesettings.status.unsaved") == 0


def _updates(frames: FrameLog) -> list[object]:
    """The patches of the update frames sent so far."""
    sent = [json.loads(f) for f in frames.sent]
    return [f["patch"] for f in sent if f.get("type") == "update"]


def test_without_websockets_the_page_falls_back_to_the_event_stream(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    user = new_user(shared_server, "sse")
    # Device A sits behind something that drops WebSockets; device B does not.
    a = open_context(browser, contexts, url, user.session).new_page()
    a.route_web_socket(re.compile(r"/v1/realtime$"), lambda ws: ws.close())
    a.goto(f"{url}/?autoSaveDelay=200&reconnectDelay=100")
    wait_status(a, "Synced")
    b = open_page(
        open_context(browser, contexts, url, sign_in(shared_server, user)), url, "autoSaveDelay=200"
    )
    revision = api_get(shared_server, user.token)["revision"]

    a.get_by_label("Theme").select_option("system")  # written over HTTP
    expect(b.get_by_label("Theme")).to_have_value("system")
    b.get_by_label("Model").fill("pushed-over-sse")  # pushed to A as a server-sent event
    expect(a.get_by_label("Model")).to_have_value("pushed-over-sse")
    wait_status(a, "Synced")
    a.get_by_role("button", name="Synced").click()
    expect(a.locator("#panel-connection")).to_have_text("Online (event stream)")
    changes = changes_since(shared_server, user.token, revision)
    assert [c["patch"] for c in changes] == [
        {"theme": "system"},
        {"ai_providers": {"default": "openai", "openai": {"model": "pushed-over-sse"}}},
    ]


def test_another_tab_saves_what_a_closed_tab_left_unsaved(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    user = new_user(shared_server, "orphan")
    context = open_context(browser, contexts, url, user.session)
    survivor = open_page(context, url, "autoSaveDelay=200")
    revision = api_get(shared_server, user.token)["revision"]
    # This tab's socket reaches nothing, so it can never save its edit itself.
    closing = context.new_page()
    closing.route_web_socket(re.compile(r"/v1/realtime$"), lambda ws: None)
    closing.goto(f"{url}/?autoSaveDelay=200&heartbeatTimeout=60000")
    closing.get_by_label("Model").fill("left-by-a-closed-tab")
    expect(survivor.get_by_label("Model")).to_have_value("left-by-a-closed-tab")
    expect(survivor.locator("#status-text")).to_have_text("Unsaved changes (1)")
    time.sleep(0.6)  # the edit is the other tab's to save while that tab lives
    assert api_get(shared_server, user.token)["revision"] == revision

    closing.close()
    wait_until(
        lambda: _model(shared_server, user.token) == "left-by-a-closed-tab",
        what="the surviving tab saved the closed tab's edit",
    )
    wait_status(survivor, "Synced")
    assert len(changes_since(shared_server, user.token, revision)) == 1
