"""The previous release, taken from git history and installed in a venv of its own.

``git archive <commit>`` of the repository these tests run in gives the release's tree (its
symlink ``src/livesettings/server/client -> ../../../clients/js/src`` included). It is installed
by pip, offline: the venv sees the current venv's dependencies through a ``.pth`` file, and the
tree is packed into a wheel here first — building it with the project's own backend would need
``setuptools>=77`` (the pyproject's ``license = "MIT"``), which a venv made by ``python -m venv``
does not have, and ``--no-build-isolation`` cannot fetch it offline. The wheel holds the package
directory as the tree has it (the client symlink followed), the metadata and the console script.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import venv
import zipfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

__all__ = ["REPO_ROOT", "OldRelease", "build_old_release", "has_commit"]

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class OldRelease:
    """An installed previous release: its venv's python and ``livesettings`` script."""

    commit: str
    version: str
    venv: Path
    python: Path
    livesettings: Path

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (this process's environment by default) for the old release: without a
        ``PYTHONPATH`` that would lead it back to the current tree."""
        env = dict(os.environ if base is None else base)
        env.pop("PYTHONPATH", None)
        env["VIRTUAL_ENV"] = str(self.venv)
        return env

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """``livesettings ARGS`` of the old release."""
        return subprocess.run(
            [str(self.livesettings), *args],
            env=self.env({**os.environ, **(env or {})}),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def has_commit(commit: str) -> bool:
    """Whether the repository the tests run in has ``commit`` (a shallow clone may not)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def build_old_release(commit: str, where: Path) -> OldRelease:
    """Extract ``commit`` under ``where``, make a venv and pip-install the release into it."""
    tree = where / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
        timeout=60,
    )
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        # The "tar" filter (Python 3.11.4+) keeps the relative client symlink.
        safe: dict[str, str] = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
        tar.extractall(tree, **safe)  # type: ignore[arg-type]
    project = tomllib.loads((tree / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    env_dir = where / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The dependencies: the current venv's packages, after the old venv's own.
    current = sysconfig.get_paths()["purelib"]
    Path(site, "_current_venv_dependencies.pth").write_text(current + "\n", encoding="utf-8")
    wheel = _wheel(tree, project, where)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return OldRelease(
        commit=commit,
        version=str(project["version"]),
        venv=env_dir,
        python=python,
        livesettings=env_dir / "bin" / "livesettings",
    )


def _wheel(tree: Path, project: dict[str, object], where: Path) -> Path:
    """A pure-Python wheel of ``tree/src/<package>`` with the project's console scripts."""
    name, version = str(project["name"]), str(project["version"])
    dist_info = f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {}
    src = tree / "src"
    for root, dirs, names in os.walk(src / name, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for file_name in sorted(names):
            path = Path(root, file_name)
            files[path.relative_to(src).as_posix()] = path.read_bytes()
    scripts = project.get("scripts") or {}
    assert isinstance(scripts, dict)
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tests.upgrade\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{dist_info}/entry_points.txt"] = (
        "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())
    ).encode()
    record = [f"{member},sha256={_digest(data)},{len(data)}" for member, data in files.items()]
    files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    wheel = where / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
