"""The operator dashboard at /admin, in Chromium against a real server: an admin made with the
CLI signs in and watches the charts move under load; a non-admin is refused; search, revoke
and remove behind the page's confirmation dialog. Screenshots at 1280x800 go to
test-artifacts/ (git-ignored)."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from livesettings.server.security import CSP
from tests.browser.helpers import (
    ARTIFACTS,
    PASSWORD,
    SERVER_SETTINGS,
    new_user,
    open_context,
    wait_until,
)
from tests.conftest import require_service
from tests.support.postgres import set_up_database
from tests.support.server import ServerProcess
from tests.support.ws import WsClient

pytestmark = pytest.mark.browser
T = TypeVar("T")

VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
LOAD_SECONDS = 5.0
SOCKETS = 3
SHORT_TTL = 3  # seconds: an access token lifetime the page must renew past
WRITE_RATE = 30.0  # writes per second: the server allows 50 per user


@dataclass
class AdminServer:
    """A server whose data dir holds an admin made by `livesettings user add --admin`."""

    proc: ServerProcess
    admin: str


@pytest.fixture(scope="module")
def admin_server(
    tmp_path_factory: pytest.TempPathFactory, chromium_path: str
) -> Iterator[AdminServer]:
    proc = ServerProcess(tmp_path_factory.mktemp("admin") / "data", **SERVER_SETTINGS)
    # Before the server starts: the CLI sets the embedded store up, as `serve` would.
    admin = _add_admin(proc)
    proc.start()
    try:
        yield AdminServer(proc, admin)
    finally:
        proc.stop()


def _add_admin(proc: ServerProcess) -> str:
    """An admin made as an operator would: ``livesettings user add NAME --admin``."""
    admin = f"admin-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(
        [sys.executable, "-m", "livesettings", "user", "add", admin, "--admin", "--password-stdin"],
        input=PASSWORD + "\n",
        env=proc.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    return admin


def _open_admin(browser: Browser, contexts: list[BrowserContext], url: str) -> Page:
    """A fresh profile on /admin, recording uncaught errors and console errors (CSP)."""
    page = open_context(browser, contexts, url, viewport=VIEWPORT).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    page.goto(f"{url}/admin")
    return page


def _sign_in(page: Page, username: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def _charts(page: Page) -> dict[str, Any]:
    snapshot: dict[str, Any] = page.evaluate("window.__adminCharts.snapshot()")
    return snapshot


def _peak(page: Page, chart: str, label: str) -> float:
    """The highest value of one series of one chart (0 when it has none)."""
    values = _charts(page)[chart]["series"][label]
    return max((v for v in values if v is not None), default=0)


def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")


def _load(proc: ServerProcess, token: str, stop: threading.Event, counts: dict[str, int]) -> None:
    """HTTP PATCHes of one user's settings at WRITE_RATE, under the server's per-user write
    limit, until `stop`; and a few malformed bodies, for the errors chart."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=proc.url, timeout=10.0) as http:
        i = 0
        start = time.monotonic()
        while not stop.is_set():
            response = http.patch("/v1/settings", json={"preferences": {"n": i}}, headers=headers)
            counts["ok" if response.status_code == 200 else "failed"] += 1
            if i % 25 == 0:
                bad = http.patch(
                    "/v1/settings",
                    content=b"{not json",
                    headers={**headers, "Content-Type": "application/json"},
                )
                counts["malformed"] += bad.status_code == 400
            i += 1
            time.sleep(max(0.0, start + i / WRITE_RATE - time.monotonic()))


def test_an_admin_watches_the_charts_move_under_load(
    browser: Browser, contexts: list[BrowserContext], admin_server: AdminServer
) -> None:
    proc = admin_server.proc
    with httpx.Client(base_url=proc.url) as http:
        page_headers = http.get("/admin").headers
        assert page_headers["content-security-policy"] == CSP
        assert page_headers["x-frame-options"] == "DENY"
        assert page_headers["x-content-type-options"] == "nosniff"

    page = _open_admin(browser, contexts, proc.url)
    _sign_in(page, admin_server.admin)
    expect(page.locator("#dashboard")).to_be_visible()
    for title in (
        "Connections",
        "Writes per second",
        "Conflicts per second",
        "Write → push latency",
        "Errors by code",
        "Group-commit size",
    ):
        expect(page.get_by_role("figure", name=title, exact=True)).to_be_visible()
    wait_until(lambda: _charts(page)["writes"]["points"] > 0, what="the first stats", page=page)
    before = _charts(page)

    writer = new_user(proc, "load")
    sockets = []
    for _ in range(SOCKETS):
        ws = WsClient(proc.ws_url)
        ws.auth(writer.token)
        ws.subscribe()
        sockets.append(ws)
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0, "malformed": 0}
    load = threading.Thread(target=_load, args=(proc, writer.token, stop, counts), daemon=True)
    started = time.monotonic()
    load.start()
    try:
        page.wait_for_timeout(LOAD_SECONDS * 1000)
        # The points of the load's last second arrive with the next poll.
        wait_until(
            lambda: _peak(page, "writes", "Writes/s") > 0,
            timeout=5,
            what="a second with writes on the writes chart",
            page=page,
        )
        wait_until(
            lambda: _peak(page, "connections", "WebSocket") >= SOCKETS,
            timeout=5,
            what="the load's sockets on the connections chart",
            page=page,
        )
        _screenshot(page, "admin-dashboard-1280x800.png")
    finally:
        stop.set()
        load.join(10)
        for ws in sockets:
            # Pushes these clients never read fill their queue: do not wait for the server's
            # close frame behind them.
            ws.conn.close_timeout = 0.5
            ws.close()
    assert counts["ok"] > 50 and counts["failed"] == 0 and counts["malformed"] > 0, counts
    assert time.monotonic() - started < 20

    after = _charts(page)
    for chart in ("connections", "writes", "conflicts", "latency", "errors", "commit"):
        assert after[chart]["points"] > before[chart]["points"], chart
    assert after["connections"]["labels"] == ["WebSocket", "SSE"]
    assert after["latency"]["labels"] == ["p50", "p99"]
    assert any(v for v in after["commit"]["series"]["Writes per commit"]), "no commit sizes"
    assert any(v for v in after["latency"]["series"]["p99"]), "no push latency"
    assert "malformed_json" in after["errors"]["labels"], after["errors"]["labels"]
    assert any(after["errors"]["series"]["malformed_json"]), "no malformed_json errors"
    # The figure's caption says the latest values in words too.
    expect(page.locator("#chart-writes-latest")).to_contain_text("Writes/s")

    nodes = page.locator("#nodes-body tr")
    expect(nodes).to_have_count(1)
    expect(nodes.first).to_contain_text("this node")
    expect(nodes.first).to_contain_text("live")
    expect(page.locator("#audit-body tr").first).to_be_visible()
    assert re.match(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", page.locator("#audit-body td").first.inner_text()
    )

    # A whole-page view as well, for the tables below the charts.
    height = int(page.evaluate("document.documentElement.scrollHeight"))
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(height, 800)})
    _screenshot(page, "admin-dashboard-full-1280.png")
    page.set_viewport_size(VIEWPORT)
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_non_admin_is_refused(
    browser: Browser, contexts: list[BrowserContext], admin_server: AdminServer
) -> None:
    proc = admin_server.proc
    user = new_user(proc, "plain")
    with httpx.Client(base_url=proc.url) as http:
        for path in ("/v1/admin/stats", "/v1/admin/users", "/v1/admin/teams", "/v1/admin/audit"):
            assert http.get(path).status_code == 401, path
            refused = http.get(path, headers={"Authorization": f"Bearer {user.token}"})
            assert refused.status_code == 403, (path, refused.text)
        refused = http.post(
            f"/v1/admin/users/{user.user_id}/revoke",
            headers={"Authorization": f"Bearer {user.token}"},
        )
        assert refused.status_code == 403

    page = _open_admin(browser, contexts, proc.url)
    _sign_in(page, user.username)
    expect(page.get_by_role("heading", name="Not an admin")).to_be_visible()
    expect(page.locator("#denied-message")).to_contain_text(f"{user.username} is not an admin")
    expect(page.locator("#dashboard")).to_be_hidden()
    _screenshot(page, "admin-not-an-admin-1280x800.png")
    # Signing out brings the form back, for another user.
    page.get_by_role("button", name="Sign in as someone else").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


UNLABELLED = """() => Array.from(document.querySelectorAll("input, select, textarea, button"))
  .filter((el) => el.offsetParent !== null)
  .filter((el) => el.tagName === "BUTTON" ? !el.textContent.trim() : !el.labels?.length)
  .map((el) => el.id || el.outerHTML.slice(0, 80))"""

USER_FIELDS = {
    "user_id",
    "username",
    "created_at",
    "admin",
    "revision",
    "updated_at",
    "teams",
    "connections",
    "last_seen",
}


def _token(proc: ServerProcess, username: str) -> str:
    with httpx.Client(base_url=proc.url) as http:
        response = http.post("/v1/auth/token", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


def _refresh(proc: ServerProcess, refresh_token: str) -> int:
    with httpx.Client(base_url=proc.url) as http:
        return http.post("/v1/auth/refresh", json={"refresh_token": refresh_token}).status_code


def _search(page: Page, text: str) -> None:
    page.get_by_label("Search users and teams").fill(text)
    page.get_by_role("button", name="Search", exact=True).click()


def test_search_revoke_and_remove_behind_a_confirmation(
    browser: Browser, contexts: list[BrowserContext], admin_server: AdminServer
) -> None:
    proc = admin_server.proc
    target = new_user(proc, "target")
    other = new_user(proc, "bystander")
    page = _open_admin(browser, contexts, proc.url)
    _sign_in(page, admin_server.admin)
    expect(page.locator("#dashboard")).to_be_visible()

    _search(page, target.username)
    rows = page.locator("#users-body tr")
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row).to_contain_text(target.username)
    expect(row).to_contain_text(target.user_id)
    with httpx.Client(base_url=proc.url) as http:
        found = http.get(
            "/v1/admin/users",
            params={"q": target.username},
            headers={"Authorization": f"Bearer {_token(proc, admin_server.admin)}"},
        )
        assert found.status_code == 200, found.text
        (listed,) = found.json()["users"]
        assert set(listed) <= USER_FIELDS, set(listed) - USER_FIELDS  # no secret, no last4
    _search(page, target.user_id)  # by id as well
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(target.username)

    dialog = page.locator("#confirm-dialog")
    # Cancel changes nothing.
    row.get_by_role("button", name="Revoke sessions").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(target.username)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#people-message")).to_have_text("Nothing was changed.")
    with httpx.Client(base_url=proc.url) as http:
        mine = http.get("/v1/settings", headers={"Authorization": f"Bearer {target.token}"})
        assert mine.status_code == 200

    # Confirm: every session of the user ends (its refresh token no longer works).
    row.get_by_role("button", name="Revoke sessions").click()
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator("#people-message")).to_contain_text("are revoked")
    assert _refresh(proc, target.session["refresh_token"]) == 401
    assert _refresh(proc, other.session["refresh_token"]) == 200  # nobody else's

    page.get_by_role("row", name=re.compile(target.username)).get_by_role(
        "button", name="Remove user"
    ).click()
    expect(dialog).to_contain_text("cannot be undone")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator("#people-message")).to_contain_text(f"{target.username} is removed")
    expect(rows).to_have_count(0)
    with httpx.Client(base_url=proc.url) as http:
        gone = http.post("/v1/auth/token", json={"username": target.username, "password": PASSWORD})
        assert gone.status_code == 401, gone.text
    _search(page, other.username)
    expect(rows).to_have_count(1)  # the bystander is still there
    assert page.evaluate(UNLABELLED) == []

    # A reload keeps the admin signed in: the refresh cookie, as on the settings page.
    page.reload()
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.get_by_text(f"Signed in as {admin_server.admin}")).to_be_visible()
    assert page.errors == []  # type: ignore[attr-defined]


def test_the_dashboard_outlives_its_access_token(
    browser: Browser, contexts: list[BrowserContext], tmp_path: Path
) -> None:
    """The page renews its access token from the refresh cookie, neither on every call nor
    too late: the charts keep moving past several token lifetimes."""
    proc = ServerProcess(tmp_path / "data", **SERVER_SETTINGS, access_token_ttl=SHORT_TTL)
    admin = _add_admin(proc)
    proc.start()
    try:
        page = _open_admin(browser, contexts, proc.url)
        refreshes: list[int] = []
        page.on(
            "response",
            lambda r: refreshes.append(r.status) if r.url.endswith("/v1/auth/refresh") else None,
        )
        _sign_in(page, admin)
        expect(page.locator("#dashboard")).to_be_visible()
        wait_until(lambda: _charts(page)["writes"]["points"] > 0, what="the first stats", page=page)
        before = _charts(page)["writes"]["points"]
        page.wait_for_timeout(SHORT_TTL * 2.5 * 1000)
        assert _charts(page)["writes"]["points"] >= before + SHORT_TTL * 2
        expect(page.locator("#dashboard")).to_be_visible()
        # About one renewal per three quarters of a lifetime, each one accepted.
        assert 2 <= len(refreshes) <= 5, refreshes
        assert set(refreshes) == {200}, refreshes
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        proc.stop()


@contextlib.contextmanager
def _outside_the_loop(manager: contextlib.AbstractContextManager[T]) -> Iterator[T]:
    """`manager` entered and left in another thread: the database helpers run their own
    asyncio loop, and Playwright's sync API holds this thread's."""
    with ThreadPoolExecutor(1) as pool:
        value = pool.submit(manager.__enter__).result()
        try:
            yield value
        finally:
            pool.submit(manager.__exit__, None, None, None).result()


@pytest.mark.postgres
def test_the_nodes_table_shows_every_node_of_a_cluster(
    browser: Browser,
    contexts: list[BrowserContext],
    tmp_path: Path,
    postgres_available: bool,
) -> None:
    require_service("PostgreSQL (127.0.0.1:5432)", postgres_available)
    with _outside_the_loop(set_up_database("ls_adm")) as db:
        settings = {
            **SERVER_SETTINGS,
            **db.settings(bus_url="postgres"),
            "heartbeat_interval": "0.5",
        }
        first = ServerProcess(tmp_path / "node1", **settings)
        second = ServerProcess(tmp_path / "node2", **settings)
        admin = _add_admin(first)
        first.start()
        try:
            second.start()
            page = _open_admin(browser, contexts, first.url)
            _sign_in(page, admin)
            rows = page.locator("#nodes-body tr")
            expect(rows).to_have_count(2)  # the other node's heartbeat came over the bus
            expect(page.locator("#nodes-body tr", has_text="this node")).to_have_count(1)
            expect(page.locator("#nodes-body tr.stale")).to_have_count(0)
            for row in rows.all():
                expect(row).to_contain_text("live")
                expect(row).to_contain_text(re.compile(r"\d+ s ago"))
            page.locator("#nodes-table").scroll_into_view_if_needed()
            _screenshot(page, "admin-two-nodes-1280x800.png")
            second.stop()  # its last heartbeat says it is stopping
            stale = page.locator("#nodes-body tr.stale")
            expect(stale).to_have_count(1)
            expect(stale).to_contain_text("stale")
            expect(stale).not_to_contain_text("this node")
            assert page.errors == []  # type: ignore[attr-defined]
        finally:
            second.stop()
            first.stop()
