"""spec/patch_vectors.json: the merge patch and masking cases that the Python document module
and the browser client's state core (run under node) must both pass."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from livesettings.document import apply_patch, last4_of, mask_secret
from tests.conftest import require_service

SRC = Path(str(resources.files("livesettings")))
VECTORS: dict[str, Any] = json.loads((SRC / "spec" / "patch_vectors.json").read_text("utf-8"))
NODE_TESTS = Path(__file__).parent / "js"


@pytest.mark.parametrize("case", VECTORS["apply_patch"], ids=lambda case: case["name"])
def test_apply_patch(case: dict[str, Any]) -> None:
    doc = copy.deepcopy(case["doc"])
    patch = copy.deepcopy(case["patch"])
    assert apply_patch(doc, patch) == case["result"]
    assert (doc, patch) == (case["doc"], case["patch"]), "an input was changed in place"


def test_masking_shows_the_last_four_characters_of_long_secrets_only() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    for case in VECTORS["mask"]:
        secret, last4 = case["secret"], case["last4"]
        assert last4_of(secret) == last4, secret
        expected = {"set": True, "updated_at": "2026-01-02T03:04:05.678Z"}
        if last4 is not None:
            expected["last4"] = last4
        assert mask_secret(secret, now) == expected


def test_the_browser_client_passes_the_same_vectors() -> None:
    node = shutil.which("node")
    require_service("node", node is not None)
    assert node is not None
    env = {
        **os.environ,
        "LIVESETTINGS_CLIENT": str(SRC / "server" / "client"),
        "LIVESETTINGS_SPEC": str(SRC / "spec"),
    }
    run = subprocess.run(
        [node, "--test", str(NODE_TESTS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert f"# pass {len(VECTORS['apply_patch']) + 2}" in run.stdout
