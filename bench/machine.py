"""What the results record about the machine and the software: cores, memory, versions, commit."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["git_commit", "machine", "portable", "versions"]

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
_PACKAGES = (
    "livesettings",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "websockets",
    "pydantic",
    "pyjwt",
    "orjson",
)


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "filesystem of the data dir": _filesystem(),
    }


def _filesystem() -> str:
    try:
        out = subprocess.run(
            ["df", "-T", str(BENCH)], capture_output=True, text=True, timeout=5, check=False
        ).stdout.splitlines()
        parts = out[1].split()
        return parts[1]  # the type only: the device is a machine path
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return commit + (" (with uncommitted changes)" if dirty else "")


def portable(text: str) -> str:
    """``text`` without this machine's absolute paths: the repository root becomes relative
    (``cd <repository root>`` for the root itself), the home directory ``~``."""
    root = str(ROOT)
    text = text.replace(f"cd {root}\n", "cd <repository root>\n")
    text = text.replace(root + "/", "").replace(root, "<repository root>")
    home = os.path.expanduser("~")
    if home not in ("", "/"):
        text = text.replace(home + "/", "~/")
    return text
