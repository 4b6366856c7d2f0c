"""``create_app(config)``: the ASGI application, mountable in any Starlette or FastAPI app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match, Route

from .. import __version__
from ..config import Config
from ..errors import (
    LiveSettingsError,
    PreconditionFailed,
    RateLimited,
    TooLarge,
    Unauthorized,
)
from ..paths import to_pointer
from .auth_routes import router as auth_router
from .cookies import RefreshCookieReset
from .dependencies import too_large
from .openapi import install_openapi
from .operations import router as operations_router
from .perimeter import BodyTimeout, HostGuard, HttpMiddleware, OpsGuard, OpsListener
from .realtime import realtime_endpoint
from .security import SecurityHeaders
from .service_routes import router as service_router
from .services import Services
from .settings_routes import router as settings_router
from .static_files import STATIC_DIR, static_files
from .team_routes import router as team_router

__all__ = ["STATIC_DIR", "create_app"]

log = logging.getLogger("livesettings.server")

_MIN_BODY_LIMIT = 16 * 1024  # sign-in and the other small bodies always fit


def create_app(config: Config | None = None, *, services: Services | None = None) -> FastAPI:
    """The livesettings server as an ASGI app; its lifespan starts and stops every part."""
    config = config or Config.load()
    services = services or Services(config)
    body_limit = max(config.max_patch_bytes, _MIN_BODY_LIMIT)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(
        title="livesettings",
        version=__version__,
        description="Real-time settings synchronisation: one document per user, pushed live.",
        lifespan=lifespan,
    )
    app.state.services = services
    # The routes join the app's own router: an included router is resolved again on every
    # request by this FastAPI version, which cost a fifth of a write's CPU.
    for router in (
        auth_router,
        settings_router,
        team_router,
        service_router,
        operations_router,
    ):
        app.router.routes.extend(router.routes)
    install_openapi(app)
    app.add_api_websocket_route("/v1/realtime", realtime_endpoint)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/sw.js", include_in_schema=False)
    async def service_worker() -> FileResponse:
        # Served from the root so its scope covers the page; see the browser client.
        return FileResponse(
            STATIC_DIR / "sw.js",
            media_type="text/javascript",
            headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"},
        )

    app.mount("/static", static_files(), name="static")

    _install_error_handlers(app, services)
    app.add_middleware(RefreshCookieReset, config=config)
    # serve.py fills in the port once it listens on OPS_ADDRESS.
    app.state.ops_listener = OpsListener(separate=config.ops_address is not None)
    app.add_middleware(OpsGuard, token=config.ops_token, listener=app.state.ops_listener)
    # Every body is JSON of a few KiB at most (PATCH and PUT check max_patch_bytes
    # themselves); a bigger one is refused before it fills memory.
    app.add_middleware(_BodyLimit, limit=body_limit)
    app.add_middleware(BodyTimeout, timeout=config.body_timeout)
    if config.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[o for o in config.allowed_origins if o != "*"] or ["*"],
            allow_methods=["GET", "PATCH", "PUT", "POST", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "X-Client-Id",
                "X-Base-Revision",
                "X-Edited-At",
                "Last-Event-ID",
            ],
            expose_headers=["ETag", "Retry-After"],
        )
    # Outside CORS: nothing answers a request sent under a foreign name or Origin.
    app.add_middleware(HostGuard, config=config)
    app.add_middleware(SecurityHeaders)
    return app


class _BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the limit of {limit} bytes")
        self.limit = limit


class _BodyLimit(HttpMiddleware):
    """413 for a body over ``limit`` bytes: at once for a ``Content-Length`` over it, or as
    soon as a streamed body grows past it (an HTTPException, which FastAPI's body parsing
    lets through to the error handlers)."""

    def __init__(self, app: Any, limit: int) -> None:
        super().__init__(app)
        self.limit = limit

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.limit:
                response = _error_response(too_large(int(value), self.limit))
                await response(scope, receive, send)
                return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


def _error_response(exc: LiveSettingsError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="livesettings"'  # RFC 6750 §3
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, round(exc.retry_after + 0.499)))
    if isinstance(exc, PreconditionFailed) and isinstance(exc.details, dict):
        headers["ETag"] = f'"{exc.details.get("revision")}"'
    return JSONResponse({"error": exc.to_payload()}, status_code=exc.status, headers=headers)


def _install_error_handlers(app: FastAPI, services: Services) -> None:
    @app.exception_handler(LiveSettingsError)
    async def on_error(request: Request, exc: LiveSettingsError) -> JSONResponse:
        services.metrics.errors.inc(code=exc.code)
        if exc.status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc.code)
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body",)]
        payload: dict[str, Any]
        if first.get("type") == "json_invalid":
            payload = {"code": "malformed_json", "message": "the request body is not valid JSON"}
            status = 400
        else:
            where = loc[1:] if loc and loc[0] in ("query", "header", "path") else loc
            pointer = to_pointer(tuple(where))
            payload = {
                "code": "invalid",
                "message": f"{pointer or 'body'}: {first.get('msg', 'invalid value')}",
                "details": {"path": pointer, "location": loc[0] if loc else "body"},
            }
            status = 422
        services.metrics.errors.inc(code=str(payload["code"]))
        return JSONResponse({"error": payload}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, _BodyTooLarge):
            return _error_response(TooLarge(str(exc.detail), details={"limit": exc.limit}))
        code = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout"}.get(
            exc.status_code, "http_error"
        )
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route that matched the path only;
            # GET, PATCH and PUT /v1/settings are three routes.
            headers["Allow"] = ", ".join(_allowed_methods(app, request.scope))
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail)}},
            status_code=exc.status_code,
            headers=headers or None,
        )


def _allowed_methods(app: FastAPI, scope: Any) -> list[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches({**scope, "method": next(iter(route.methods))})
            if match == Match.FULL:
                methods |= route.methods
    return sorted(methods)
