"""Secrets stay out of the page, the storage and the frames; users never see each other."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.helpers import (
    PASSWORD,
    FrameLog,
    api_get,
    new_user,
    open_context,
    open_page,
    wait_status,
    wait_until,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

TAB_LISTENER = """uid => {
  window.__tabMessages = [];
  const channel = new BroadcastChannel(`livesettings:v1:${encodeURIComponent(uid)}:tabs`);
  channel.onmessage = (event) => window.__tabMessages.push(JSON.stringify(event.data));
}"""


def _everything_readable(page: Page) -> str:
    """The DOM, every control's value, both storages, the client's view and the caches."""
    return str(
        page.evaluate(
            """async () => {
              const values = Array.from(document.querySelectorAll("input, textarea, select"),
                (el) => el.value);
              const cached = [];
              for (const name of await caches.keys()) {
                const cache = await caches.open(name);
                for (const request of await cache.keys()) {
                  cached.push(request.url, await (await cache.match(request)).text());
                }
              }
              return [
                document.documentElement.outerHTML,
                values.join("\\n"),
                JSON.stringify(Object.assign({}, localStorage)),
                JSON.stringify(Object.assign({}, sessionStorage)),
                JSON.stringify(window.livesettings.settings),
                cached.join("\\n"),
              ].join("\\n");
            }"""
        )
    )


def test_an_api_key_typed_into_the_page_is_never_readable_afterwards(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    user = new_user(shared_server, "secret")
    secret = f"sk-live-{uuid.uuid4().hex}Q9zX"
    context = open_context(browser, contexts, url, user.session)
    page, other_tab = context.new_page(), context.new_page()
    frames, other_frames = FrameLog(page), FrameLog(other_tab)
    for tab in (page, other_tab):
        tab.goto(url + "/?autoSaveDelay=200")
        wait_status(tab, "Synced")
    other_tab.evaluate(TAB_LISTENER, user.user_id)

    page.get_by_label("OpenAI API key").fill(secret)
    page.get_by_role("button", name="Save key for OpenAI").click()
    page.get_by_label("Model").fill("gpt-4o")  # a plain edit, which the other tab does get
    expect(page.locator("#key-openai-state")).to_contain_text("Set · ends in Q9zX")
    expect(other_tab.locator("#key-openai-state")).to_contain_text("Set · ends in Q9zX")
    expect(other_tab.get_by_label("Model")).to_have_value("gpt-4o")
    wait_status(page, "Synced")
    wait_status(other_tab, "Synced")
    masked = api_get(shared_server, user.token)["settings"]["api_keys"]["openai"]
    assert masked["set"] is True and masked["last4"] == "Q9zX"

    for tab in (page, other_tab):
        tab.wait_for_timeout(200)  # lets Playwright deliver the frames logged so far
        readable = _everything_readable(tab)
        assert secret not in readable
        assert secret[-12:] not in readable  # not even a longer tail than the last 4
        assert "Q9zX" in readable  # the masked form is there: the check looks at the right data
    # The key went to the server exactly once, from the tab where it was typed, and never
    # came back in any frame, nor through the tabs' channel.
    assert sum(secret in frame for frame in frames.sent) == 1
    assert not any(secret in frame for frame in other_frames.sent)
    for frame in frames.received + other_frames.received:
        assert secret not in frame
    assert any("Q9zX" in frame for frame in other_frames.received)
    messages = other_tab.evaluate("window.__tabMessages")
    assert messages and not any(secret in message for message in messages)

    # Replaced and removed: the masked state follows, in both tabs.
    page.get_by_label("OpenAI API key").fill("short-key")
    page.get_by_role("button", name="Save key for OpenAI").click()
    expect(other_tab.locator("#key-openai-state")).to_have_text(
        "Set · updated just now", timeout=5000
    )  # under 12 characters: not even the last 4
    page.get_by_role("button", name="Remove key for OpenAI").click()
    expect(other_tab.locator("#key-openai-state")).to_have_text("Not set")
    wait_until(lambda: api_get(shared_server, user.token)["settings"]["api_keys"] == {})


def test_another_user_never_sees_the_first_users_settings(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    alice, bob = new_user(shared_server, "alice"), new_user(shared_server, "bob")
    marker = f"alice-only-{uuid.uuid4().hex[:8]}"
    alice_context = open_context(browser, contexts, url, alice.session)
    alice_page = open_page(alice_context, url, "autoSaveDelay=100")
    bob_page = open_context(browser, contexts, url, bob.session).new_page()
    bob_frames = FrameLog(bob_page)
    bob_page.goto(url + "/?autoSaveDelay=100")
    wait_status(bob_page, "Synced")

    alice_page.get_by_label("Model").fill(marker)
    alice_page.get_by_label("Theme").select_option("dark")
    wait_until(lambda: api_get(shared_server, alice.token)["settings"]["theme"] == "dark")
    wait_status(alice_page, "Synced")
    bob_page.get_by_label("Language").fill("nl")  # bob's own edit still round-trips
    bob_page.get_by_label("Language").press("Enter")
    wait_until(lambda: api_get(shared_server, bob.token)["settings"]["language"] == "nl")
    wait_status(bob_page, "Synced")

    expect(bob_page.get_by_label("Model")).to_have_value("")
    expect(bob_page.get_by_label("Theme")).to_have_value("light")
    assert marker not in _everything_readable(bob_page)
    assert bob_frames.received and not any(marker in f for f in bob_frames.received)

    # Same browser: alice's session ends, bob signs in there. Alice's cache stays on the
    # device (it may hold unsaved edits) but bob's page never shows it.
    alice_context.clear_cookies()
    alice_page.evaluate("localStorage.removeItem('livesettings:user')")
    alice_page.reload()
    expect(alice_page.get_by_role("heading", name="Sign in")).to_be_visible()
    alice_page.get_by_label("Username").fill(bob.username)
    alice_page.get_by_label("Password").fill(PASSWORD)
    alice_page.get_by_role("button", name="Sign in", exact=True).click()
    wait_status(alice_page, "Synced")
    expect(alice_page.get_by_label("Language")).to_have_value("nl")
    expect(alice_page.get_by_label("Model")).to_have_value("")
    expect(alice_page.locator("html")).to_have_attribute("data-theme", "light")
    assert marker in str(alice_page.evaluate("JSON.stringify(Object.assign({}, localStorage))"))
    assert marker not in str(alice_page.evaluate("JSON.stringify(window.livesettings.settings)"))
    assert marker not in alice_page.content()
