"""The browser client's files as served from /static/ (no build step).

The page (app.js) needs every module it imports, transitively, preloaded by index.html and
cached by sw.js for offline reloads. Modules of the npm package that the page does not import
(Node-only helpers, say) need neither.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

SERVER = Path(str(resources.files("livesettings"))) / "server"
STATIC = SERVER / "static"  # the settings page's own files
CLIENT = SERVER / "client"  # the npm package's files (clients/js/src)
FILES = {p.name: p for folder in (CLIENT, STATIC) for p in folder.iterdir()}
MODULES = sorted(name for name in FILES if name.endswith(".js") and name != "sw.js")
_IMPORT = re.compile(r'(?:from|import)\s*"\./([^"]+)"')


def imported_by(name: str) -> set[str]:
    """The modules ``name`` imports, directly or through others (itself included)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen or current not in FILES:
            continue
        seen.add(current)
        todo.extend(_IMPORT.findall(FILES[current].read_text("utf-8")))
    return seen


PAGE_MODULES = sorted(imported_by("app.js"))


def test_the_service_worker_keeps_every_module_for_offline_reloads() -> None:
    source = (STATIC / "sw.js").read_text("utf-8")
    shell = re.search(r"const SHELL = \[(.*?)\];", source, re.S)
    assert shell is not None
    cached = set(re.findall(r'"/static/([^"]+)"', shell.group(1)))
    missing = sorted(set(PAGE_MODULES) - cached)
    assert missing == [], "modules the page imports are missing from sw.js SHELL"
    assert cached <= set(FILES), "sw.js caches a file that is gone"


def test_modules_import_only_modules_that_exist() -> None:
    for name in MODULES:
        text = FILES[name].read_text("utf-8")
        for target in re.findall(r'from "\./([^"]+)"', text):
            assert target in FILES, f"{name} imports ./{target}"


def test_the_entry_point_re_exports_what_the_readme_documents() -> None:
    entry = (CLIENT / "livesettings.js").read_text("utf-8")
    exported = set()
    for names in re.findall(r"export \{([^}]*)\} from", entry):
        exported |= {n.strip() for n in names.split(",") if n.strip()}
    assert exported == {
        "Connection",
        "DEFAULT_OPTIONS",
        "FIELDS",
        "LiveSettings",
        "LiveSettingsError",
        "RealtimeSettingsService",
        "SESSION_KEY",
        "USER_KEY",
        "applyPatch",
        "canWrite",
        "createRealtimeSettingsService",
        "decodeJwt",
        "diffPatch",
        "getAt",
        "parsePath",
        "toPointer",
    }


def test_the_page_preloads_every_module_it_imports() -> None:
    page = (STATIC / "index.html").read_text("utf-8")
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/([^"]+)">', page))
    assert sorted(set(PAGE_MODULES) - {"app.js"} - preloaded) == [], "not preloaded"
    assert preloaded <= set(MODULES), "index.html preloads a module that is gone"


def test_the_page_imports_the_client_through_its_entry_point() -> None:
    assert {"app.js", "livesettings.js", "client.js", "state.js"} <= set(PAGE_MODULES)


ADMIN_MODULES = sorted(imported_by("admin.js"))


def test_the_admin_page_preloads_every_module_it_imports() -> None:
    page = (STATIC / "admin.html").read_text("utf-8")
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/([^"]+)">', page))
    assert sorted(set(ADMIN_MODULES) - {"admin.js"} - preloaded) == [], "not preloaded"
    assert preloaded <= set(MODULES), "admin.html preloads a module that is gone"
    # The settings page's own session code, not a copy of it.
    assert {"admin_api.js", "session.js", "http.js"} <= set(ADMIN_MODULES)


def test_the_service_worker_leaves_the_admin_page_to_the_network() -> None:
    # The dashboard is live data only: nothing of it is kept for offline reloads.
    source = (STATIC / "sw.js").read_text("utf-8")
    assert "admin" not in source
