"""Teams in the React example, in Chromium against a real server: ``<LiveSettingsProvider doc>``
follows a team's document live, ``useTeams`` lists, creates and leaves teams, ``useRole``
follows the role as the owner changes it, and a removed member's page shows the error.

The example (clients/react/examples/main.jsx) takes ``doc=team:<id>`` (the seed's page over
that team's document) or ``teams=1`` (its teams page: a switcher, and the chosen document in a
second provider whose controls follow the role) in its URL fragment.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.helpers import User, api_get, new_user, wait_until
from tests.clients.react_support import app_url, new_context, open_app, wait_state
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser


def _call(server: ServerProcess, user: User, method: str, path: str, body: Any = None) -> Any:
    with server.client() as http:
        headers = {"Authorization": f"Bearer {user.token}"}
        response = http.request(method, path, json=body, headers=headers)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def _team(server: ServerProcess, owner: User, name: str, **members: tuple[User, str]) -> str:
    """A team of `owner` with `members` (label: (user, role)); its id."""
    team_id = str(_call(server, owner, "POST", "/v1/teams", {"name": name})["team_id"])
    for user, role in members.values():
        body = {"username": user.username, "role": role}
        _call(server, owner, "PUT", f"/v1/teams/{team_id}/members/{user.username}", body)
    return team_id


def _no_errors(*pages: Page) -> None:
    for page in pages:
        # Chromium logs each 4xx answer (a refused leave: 409); nothing else may be logged.
        errors = page.errors  # type: ignore[attr-defined]
        assert [e for e in errors if not e.startswith("Failed to load resource")] == []


def test_a_team_document_is_live_in_both_members_pages_and_the_role_follows(
    browser: Browser, contexts: list[BrowserContext], server: ServerProcess, site: str
) -> None:
    owner = new_user(server, "team-owner")
    member = new_user(server, "team-member")
    team_id = _team(server, owner, "Design", member=(member, "member"))
    doc = f"team:{team_id}"

    # The owner picks the team in the switcher: the inner provider follows its document.
    mine = open_app(new_context(browser, contexts), app_url(site, server.url, owner.token, teams=1))
    team_button = mine.get_by_role("button", name="Design (owner)")
    expect(team_button).to_be_visible()
    expect(mine.get_by_label("Personal settings")).to_be_visible()
    team_button.click()
    expect(team_button).to_have_attribute("aria-pressed", "true")
    expect(mine.get_by_label("Team settings")).to_be_visible()
    expect(mine.locator('[data-part="role"]')).to_have_text("Your role: owner")
    wait_state(mine, "synced")

    # The member's page follows the team's document (`doc` in the fragment).
    theirs = open_app(
        new_context(browser, contexts), app_url(site, server.url, member.token, doc=doc)
    )
    mine.get_by_label("Theme").select_option("dark")
    expect(theirs.get_by_label("Theme")).to_have_value("dark")
    theirs.get_by_label("Language").fill("de")
    theirs.get_by_label("Language").press("Enter")
    expect(mine.get_by_label("Language")).to_have_value("de")
    wait_state(theirs, "synced")
    team = _call(server, owner, "GET", f"/v1/teams/{team_id}/settings")["settings"]
    assert (team["theme"], team["language"]) == ("dark", "de")
    for user in (owner, member):  # the users' own documents hold nothing of it
        own = api_get(server, user.token)["settings"]
        assert (own["theme"], own["language"]) == ("light", "en")

    # Back to "Personal": the inner provider makes its client again, for the user's own.
    mine.get_by_role("button", name="Personal").click()
    expect(mine.get_by_label("Personal settings")).to_be_visible()
    expect(mine.get_by_label("Theme")).to_have_value("light")

    # The member in the teams page: their role, the reason their controls are limited, and
    # a demotion to viewer disables the form at once, with the reason shown.
    page = open_app(
        new_context(browser, contexts), app_url(site, server.url, member.token, teams=1)
    )
    page.get_by_role("button", name="Design (member)").click()
    expect(page.locator('[data-part="role"]')).to_have_text("Your role: member")
    expect(page.locator('[data-part="reason"]')).to_contain_text("API keys")
    expect(page.get_by_label("Theme")).to_be_enabled()
    body = {"role": "viewer"}
    _call(server, owner, "PUT", f"/v1/teams/{team_id}/members/{member.user_id}", body)
    expect(page.locator('[data-part="role"]')).to_have_text("Your role: viewer")
    expect(page.locator('[data-part="reason"]')).to_contain_text("viewers")
    expect(page.get_by_label("Theme")).to_be_disabled()
    expect(page.get_by_role("button", name="Design (viewer)")).to_be_visible()  # useTeams
    _no_errors(mine, theirs, page)


def test_create_and_leave_teams_and_a_removed_member_sees_the_error(
    browser: Browser, contexts: list[BrowserContext], server: ServerProcess, site: str
) -> None:
    owner = new_user(server, "team-creator")
    member = new_user(server, "team-leaver")
    page = open_app(new_context(browser, contexts), app_url(site, server.url, owner.token, teams=1))

    page.get_by_label("Team name").fill("Ops")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("button", name="Ops (owner)")).to_have_attribute("aria-pressed", "true")
    expect(page.locator('[data-part="role"]')).to_have_text("Your role: owner")
    wait_state(page, "synced")
    teams = _call(server, owner, "GET", "/v1/teams")["teams"]
    assert [(t["name"], t["role"]) for t in teams] == [("Ops", "owner")]

    # The last owner cannot leave: the rejection is shown, and the team stays.
    page.get_by_role("button", name="Leave Ops").click()
    expect(page.get_by_role("alert")).to_contain_text("last_owner")
    expect(page.get_by_role("button", name="Ops (owner)")).to_be_visible()

    # A member leaves from their own page: the team goes from their list.
    team_id = str(teams[0]["team_id"])
    body = {"username": member.username, "role": "member"}
    _call(server, owner, "PUT", f"/v1/teams/{team_id}/members/{member.username}", body)
    leaver = open_app(
        new_context(browser, contexts), app_url(site, server.url, member.token, teams=1)
    )
    leaver.get_by_role("button", name="Leave Ops").click()
    expect(leaver.get_by_role("button", name="Ops (member)")).to_have_count(0)
    members = _call(server, owner, "GET", f"/v1/teams/{team_id}/members")["members"]
    assert [m["user_id"] for m in members] == [owner.user_id]

    # Added again, then removed while their page follows the team: the page says so, and a
    # later change of the team never reaches it.
    _call(server, owner, "PUT", f"/v1/teams/{team_id}/members/{member.username}", body)
    removed = open_app(
        new_context(browser, contexts),
        app_url(site, server.url, member.token, doc=f"team:{team_id}"),
    )
    _call(server, owner, "DELETE", f"/v1/teams/{team_id}/members/{member.user_id}")
    wait_state(removed, "error")
    expect(removed.get_by_role("status")).to_contain_text("no longer a member")
    page.get_by_label("Theme").select_option("dark")
    wait_until(
        lambda: (
            _call(server, owner, "GET", f"/v1/teams/{team_id}/settings")["settings"]["theme"]
            == "dark"
        ),
        what="the owner's change saved",
    )
    expect(removed.get_by_label("Theme")).to_have_value("light")
    _no_errors(page, leaver)
