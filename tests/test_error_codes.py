"""spec/error_codes.json is the one list of error codes: the server, errors.py, the Python
client and the browser client must not drift from it."""

from __future__ import annotations

import ast
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from livesettings import errors
from livesettings.client import core

SRC = Path(str(resources.files("livesettings")))
CLIENT = SRC / "server" / "client"  # the npm package clients/js/src
STATIC = SRC / "server" / "static"
SPEC: dict[str, Any] = json.loads((SRC / "spec" / "error_codes.json").read_text("utf-8"))
CODES: dict[str, dict[str, Any]] = SPEC["codes"]
BROWSER_ONLY: set[str] = set(SPEC["browser_only"]["codes"])


def _codes_in(tree: ast.AST) -> set[str]:
    """The codes a module raises or sends.

    ``code = "x"`` on a class, ``code="x"`` in a call, ``{"code": "x"}``, and the code of a
    refused WebSocket handshake (``_deny(ws, 503, "x", …)``).
    """
    found: set[str] = set()

    def text(node: ast.AST | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.Assign | ast.AnnAssign):
                    targets = (
                        statement.targets
                        if isinstance(statement, ast.Assign)
                        else [statement.target]
                    )
                    named = any(isinstance(t, ast.Name) and t.id == "code" for t in targets)
                    if named and (code := text(statement.value)):
                        found.add(code)
        elif isinstance(node, ast.Call):
            found.update(c for kw in node.keywords if kw.arg == "code" and (c := text(kw.value)))
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name == "_deny" and len(node.args) >= 3 and (code := text(node.args[2])):
                found.add(code)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if text(key) == "code" and (code := text(value)):
                    found.add(code)
    return found


COMPAT = SRC / "server" / "compat"
"""The Supabase-compatible endpoints answer in Supabase's shapes (PostgREST's ``PGRST…``,
GoTrue's codes, Phoenix's reasons), never with livesettings' error codes."""


def test_the_spec_lists_exactly_the_codes_of_the_sources() -> None:
    used: set[str] = set()
    for path in sorted(SRC.rglob("*.py")):
        if COMPAT not in path.parents:
            used |= _codes_in(ast.parse(path.read_text("utf-8"), str(path)))
    assert sorted(used - CODES.keys()) == [], "codes missing from spec/error_codes.json"
    assert sorted(CODES.keys() - used) == [], "codes in spec/error_codes.json nothing raises"


def test_each_code_has_a_status_and_a_class_of_errors_py() -> None:
    for code, entry in CODES.items():
        assert entry.keys() == {"status", "class"}, code
        assert isinstance(entry["status"], int) and 400 <= entry["status"] <= 599, code
        cls = getattr(errors, entry["class"], None)
        assert isinstance(cls, type) and issubclass(cls, errors.LiveSettingsError), code


def test_the_classes_of_errors_py_agree_with_the_spec() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]
    classes = [c for c in classes if isinstance(c, type) and issubclass(c, Exception)]
    assert len(classes) == 22
    for cls in classes:
        assert CODES[cls.code] == {"status": cls.status, "class": cls.__name__}, cls


@pytest.mark.parametrize("code", sorted(CODES))
def test_a_client_rebuilds_each_code_as_its_class(code: str) -> None:
    entry = CODES[code]
    payload = {"error": {"code": code, "message": "m", "details": {"path": "/theme"}}}
    error = errors.error_from_payload(payload, entry["status"])
    assert type(error).__name__ == entry["class"]
    assert (error.code, error.message) == (code, "m")
    # A WebSocket error frame carries no status: the code alone decides the class.
    if entry["class"] != "LiveSettingsError":
        assert type(errors.error_from_payload(payload)).__name__ == entry["class"]


def test_the_python_client_names_only_listed_codes() -> None:
    assert CODES.keys() >= core._TRANSIENT


def _js_set(text: str, name: str) -> set[str]:
    match = re.search(rf"export const {name} = new Set\(\[(.*?)\]\);", text, re.S)
    assert match, f"errors.js has no {name}"
    return set(re.findall(r'"([a-z0-9_]+)"', match.group(1)))


def test_the_browser_client_acts_on_the_codes_of_the_spec() -> None:
    groups = SPEC["browser_groups"]
    source = (CLIENT / "errors.js").read_text("utf-8")
    for group, name in [
        ("auth", "AUTH_CODES"),
        ("secret", "SECRET_CODES"),
        ("session_end", "SESSION_END_CODES"),
        ("transient", "TRANSIENT_CODES"),
    ]:
        assert _js_set(source, name) == set(groups[group]), name
        assert set(groups[group]) <= CODES.keys() | BROWSER_ONLY, group
    assert not BROWSER_ONLY & CODES.keys()


def test_the_browser_client_makes_and_compares_only_listed_codes() -> None:
    made: set[str] = set()
    for path in sorted([*CLIENT.glob("*.js"), *STATIC.glob("*.js")]):
        text = path.read_text("utf-8")
        made |= set(re.findall(r'LiveSettingsError\(\s*"([a-z0-9_]+)"', text))
        made |= set(re.findall(r'(?<!typeof )\b(?:err|error)\.code === "([a-z0-9_]+)"', text))
    assert made, "no code found: the pattern no longer matches the browser client"
    assert sorted(made - CODES.keys() - BROWSER_ONLY) == []
    assert made >= BROWSER_ONLY, "browser_only codes the browser client no longer makes"
