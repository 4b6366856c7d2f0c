"""Fixtures for the browser tests: real Chromium (Playwright) against a real server process.

The page is opened signed in by putting a session into the context's localStorage (the same
shape the page stores after its sign-in form), so most tests skip the form; one test goes
through it. Page options in the query string shorten the timings (`autoSaveDelay`,
`heartbeatInterval`, `heartbeatTimeout`, `maxReconnectDelay`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from tests.browser.helpers import CHROMIUM_ARGS, SERVER_SETTINGS
from tests.support.server import ServerProcess


@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="package")
def shared_server(
    tmp_path_factory: pytest.TempPathFactory, chromium_path: str
) -> Iterator[ServerProcess]:
    """One server for the tests that neither stop it nor change its settings."""
    proc = ServerProcess(tmp_path_factory.mktemp("browser") / "data", **SERVER_SETTINGS)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    """Contexts opened by a test (through `open_context`), closed after it."""
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        with contextlib.suppress(Exception):
            context.close()
