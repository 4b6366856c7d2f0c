"""uPlot, the admin page's charting library: vendored from the npm package pinned in the root
package.json, byte for byte, so that the copy served under /static/vendor/ cannot drift."""

from __future__ import annotations

import json

import pytest

from livesettings.server.static_files import STATIC_DIR
from tests.clients.react_support import REPO
from tests.conftest import require_service

VENDOR = STATIC_DIR / "vendor"
UPLOT = REPO / "node_modules" / "uplot"
COPIES = {
    "uPlot.iife.min.js": "dist/uPlot.iife.min.js",
    "uPlot.min.css": "dist/uPlot.min.css",
    "uPlot.LICENSE": "LICENSE",
}


def test_uplot_is_pinned_to_an_exact_version() -> None:
    package = json.loads((REPO / "package.json").read_text("utf-8"))
    version = package["devDependencies"]["uplot"]
    assert version[0].isdigit(), f"uplot must be pinned exactly, not {version!r}"
    lock = json.loads((REPO / "package-lock.json").read_text("utf-8"))
    assert lock["packages"]["node_modules/uplot"]["version"] == version
    banner = (VENDOR / "uPlot.iife.min.js").read_text("utf-8").splitlines()[0]
    assert f"(v{version})" in banner, banner


@pytest.mark.parametrize(("vendored", "source"), sorted(COPIES.items()))
def test_the_vendored_files_are_the_npm_package_files(vendored: str, source: str) -> None:
    require_service(
        "the npm workspace (run npm ci at the repository root)", (UPLOT / "package.json").exists()
    )
    installed = json.loads((UPLOT / "package.json").read_text("utf-8"))["version"]
    pinned = json.loads((REPO / "package.json").read_text("utf-8"))["devDependencies"]["uplot"]
    assert installed == pinned, "node_modules is stale: run npm ci"
    assert (VENDOR / vendored).read_bytes() == (UPLOT / source).read_bytes(), (
        f"static/vendor/{vendored} differs from node_modules/uplot/{source}: copy it again"
    )


def test_the_admin_page_loads_the_vendored_files() -> None:
    page = (STATIC_DIR / "admin.html").read_text("utf-8")
    assert '<script src="/static/vendor/uPlot.iife.min.js" defer></script>' in page
    assert '<link rel="stylesheet" href="/static/vendor/uPlot.min.css">' in page
