"""The page itself: labels, keyboard use, the status panel, themes, phones, screenshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.helpers import (
    ARTIFACTS,
    SERVER_SETTINGS,
    FrameLog,
    api_get,
    new_user,
    open_context,
    open_page,
    sign_in,
    wait_status,
    wait_until,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

UNLABELLED = """() => Array.from(document.querySelectorAll("input, select, textarea, button"))
  .filter((el) => el.offsetParent !== null)
  .filter((el) => {
    const label = Array.from(el.labels ?? [], (l) => l.textContent.trim()).join(" ");
    const name = el.getAttribute("aria-label") ?? "";
    const text = el.tagName === "BUTTON" ? el.textContent.trim() : "";
    if (el.tagName === "BUTTON") return !text;  // a button's words are its visible label
    return !label || (name && !name.includes(label));
  })
  .map((el) => el.id || el.outerHTML.slice(0, 80))"""


def _background(page: Page) -> str:
    return str(page.evaluate("getComputedStyle(document.documentElement).backgroundColor"))


def _screenshot(page: Page, name: str) -> None:
    """The whole page, taken with a viewport as tall as the page (so the sticky bar is on top)."""
    viewport = page.viewport_size
    assert viewport is not None
    height = int(page.evaluate("document.documentElement.scrollHeight"))
    page.set_viewport_size({"width": viewport["width"], "height": height})
    page.screenshot(path=str(ARTIFACTS / name))
    page.set_viewport_size(viewport)


def _fill_in(page: Page) -> None:
    page.get_by_label("Language").fill("en-GB")
    page.get_by_label("Language").press("Enter")
    page.get_by_label("Model").fill("gpt-4o")
    page.get_by_label("Temperature").fill("0.7")
    page.get_by_label("Max tokens").fill("4096")
    page.get_by_label("Anthropic API key").fill("sk-ant-0123456789abcdefWXYZ")
    page.get_by_role("button", name="Save key for Anthropic").click()
    page.get_by_label("Preferences (JSON)").fill(
        json.dumps({"density": "compact", "notifications": {"email": True}})
    )
    page.get_by_role("button", name="Apply preferences").click()


def test_screenshots_light_dark_and_phone(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    user = new_user(shared_server, "shots")
    page = open_page(
        open_context(browser, contexts, url, user.session, viewport={"width": 1280, "height": 900}),
        url,
        "autoSaveDelay=100",
    )
    _fill_in(page)
    expect(page.locator("#key-anthropic-state")).to_contain_text("ends in WXYZ")
    wait_until(
        lambda: (
            api_get(shared_server, user.token)["settings"]["preferences"]
            == {"density": "compact", "notifications": {"email": True}}
        )
    )
    wait_status(page, "Synced")
    expect(page.locator("#history-list li").first).to_contain_text("Preference “density”")
    page.get_by_role("button", name="Synced").click()
    expect(page.locator("#status-panel")).to_be_visible()
    expect(page.locator("#panel-connection")).to_have_text("Online")

    ARTIFACTS.mkdir(exist_ok=True)
    assert _background(page) == "rgb(244, 245, 247)"
    _screenshot(page, "settings-light.png")
    page.get_by_label("Theme").select_option("dark")
    assert _background(page) == "rgb(15, 18, 22)"  # applied at once, before any save
    wait_status(page, "Synced")
    expect(page.locator("#history-list li").first).to_contain_text("Theme → Dark")
    page.get_by_role("button", name="Synced").click()  # the details closed again
    expect(page.locator("#status-panel")).to_be_hidden()
    _screenshot(page, "settings-dark.png")

    phone = open_page(
        open_context(
            browser,
            contexts,
            url,
            sign_in(shared_server, user),  # another device: its own refresh-token family
            viewport={"width": 375, "height": 812},
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
        ),
        url,
    )
    assert _background(phone) == "rgb(15, 18, 22)"
    # Nothing wider than the screen: no sideways scrolling on a phone.
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    expect(phone.locator("#history-list li").first).to_contain_text("Theme → Dark")
    expect(
        phone.locator("#history-list li", has_text="Anthropic API key → a key ending in WXYZ")
    ).to_have_count(1)
    phone.screenshot(path=str(ARTIFACTS / "settings-phone-dark.png"), full_page=True)
    for name in ("settings-light.png", "settings-dark.png", "settings-phone-dark.png"):
        assert (ARTIFACTS / name).stat().st_size > 20_000
    assert page.errors == [] and phone.errors == []  # type: ignore[attr-defined]


def test_every_control_is_labelled_and_the_page_works_with_the_keyboard(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    url = shared_server.url
    signed_out = open_page(open_context(browser, contexts, url), url, synced=False)
    expect(signed_out.get_by_role("heading", name="Sign in")).to_be_visible()
    assert signed_out.evaluate(UNLABELLED) == []

    user = new_user(shared_server, "keyboard")
    page = open_context(browser, contexts, url, user.session).new_page()
    frames = FrameLog(page)
    page.goto(url + "/?autoSaveDelay=100")
    wait_status(page, "Synced")
    assert page.evaluate(UNLABELLED) == []
    for label in ("Theme", "Language", "Default provider", "Model", "Temperature", "Max tokens"):
        expect(page.get_by_label(label, exact=True)).to_be_visible()
    # The status is in words, announced politely, and opens its details from the keyboard.
    expect(page.locator("#status-live")).to_have_attribute("aria-live", "polite")
    expect(page.locator("#status-live")).to_have_text("Synced")
    page.locator("#status").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#panel-errors")).to_have_text("0")
    # Keyboard only: Tab into the model field, type, Tab on; Enter in a key field saves it.
    page.get_by_label("Default provider").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "model"
    page.keyboard.type("typed-by-keyboard")
    page.keyboard.press("Tab")
    page.get_by_label("Mistral API key").focus()
    page.keyboard.type("mistral-key-0123456789")
    page.keyboard.press("Enter")
    expect(page.locator("#key-mistral-state")).to_contain_text("ends in 6789")
    wait_until(
        lambda: (
            api_get(shared_server, user.token)["settings"]["ai_providers"]
            == {"default": "openai", "openai": {"model": "typed-by-keyboard"}}
        )
    )
    # Refresh asks the server for a fresh snapshot.
    snapshots = sum('"type":"snapshot"' in f for f in frames.received)
    page.get_by_role("button", name="Refresh").click()
    wait_until(
        lambda: sum('"type":"snapshot"' in f for f in frames.received) == snapshots + 1,
        what="a new snapshot",
        page=page,
    )
    wait_status(page, "Synced")
    expect(page.get_by_label("Model")).to_have_value("typed-by-keyboard")


SCHEMA = {
    "type": "object",
    "properties": {
        "density": {
            "title": "Density",
            "enum": ["comfortable", "compact"],
            "default": "comfortable",
        },
        "notifications": {"title": "Email notifications", "type": "boolean"},
        "page_size": {"title": "Page size", "type": "integer", "minimum": 10, "maximum": 100},
    },
    "additionalProperties": False,
}


def test_an_operators_schema_turns_the_preferences_into_a_form(
    browser: Browser, contexts: list[BrowserContext], tmp_path: Path
) -> None:
    schema_file = tmp_path / "preferences.schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    server = ServerProcess(
        tmp_path / "data", preferences_schema=str(schema_file), **SERVER_SETTINGS
    )
    server.start()
    try:
        url = server.url
        user = new_user(server, "schema")
        page = open_page(
            open_context(browser, contexts, url, user.session), url, "autoSaveDelay=100"
        )
        expect(page.get_by_label("Preferences (JSON)")).to_be_hidden()
        density = page.get_by_label("Density")
        expect(density).to_have_value('"comfortable"')  # the schema's default
        density.select_option(label="compact")
        page.get_by_label("Email notifications").check()
        wait_until(
            lambda: (
                api_get(server, user.token)["settings"]["preferences"]
                == {"density": "compact", "notifications": True}
            )
        )
        page.get_by_label("Page size").fill("500")
        page.get_by_label("Page size").press("Enter")
        expect(page.locator("#preferences-error")).to_contain_text(
            "/preferences/page_size: 500 is greater than the maximum of 100"
        )
        # The refused value is dropped, not left pending: the status is that of the sync
        # (whatever order the server answered in); the refusal is told by the field and
        # counted in the status panel.
        wait_until(lambda: page.evaluate("livesettings.status.errorCount") == 1, page=page)
        wait_status(page, "Synced")
        expect(page.locator("#status")).to_have_attribute("data-state", "synced")
        expect(page.locator("#preferences-error")).to_be_visible()
        assert page.evaluate("livesettings.status.unsaved") == 0
        assert "page_size" not in api_get(server, user.token)["settings"]["preferences"]
        page.get_by_label("Page size").fill("50")
        page.get_by_label("Page size").press("Enter")
        wait_until(
            lambda: api_get(server, user.token)["settings"]["preferences"].get("page_size") == 50
        )
        expect(page.locator("#preferences-error")).to_be_hidden()
        wait_status(page, "Synced")
    finally:
        server.stop()
