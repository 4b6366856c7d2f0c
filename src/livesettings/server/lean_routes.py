"""The hot routes outside FastAPI's per-request machinery: ``GET`` and ``PATCH`` of
``/v1/settings`` and ``/v1/teams/{team_id}/settings``.

:class:`~.perimeter.Edge` asks :meth:`LeanRoutes.match` for every HTTP request that passed
the perimeter; a match is answered here by the route functions themselves
(``settings_routes``, ``team_routes``: still declared to FastAPI, for the OpenAPI document and
for an app mounted where the lean routes do not match), given what their dependencies would
give them (the token's claims, the write headers), with the answers of the app's exception
handlers (``answers.py``). What is skipped is the route table walk, ``solve_dependencies``,
the per-request exit stack and the exception middleware.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..errors import LiveSettingsError
from .answers import http_error_response, refusal_response
from .dependencies import bearer_token, claims_of
from .perimeter import LeanHandler
from .services import Services
from .settings_routes import get_settings, patch_headers, patch_settings
from .team_routes import get_team_settings, patch_team_settings

__all__ = ["LeanRoutes"]

_Endpoint = Callable[[Request, Services], Awaitable[Any]]


async def _get_settings(request: Request, services: Services) -> Any:
    token = bearer_token(request.headers.get("authorization"))
    return await get_settings(await claims_of(request, services, token), services)


async def _patch_settings(request: Request, services: Services) -> Any:
    headers = request.headers
    claims = await claims_of(request, services, bearer_token(headers.get("authorization")))
    return await patch_settings(request, claims, services, patch_headers(headers))


async def _get_team_settings(request: Request, services: Services) -> Any:
    token = bearer_token(request.headers.get("authorization"))
    claims = await claims_of(request, services, token)
    return await get_team_settings(request.path_params["team_id"], claims, services)


async def _patch_team_settings(request: Request, services: Services) -> Any:
    headers = request.headers
    claims = await claims_of(request, services, bearer_token(headers.get("authorization")))
    team_id = request.path_params["team_id"]
    return await patch_team_settings(team_id, request, claims, services, patch_headers(headers))


_ROUTES: dict[tuple[str, str], _Endpoint] = {
    ("GET", "/v1/settings"): _get_settings,
    ("PATCH", "/v1/settings"): _patch_settings,
}
_TEAM_ROUTES: dict[str, _Endpoint] = {
    "GET": _get_team_settings,
    "PATCH": _patch_team_settings,
}
_TEAM_PREFIX = "/v1/teams/"
_TEAM_SUFFIX = "/settings"


class LeanRoutes:
    """The lean routes of one app, with its :class:`Services`."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._handlers: dict[tuple[str, str], LeanHandler] = {
            key: self._handler(endpoint) for key, endpoint in _ROUTES.items()
        }
        self._team: dict[str, LeanHandler] = {
            method: self._handler(endpoint) for method, endpoint in _TEAM_ROUTES.items()
        }

    def match(self, scope: Scope) -> LeanHandler | None:
        """The handler of an HTTP request to a lean route, else ``None``; a team's id goes
        to ``scope["path_params"]``, as Starlette's routing puts it."""
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root + "/"):  # mounted: the path below the mount
            path = path[len(root) :]
        method: str = scope["method"]
        handler = self._handlers.get((method, path))
        if handler is not None or not path.startswith(_TEAM_PREFIX):
            return handler
        team_id = path[len(_TEAM_PREFIX) : -len(_TEAM_SUFFIX)]
        if not path.endswith(_TEAM_SUFFIX) or not team_id or "/" in team_id:
            return None
        handler = self._team.get(method)
        if handler is not None:
            scope["path_params"] = {"team_id": team_id}
        return handler

    def _handler(self, endpoint: _Endpoint) -> LeanHandler:
        services = self.services

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive, send)
            response: Response
            try:
                response = await endpoint(request, services)
            except LiveSettingsError as exc:
                response = refusal_response(exc, services, scope["method"], request.url.path)
            except HTTPException as exc:  # a late (408) or too large (413) body
                response = http_error_response(exc)
            await response(scope, receive, send)

        return handle
