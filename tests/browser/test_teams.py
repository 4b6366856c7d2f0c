"""The settings page's team documents (DESIGN §11): the document switcher, live team edits,
the members panel, what each role may use, a removed member, and creating, leaving and
deleting a team. Real Chromium against a real server; other members act over HTTP."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.helpers import (
    ARTIFACTS,
    User,
    new_user,
    open_context,
    open_page,
    wait_status,
    wait_until,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

FAST = "autoSaveDelay=200&heartbeatInterval=400&heartbeatTimeout=1500&maxReconnectDelay=800"


def api(server: ServerProcess, user: User, method: str, path: str, body: Any = None) -> Any:
    """A request of `user` from outside the browser (its own token); the JSON answer."""
    with server.client() as client:
        response = client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {user.token}"}
        )
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
    return response.json() if response.content else None


def create_team(server: ServerProcess, owner: User, name: str) -> str:
    team = api(server, owner, "POST", "/v1/teams", {"name": name})
    assert team["role"] == "owner"
    return str(team["team_id"])


def add_member(server: ServerProcess, owner: User, team_id: str, user: User, role: str) -> None:
    path = f"/v1/teams/{team_id}/members/{user.username}"
    api(server, owner, "PUT", path, {"username": user.username, "role": role})


def team_settings(server: ServerProcess, user: User, team_id: str) -> dict[str, Any]:
    body: dict[str, Any] = api(server, user, "GET", f"/v1/teams/{team_id}/settings")
    return body


def members(server: ServerProcess, user: User, team_id: str) -> dict[str, str]:
    """username -> role."""
    body = api(server, user, "GET", f"/v1/teams/{team_id}/members")
    return {m["username"]: m["role"] for m in body["members"]}


def signed_in(
    browser: Browser,
    contexts: list[BrowserContext],
    server: ServerProcess,
    user: User,
    transport: str = "auto",
) -> Page:
    url = server.url
    query = f"{FAST}&transport={transport}"
    return open_page(open_context(browser, contexts, url, user.session), url, query)


def switch_to(page: Page, name: str, team_id: str | None) -> None:
    """Choose a document in the switcher and wait for its client to be in sync."""
    page.get_by_label("Document").select_option(label=name)
    doc = f"team:{team_id}" if team_id else None
    page.wait_for_function("d => globalThis.livesettings.doc === d", arg=doc)
    wait_status(page, "Synced")


def doc_options(page: Page) -> list[str]:
    return [o.strip() for o in page.locator("#doc-select option").all_text_contents()]


def page_errors(page: Page) -> list[str]:
    """The page's errors, but for the failed requests the test provokes (a 404, a 409)."""
    errors: list[str] = page.errors  # type: ignore[attr-defined]
    return [e for e in errors if not e.startswith("Failed to load resource")]


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"teams-{name}.png"), full_page=True)


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_the_switcher_shows_personal_and_the_teams_and_team_edits_arrive_live(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess, transport: str
) -> None:
    server = shared_server
    owner, member = new_user(server, "owner"), new_user(server, "member")
    team_id = create_team(server, owner, "Design studio")
    add_member(server, owner, team_id, member, "member")
    api(server, member, "PATCH", "/v1/settings", {"language": "fr"})  # personal

    a = signed_in(browser, contexts, server, owner, transport)
    b = signed_in(browser, contexts, server, member, transport)
    expect(b.locator("#doc-select option")).to_have_count(2)
    assert doc_options(b) == ["Personal", "Design studio"]
    expect(b.get_by_label("Document")).to_have_value("")
    expect(b.get_by_label("Language")).to_have_value("fr")
    expect(b.locator("#members-card")).to_be_hidden()

    switch_to(a, "Design studio", team_id)
    switch_to(b, "Design studio", team_id)
    expect(b.locator("#doc-role")).to_contain_text("Your role: member")
    expect(b.get_by_label("Language")).to_have_value("en")  # the team's, not the personal one
    # One member's edit reaches the other's page live, and the server has it.
    a.get_by_label("Theme").select_option("dark")
    expect(b.get_by_label("Theme")).to_have_value("dark")
    expect(b.locator("html")).to_have_attribute("data-theme", "dark")
    b.get_by_label("Model").fill("gpt-4o")
    expect(a.get_by_label("Model")).to_have_value("gpt-4o")
    wait_until(
        lambda: (
            team_settings(server, owner, team_id)["settings"]["ai_providers"].get("openai")
            == {"model": "gpt-4o"}
        ),
        what="the member's edit saved in the team's document",
    )
    assert team_settings(server, owner, team_id)["settings"]["theme"] == "dark"
    assert b.evaluate("globalThis.livesettings.status.transport") == transport.replace(
        "websocket", "ws"
    )
    screenshot(b, f"switcher-team-{transport}")

    # A reload shows the same document again.
    b.reload()
    wait_status(b, "Synced")
    expect(b.get_by_label("Document")).to_have_value(f"team:{team_id}")
    expect(b.get_by_label("Theme")).to_have_value("dark")
    expect(b.get_by_label("Model")).to_have_value("gpt-4o")

    # Back to Personal: the member's own settings, untouched by the team's.
    switch_to(b, "Personal", None)
    expect(b.get_by_label("Theme")).to_have_value("light")
    expect(b.get_by_label("Language")).to_have_value("fr")
    expect(b.get_by_label("Model")).to_have_value("")
    personal = api(server, member, "GET", "/v1/settings")["settings"]
    assert personal["theme"] == "light" and personal["ai_providers"] == {}
    assert page_errors(a) == [] and page_errors(b) == []


def test_the_members_panel_adds_by_username_changes_a_role_and_tells_errors(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    server = shared_server
    owner, other = new_user(server, "owner"), new_user(server, "other")
    page = signed_in(browser, contexts, server, owner)

    # Create a team on the page: it is shown at once, the user its owner.
    page.get_by_label("Team name").fill("Platform")
    page.get_by_role("button", name="Create team").click()
    page.wait_for_function("() => (globalThis.livesettings.doc ?? '').startsWith('team:')")
    team_id = page.evaluate("globalThis.livesettings.doc").split(":", 1)[1]
    expect(page.get_by_label("Document")).to_have_value(f"team:{team_id}")
    expect(page.locator("#doc-role")).to_contain_text("Your role: owner")
    expect(page.locator("#notices")).to_contain_text("Team “Platform” created")
    wait_status(page, "Synced")
    panel = page.locator("#members-card")
    expect(panel).to_be_visible()
    expect(panel.locator("#members-list li")).to_have_count(1)
    expect(panel.locator("#members-list li")).to_contain_text(f"{owner.username} (you)")

    # Add by username, with a role.
    panel.get_by_label("Member to add").fill(other.username)
    panel.get_by_label("New member's role").select_option("viewer")
    panel.get_by_role("button", name="Add member").click()
    expect(panel.locator("#members-list li")).to_have_count(2)
    role = panel.get_by_label(f"Role of {other.username}")
    expect(role).to_have_value("viewer")
    assert members(server, owner, team_id) == {owner.username: "owner", other.username: "viewer"}

    # Change the role.
    role.select_option("admin")
    expect(panel.locator("#members-message")).to_contain_text(f"{other.username} is now an admin")
    wait_until(lambda: members(server, owner, team_id)[other.username] == "admin", what="re-roled")

    # Errors in words: an unknown username, and the last owner's own demotion.
    panel.get_by_label("Member to add").fill("nobody-by-this-name")
    panel.get_by_role("button", name="Add member").click()
    expect(panel.locator("#member-add-error")).to_have_text(
        "No user is named “nobody-by-this-name”. Check the spelling: usernames are exact."
    )
    panel.get_by_label(f"Role of {owner.username}").select_option("member")
    expect(panel.locator("#members-error")).to_contain_text("keeps at least one owner")
    expect(panel.get_by_label(f"Role of {owner.username}")).to_have_value("owner")
    assert members(server, owner, team_id)[owner.username] == "owner"
    screenshot(page, "members-panel")

    # Remove the member.
    panel.get_by_role("button", name=f"Remove {other.username}").click()
    expect(panel.locator("#members-list li")).to_have_count(1)
    assert members(server, owner, team_id) == {owner.username: "owner"}
    assert page_errors(page) == []


def test_a_viewer_sees_every_control_disabled_with_the_reason(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    server = shared_server
    owner, viewer = new_user(server, "owner"), new_user(server, "viewer")
    team_id = create_team(server, owner, "Readers")
    add_member(server, owner, team_id, viewer, "viewer")
    api(server, owner, "PATCH", f"/v1/teams/{team_id}/settings", {"theme": "dark"})

    page = signed_in(browser, contexts, server, viewer)
    expect(page.get_by_label("Theme")).to_be_enabled()  # the viewer's own settings
    switch_to(page, "Readers", team_id)
    expect(page.get_by_label("Theme")).to_have_value("dark")
    for label in ("Theme", "Language", "Default provider", "Model", "OpenAI API key"):
        expect(page.get_by_label(label)).to_be_disabled()
    expect(page.get_by_role("button", name="Apply preferences")).to_be_disabled()
    reason = page.locator("#doc-readonly")
    expect(reason).to_be_visible()
    expect(reason).to_contain_text(re.compile("viewer", re.IGNORECASE))
    expect(reason).to_contain_text("read")
    # The members: listed, but only admins and owners manage them.
    expect(page.locator("#members-list li")).to_have_count(2)
    expect(page.get_by_label("Member to add")).to_be_disabled()
    expect(page.get_by_label(f"Role of {owner.username}")).to_be_disabled()
    expect(page.locator("#members-note")).to_contain_text("Only the team's admins and owners")
    expect(page.get_by_role("button", name="Leave team")).to_be_enabled()
    expect(page.get_by_role("button", name="Delete team")).to_be_hidden()
    screenshot(page, "viewer")

    # Back to Personal: everything usable again.
    switch_to(page, "Personal", None)
    expect(page.get_by_label("Theme")).to_be_enabled()
    expect(page.get_by_label("OpenAI API key")).to_be_enabled()
    expect(page.locator("#doc-readonly")).to_be_hidden()
    assert page_errors(page) == []


def test_an_admin_manages_the_members_below_owner(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    server = shared_server
    owner, admin, newcomer = (new_user(server, p) for p in ("owner", "admin", "newcomer"))
    team_id = create_team(server, owner, "Ops")
    add_member(server, owner, team_id, admin, "admin")

    page = signed_in(browser, contexts, server, admin)
    switch_to(page, "Ops", team_id)
    expect(page.get_by_label("OpenAI API key")).to_be_enabled()  # admins write every field
    expect(page.locator("#keys-readonly")).to_be_hidden()
    expect(page.get_by_role("button", name="Delete team")).to_be_hidden()  # owners only
    # The owner's row is out of an admin's reach, and the page says why.
    expect(page.get_by_label(f"Role of {owner.username}")).to_be_disabled()
    expect(page.get_by_role("button", name=f"Remove {owner.username}")).to_be_disabled()
    expect(page.locator("#members-note")).to_contain_text("Only owners can")
    expect(page.locator("#member-add-role option[value=owner]")).to_be_disabled()
    page.get_by_label("Member to add").fill(newcomer.username)
    page.get_by_label("New member's role").select_option("member")
    page.get_by_role("button", name="Add member").click()
    expect(page.get_by_label(f"Role of {newcomer.username}")).to_have_value("member")
    assert members(server, owner, team_id)[newcomer.username] == "member"
    assert page_errors(page) == []


def test_a_member_sees_the_api_keys_disabled_with_the_reason(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    server = shared_server
    owner, member = new_user(server, "owner"), new_user(server, "member")
    team_id = create_team(server, owner, "Writers")
    add_member(server, owner, team_id, member, "member")

    page = signed_in(browser, contexts, server, member)
    switch_to(page, "Writers", team_id)
    expect(page.get_by_label("Theme")).to_be_enabled()
    expect(page.get_by_label("Model")).to_be_enabled()
    expect(page.locator("#doc-readonly")).to_be_hidden()
    expect(page.get_by_label("OpenAI API key")).to_be_disabled()
    expect(page.get_by_label("Service name")).to_be_disabled()
    reason = page.locator("#keys-readonly")
    expect(reason).to_be_visible()
    expect(reason).to_contain_text("admins and owners")
    expect(reason).to_contain_text("API keys")
    # What a member may write, it writes.
    page.get_by_label("Theme").select_option("dark")
    wait_until(
        lambda: team_settings(server, owner, team_id)["settings"]["theme"] == "dark",
        what="the member's theme saved",
    )
    screenshot(page, "member")

    # Signing out from the team's page forgets this browser's copies of both documents.
    cached = "id => Object.keys(localStorage).filter(k => k.includes(id) && k.endsWith(':state'))"
    assert len(page.evaluate(cached, member.user_id)) == 2  # Personal (shown first) and the team
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#signin")).to_be_visible()
    page.wait_for_function(f"() => ({cached})({member.user_id!r}).length === 0")
    assert page_errors(page) == []


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_a_re_roled_then_removed_member_is_told_and_taken_back_to_personal(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess, transport: str
) -> None:
    server = shared_server
    owner, member = new_user(server, "owner"), new_user(server, "member")
    team_id = create_team(server, owner, "Shared")
    add_member(server, owner, team_id, member, "member")

    page = signed_in(browser, contexts, server, member, transport)
    switch_to(page, "Shared", team_id)
    expect(page.get_by_label("Theme")).to_be_enabled()

    # Made a viewer elsewhere: the page follows at once.
    add_member(server, owner, team_id, member, "viewer")
    expect(page.get_by_label("Theme")).to_be_disabled()
    expect(page.locator("#doc-readonly")).to_be_visible()
    expect(page.locator("#doc-role")).to_contain_text("Your role: viewer")
    expect(page.locator("#notices")).to_contain_text("is now viewer")

    # Removed: back to Personal, with a message, and the team gone from the switcher.
    api(server, owner, "DELETE", f"/v1/teams/{team_id}/members/{member.user_id}")
    page.wait_for_function("() => globalThis.livesettings.doc === null")
    expect(page.get_by_label("Document")).to_have_value("")
    expect(page.locator("#notices")).to_contain_text("no longer a member of the team “Shared”")
    assert doc_options(page) == ["Personal"]
    wait_status(page, "Synced")
    expect(page.get_by_label("Theme")).to_be_enabled()
    expect(page.locator("#members-card")).to_be_hidden()
    screenshot(page, f"removed-{transport}")
    # The former member's browser keeps nothing of the team's document.
    leftovers = page.evaluate(
        "id => Object.keys(localStorage).filter(k => k.includes(id))", team_id
    )
    assert leftovers == []


def test_create_leave_and_delete_a_team_on_the_page(
    browser: Browser, contexts: list[BrowserContext], shared_server: ServerProcess
) -> None:
    server = shared_server
    owner, member = new_user(server, "owner"), new_user(server, "member")
    page = signed_in(browser, contexts, server, owner)
    page.get_by_label("Team name").fill("Launch crew")
    page.get_by_role("button", name="Create team").click()
    page.wait_for_function("() => (globalThis.livesettings.doc ?? '').startsWith('team:')")
    team_id = page.evaluate("globalThis.livesettings.doc").split(":", 1)[1]
    assert doc_options(page) == ["Personal", "Launch crew"]
    teams = api(server, owner, "GET", "/v1/teams")["teams"]
    assert [(t["team_id"], t["role"]) for t in teams] == [(team_id, "owner")]

    # The last owner cannot leave: said in words, and nothing changes.
    page.get_by_role("button", name="Leave team").click()
    page.get_by_role("button", name="Leave “Launch crew”").click()
    expect(page.locator("#team-error")).to_contain_text("last owner")
    expect(page.get_by_label("Document")).to_have_value(f"team:{team_id}")

    # A member leaves, after confirming; cancelling first changes nothing.
    add_member(server, owner, team_id, member, "member")
    other = signed_in(browser, contexts, server, member)
    switch_to(other, "Launch crew", team_id)
    other.get_by_role("button", name="Leave team").click()
    expect(other.locator("#team-confirm")).to_contain_text("Leave the team “Launch crew”?")
    other.get_by_role("button", name="Cancel").click()
    expect(other.locator("#team-confirm")).to_be_hidden()
    assert member.username in members(server, owner, team_id)
    other.get_by_role("button", name="Leave team").click()
    other.get_by_role("button", name="Leave “Launch crew”").click()
    other.wait_for_function("() => globalThis.livesettings.doc === null")
    expect(other.locator("#notices")).to_contain_text("You left the team “Launch crew”.")
    assert doc_options(other) == ["Personal"]
    assert member.username not in members(server, owner, team_id)

    # The owner deletes it.
    page.get_by_role("button", name="Delete team").click()
    page.get_by_role("button", name="Delete “Launch crew”").click()
    page.wait_for_function("() => globalThis.livesettings.doc === null")
    expect(page.locator("#notices")).to_contain_text("is deleted")
    assert doc_options(page) == ["Personal"]
    assert api(server, owner, "GET", "/v1/teams")["teams"] == []
    assert page_errors(page) == [] and page_errors(other) == []
