"""``create_app(config)``: the ASGI application, mountable in any Starlette or FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from .. import __version__
from ..config import Config
from ..errors import LiveSettingsError
from ..paths import to_pointer
from .account_routes import router as account_router
from .admin_routes import router as admin_router
from .answers import http_error_response, refusal_response
from .auth_routes import router as auth_router
from .compat import mount as mount_supabase_compat
from .cookies import RefreshCookieReset
from .lean_routes import LeanRoutes
from .openapi import install_openapi
from .operations import router as operations_router
from .perimeter import Edge, OpsListener
from .realtime import realtime_endpoint
from .service_routes import router as service_router
from .services import Services
from .settings_routes import router as settings_router
from .static_files import STATIC_DIR, static_files
from .stats_routes import router as stats_router
from .team_routes import router as team_router

__all__ = ["STATIC_DIR", "create_app"]

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
        account_router,
        service_router,
        operations_router,
        stats_router,
        admin_router,
    ):
        app.router.routes.extend(router.routes)
    if config.supabase_compat:
        mount_supabase_compat(app)
    install_openapi(app)
    app.add_api_websocket_route("/v1/realtime", realtime_endpoint)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/admin", include_in_schema=False)
    async def admin_page() -> FileResponse:
        # The page is public like /; its data (/v1/admin/...) answers admins only.
        return FileResponse(STATIC_DIR / "admin.html", headers={"Cache-Control": "no-cache"})

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
    # One middleware for the security headers, Host and Origin, CORS, the body's deadline and
    # size (every body is JSON of a few KiB at most; PATCH and PUT check max_patch_bytes
    # themselves), the ops pages, and the lean hot routes.
    app.add_middleware(
        Edge,
        config=config,
        limit=body_limit,
        listener=app.state.ops_listener,
        lean=LeanRoutes(services).match,
    )
    return app


def _install_error_handlers(app: FastAPI, services: Services) -> None:
    @app.exception_handler(LiveSettingsError)
    async def on_error(request: Request, exc: LiveSettingsError) -> JSONResponse:
        return refusal_response(exc, services, request.method, request.url.path)

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
        # Starlette names the methods of the first route that matched the path only;
        # GET, PATCH and PUT /v1/settings are three routes.
        allowed = _allowed_methods(app, request.scope) if exc.status_code == 405 else None
        return http_error_response(exc, allowed)


def _allowed_methods(app: FastAPI, scope: Any) -> list[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches({**scope, "method": next(iter(route.methods))})
            if match == Match.FULL:
                methods |= route.methods
    return sorted(methods)
