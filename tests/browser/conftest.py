"""Fixtures for the browser tests: real Chromium (Playwright) against a real server process.

The page is opened signed in by putting a session into the context's localStorage (the same
shape the page stores after its sign-in form), so most tests skip the form; one test goes
through it. Page options in the query string shorten the timings (`autoSaveDelay`,
`heartbeatInterval`, `heartbeatTimeout`, `maxReconnectDelay`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext

from tests.browser.helpers import SERVER_SETTINGS, closing_contexts, launched_chromium
from tests.support.server import ServerProcess


@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Browser]:
    with launched_chromium(chromium_path) as chromium:
        yield chromium


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
def contexts() -> Iterator[list[BrowserContext]]:
    """Contexts opened by a test (through `open_context`), closed after it."""
    with closing_contexts() as opened:
        yield opened
