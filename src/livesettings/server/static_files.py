"""The files under ``/static/``: the settings page's own files and the browser client.

The browser client is the npm package ``livesettings`` (``clients/js/src`` in the repository).
``server/client`` is a link to that folder, so the server serves the package's own files: one
source, no copies. A built wheel holds the files themselves (setuptools follows the link).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from starlette.staticfiles import StaticFiles

__all__ = ["CLIENT_DIR", "STATIC_DIR", "static_files"]

_SERVER = Path(str(resources.files("livesettings"))) / "server"
STATIC_DIR = _SERVER / "static"
CLIENT_DIR = (_SERVER / "client").resolve()


def static_files() -> StaticFiles:
    """One ``/static/`` mount over both folders; the page's files win a name clash."""
    files = StaticFiles(directory=STATIC_DIR)
    files.all_directories = [STATIC_DIR, CLIENT_DIR]
    return files
