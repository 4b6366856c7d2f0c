"""``npm pack`` gives installable tarballs: both packages are packed, installed into a fresh
project (React from the npm cache), and imported by name there, outside the workspace."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.clients.conftest import JS, REPO

REACT = REPO / "clients" / "react"
CLIENT_NAMES = [
    "Connection",
    "LiveSettings",
    "LiveSettingsError",
    "RealtimeSettingsService",
    "applyPatch",
    "createRealtimeSettingsService",
    "diffPatch",
]
REACT_NAMES = [
    "LiveSettingsProvider",
    "RealtimeStatusIndicator",
    "SettingsForm",
    "useModelSettings",
    "useRealtimeSettings",
    "useSettingsSync",
]


def _run(args: list[str], cwd: Path) -> str:
    run = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, f"{' '.join(args)}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout


def _pack(npm: str, folder: Path, into: Path) -> tuple[Path, list[str]]:
    out = _run([npm, "pack", "--json", "--pack-destination", str(into)], cwd=folder)
    [packed] = json.loads(out)
    return into / packed["filename"], sorted(f["path"] for f in packed["files"])


def test_the_packages_install_from_their_tarballs(node: str, npm: str, tmp_path: Path) -> None:
    tarball, files = _pack(npm, JS, tmp_path)
    sources = sorted(f"src/{p.name}" for p in (JS / "src").glob("*.js"))
    assert files == sorted(["README.md", "index.d.ts", "package.json", *sources])
    tarballs = [tarball]
    if (REACT / "package.json").exists():
        react_tarball, react_files = _pack(npm, REACT, tmp_path)
        assert "index.d.ts" in react_files and "README.md" in react_files
        tarballs.append(react_tarball)

    app = tmp_path / "app"
    app.mkdir()
    manifest = {"name": "app", "version": "1.0.0", "private": True, "type": "module"}
    (app / "package.json").write_text(json.dumps(manifest), "utf-8")
    extra = ["react@19", "react-dom@19"] if len(tarballs) > 1 else []
    offline = ["--prefer-offline", "--no-audit", "--no-fund"]
    _run([npm, "install", *offline, *map(str, tarballs), *extra], cwd=app)
    installed = app / "node_modules" / "livesettings"
    assert not installed.is_symlink(), "installed from the tarball, not linked to the workspace"
    for source in (JS / "src").glob("*.js"):
        assert (installed / "src" / source.name).read_bytes() == source.read_bytes()

    script = (
        "const ls = await import('livesettings');"
        f"const want = {json.dumps(CLIENT_NAMES)};"
        "const missing = want.filter((n) => typeof ls[n] === 'undefined');"
        "if (missing.length) throw new Error('livesettings lacks ' + missing);"
        "const svc = ls.createRealtimeSettingsService({ url: 'http://127.0.0.1:9', token: 't' });"
        "svc.close();"
    )
    if len(tarballs) > 1:
        script += (
            "const react = await import('livesettings-react');"
            f"const names = {json.dumps(REACT_NAMES)};"
            "const lacking = names.filter((n) => typeof react[n] === 'undefined');"
            "if (lacking.length) throw new Error('livesettings-react lacks ' + lacking);"
        )
    script += "console.log('imported');"
    assert _run([node, "--input-type=module", "-e", script], cwd=app).strip() == "imported"
