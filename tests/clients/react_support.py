"""The React example for the browser tests: built with esbuild, served by a static server.

The example (clients/react/examples/main.jsx) takes its options from the URL's fragment: the
livesettings server, an access token, `manual=1` for the page with manual saving, and short
client timings. The page's origin is not the server's, so the server must allow it
(LIVESETTINGS_ALLOWED_ORIGINS).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from playwright.sync_api import Browser, BrowserContext, Page

from tests.conftest import require_service

__all__ = [
    "REPO",
    "STATE_RECORDER",
    "app_url",
    "build_example",
    "new_context",
    "open_app",
    "serve_directory",
    "states_seen",
    "wait_state",
]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "clients" / "react" / "examples"
INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>livesettings-react example</title>
<link rel="icon" href="data:,"></head>
<body><div id="root"></div><script type="module" src="app.js"></script></body></html>
"""
# Records every data-state the status indicator takes, so that a state held for a moment
# only (syncing, while an edit is in flight) is seen all the same.
STATE_RECORDER = """
window.__states = [];
new MutationObserver(() => {
  const el = document.querySelector('[role="status"][data-state]');
  if (!el) return;
  const label = el.querySelector('[data-part="label"]');
  const seen = el.getAttribute('data-state') + ' ' + (label ? label.textContent : '');
  if (window.__states[window.__states.length - 1] !== seen) window.__states.push(seen);
}).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
"""


def build_example(out_dir: Path) -> Path:
    """Bundle main.jsx (real React, development build) into `out_dir`, with an index.html."""
    esbuild = REPO / "node_modules" / ".bin" / "esbuild"
    require_service("esbuild (run npm ci at the repository root)", esbuild.exists())
    require_service("node", shutil.which("node") is not None)
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(esbuild),
            str(EXAMPLES / "main.jsx"),
            "--bundle",
            "--format=esm",
            "--jsx=automatic",
            '--define:process.env.NODE_ENV="development"',
            f"--outfile={out_dir / 'app.js'}",
            "--log-level=warning",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    (out_dir / "index.html").write_text(INDEX_HTML, encoding="utf-8")
    return out_dir


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """A static HTTP server for `directory` on a random loopback port; yields its origin."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def new_context(browser: Browser, contexts: list[BrowserContext]) -> BrowserContext:
    """A fresh browser context (its own storage), closed with the test's `contexts`."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    contexts.append(context)
    return context


def app_url(site: str, server: str, token: str, **options: Any) -> str:
    """The example's address with its options in the fragment."""
    return f"{site}/#" + urlencode({"server": server, "token": token, **options})


def open_app(context: BrowserContext, url: str, *, synced: bool = True) -> Page:
    """Open the example; page.errors collects uncaught exceptions and console errors."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    page.add_init_script(STATE_RECORDER)
    page.goto(url)
    if synced:
        wait_state(page, "synced")
    return page


def wait_state(page: Page, state: str, timeout: float = 10.0) -> None:
    """Wait until the status indicator's data-state is `state`."""
    try:
        page.wait_for_function(
            "s => document.querySelector('[role=\"status\"]')?.getAttribute('data-state') === s",
            arg=state,
            timeout=timeout * 1000,
        )
    except Exception as exc:
        now = page.evaluate(
            "document.querySelector('[role=\"status\"]')?.textContent ?? '(no indicator)'"
        )
        raise AssertionError(f"the indicator never became {state!r}; it says {now!r}") from exc


def states_seen(page: Page) -> list[str]:
    """The indicator's "data-state words" since the page loaded, in order (repeats collapsed)."""
    return list(page.evaluate("window.__states"))
