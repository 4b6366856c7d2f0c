"""``/openapi.json`` as served: FastAPI's document, told the rules the server enforces itself.

Headers such as ``If-Match`` or ``X-Base-Revision`` are read as plain strings and checked by
the handlers (to answer with this API's own error codes); here their formats are written into
the document, so that clients — and the Schemathesis run of the test suite — know what is
accepted without trying.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI

from .models import EXTRA_SCHEMAS, link_schemas

__all__ = ["install_openapi"]

_NO_CONTROL: Final = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
_REVISION: Final = "^[0-9]{0,18}$"  # empty: as if absent
_IF_MATCH_REQUIRED: Final = '^(?:W/)?(?:"[0-9]{1,18}"|[0-9]{1,18})$'
_IF_MATCH: Final = '^(?:(?:W/)?(?:"[0-9]{1,18}"|[0-9]{1,18}))?$'  # empty: as if absent

_HEADERS: Final[dict[str, dict[str, Any]]] = {
    "idempotency-key": {"type": "string", "maxLength": 128, "pattern": _NO_CONTROL},
    "x-client-id": {"type": "string", "maxLength": 128, "pattern": _NO_CONTROL},
    "x-base-revision": {"type": "string", "pattern": _REVISION},
    "x-edited-at": {"type": "string", "pattern": _REVISION},
    "last-event-id": {"type": "string", "pattern": _REVISION},
    "if-match": {"type": "string", "pattern": _IF_MATCH},
}
_PATH: Final[dict[str, dict[str, Any]]] = {
    "user_id": {"type": "string", "minLength": 1, "maxLength": 128},
    "name": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000]*$"},
}


_PUT_PATHS: Final = ("/v1/settings", "/v1/teams/{team_id}/settings")
"""The whole-document PUTs, whose ``If-Match`` is required (428 without)."""


def install_openapi(app: FastAPI) -> None:
    """Serve the refined document at ``/openapi.json`` (built once, on first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _refined(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _refined(document: dict[str, Any]) -> dict[str, Any]:
    document.setdefault("components", {}).setdefault("schemas", {}).update(EXTRA_SCHEMAS)
    document = link_schemas(document)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                name = str(parameter.get("name", "")).lower()
                where = parameter.get("in")
                if where == "header" and name in _HEADERS:
                    parameter["schema"] = dict(_HEADERS[name])
                elif where == "path" and name in _PATH:
                    parameter["schema"] = dict(_PATH[name])
                if method == "put" and name == "if-match" and path in _PUT_PATHS:
                    # Optional in the handler only to answer 428 rather than 422.
                    parameter["required"] = True
                    parameter["schema"] = {"type": "string", "pattern": _IF_MATCH_REQUIRED}
    return document
