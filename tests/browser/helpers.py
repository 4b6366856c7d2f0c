"""Helpers of the browser tests: users, signed-in contexts, the page's status, a proxy."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, WebSocket, sync_playwright

from livesettings.server.cookies import COOKIE_PATH, REFRESH_COOKIE
from tests.support.server import ServerProcess

__all__ = [
    "ARTIFACTS",
    "CHROMIUM_ARGS",
    "PASSWORD",
    "SERVER_SETTINGS",
    "FrameLog",
    "FreezableProxy",
    "User",
    "api_get",
    "changes_since",
    "new_user",
    "open_context",
    "open_page",
    "refresh_cookie",
    "sign_in",
    "status_text",
    "wait_status",
    "wait_until",
]


@contextlib.contextmanager
def launched_chromium(chromium_path: str) -> Iterator[Browser]:
    """Headless Chromium for a fixture, closed after it."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@contextlib.contextmanager
def closing_contexts() -> Iterator[list[BrowserContext]]:
    """The browser contexts a test opens (appended to the list), closed after it."""
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        with contextlib.suppress(Exception):
            context.close()


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
USER_KEY = "livesettings:user"  # the page's signed-in user: no token
PASSWORD = "correct horse battery 42"
# Enough for the sign-ups, sockets and refreshes (every page load is one) of the whole browser
# suite on one shared server, all from one address.
SERVER_SETTINGS: dict[str, Any] = {
    "signup_limit_per_address": 1000,
    "connect_burst": 1000,
    "auth_burst_per_address": 1000,
}


@dataclass
class User:
    """A built-in user signed up through the HTTP API."""

    username: str
    user_id: str
    session: dict[str, Any]
    extra_sessions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def token(self) -> str:
        return str(self.session["access_token"])


def new_user(server: ServerProcess, prefix: str = "user") -> User:
    """Sign up a fresh user; its session is what `open_context` signs a browser in with."""
    username = f"{prefix}-{uuid.uuid4().hex[:8]}"
    with server.client() as client:
        response = client.post("/v1/auth/signup", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        body = response.json()
    return User(username, body["user_id"], _session(body, username))


def sign_in(server: ServerProcess, user: User) -> dict[str, Any]:
    """Another session (its own refresh-token family) for the same user: another device."""
    with server.client() as client:
        response = client.post(
            "/v1/auth/token", json={"username": user.username, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        return _session(response.json(), user.username)


def _session(body: dict[str, Any], username: str) -> dict[str, Any]:
    return {
        "access_token": body["access_token"],
        "refresh_token": body["refresh_token"],
        "expires_at": body["expires_at"],
        "user_id": body["user_id"],
        "username": username,
    }


def open_context(
    browser: Browser,
    contexts: list[BrowserContext],
    url: str,
    session: dict[str, Any] | None = None,
    **options: Any,
) -> BrowserContext:
    """A new browser profile ("device"), signed in with `session` when given.

    Signed in the way the page leaves a browser after its sign-in form: the refresh token as
    the HttpOnly cookie, the user (no token) in localStorage. The page spends that refresh
    token on its first load, so a session signs in one context only (`sign_in` makes more).
    """
    state: dict[str, Any] = {"cookies": [], "origins": []}
    if session is not None:
        user = {"user_id": session["user_id"], "username": session["username"]}
        state["origins"] = [
            {"origin": url, "localStorage": [{"name": USER_KEY, "value": json.dumps(user)}]}
        ]
        state["cookies"] = [
            {
                "name": REFRESH_COOKIE,
                "value": session["refresh_token"],
                "domain": url.split("//", 1)[1].rsplit(":", 1)[0],
                "path": COOKIE_PATH,
                "expires": -1,
                "httpOnly": True,
                "secure": False,
                "sameSite": "Strict",
            }
        ]
    context = browser.new_context(storage_state=state, **options)  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    contexts.append(context)
    return context


def open_page(context: BrowserContext, url: str, query: str = "", *, synced: bool = True) -> Page:
    """The settings page, waited for until it is in sync with the server."""
    page = context.new_page()
    errors: list[str] = []
    # Uncaught exceptions and console errors (a CSP violation is one).
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    page.goto(f"{url}/{'?' + query if query else ''}")
    if synced:
        wait_status(page, "Synced")
    return page


def refresh_cookie(context: BrowserContext) -> dict[str, Any] | None:
    """The refresh cookie as the browser holds it (Playwright sees HttpOnly cookies)."""
    for cookie in context.cookies():
        if cookie.get("name") == REFRESH_COOKIE:
            return dict(cookie)
    return None


def status_text(page: Page) -> str:
    return str(page.text_content("#status-text"))


def wait_status(page: Page, prefix: str, timeout: float = 10.0) -> None:
    """Wait until the status indicator's words start with `prefix`."""
    try:
        page.wait_for_function(
            "p => document.getElementById('status-text').textContent.startsWith(p)",
            arg=prefix,
            timeout=timeout * 1000,
        )
    except Exception as exc:
        raise AssertionError(
            f"status never became {prefix!r}; it is {status_text(page)!r}"
        ) from exc


def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, what: str = "", page: Page | None = None
) -> Any:
    """Poll `predicate` until it returns something truthy.

    Give `page` when the predicate reads a `FrameLog`: Playwright's sync API delivers events
    only while a Playwright call runs, so the wait must be one (`wait_for_timeout`).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s: {what}")
        if page is not None:
            page.wait_for_timeout(50)
        else:
            time.sleep(0.05)


def api_get(server: ServerProcess, token: str) -> dict[str, Any]:
    """GET /v1/settings from outside the browser."""
    with server.client() as client:
        response = client.get("/v1/settings", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def changes_since(server: ServerProcess, token: str, since: int) -> list[dict[str, Any]]:
    """The change log after `since` (the revisions really committed)."""
    with server.client() as client:
        response = client.get(
            "/v1/settings/changes",
            params={"since": since, "limit": 1000},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        changes: list[dict[str, Any]] = response.json()["changes"]
        return changes


class FrameLog:
    """Every WebSocket frame a page sends and receives."""

    def __init__(self, page: Page) -> None:
        self.sent: list[str] = []
        self.received: list[str] = []
        self.sockets = 0
        page.on("websocket", self._on_socket)

    def _on_socket(self, ws: WebSocket) -> None:
        self.sockets += 1
        ws.on("framesent", lambda payload: self.sent.append(_text(payload)))
        ws.on("framereceived", lambda payload: self.received.append(_text(payload)))


def _text(payload: str | bytes) -> str:
    return payload if isinstance(payload, str) else payload.decode("utf-8", "replace")


class FreezableProxy:
    """A TCP proxy in front of the server that can go silent without closing anything.

    Frozen, it drops every byte in both directions and accepts new connections without
    forwarding them: what a dead network looks like to an open socket, which the browser's
    `offline` event does not report. Only the client's heartbeat can notice it.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not self.frozen.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
