"""Supabase-compatible endpoints (DESIGN §10): the seed's supabase-js code, unchanged.

- ``/auth/v1`` — a GoTrue subset over the built-in users (:mod:`.auth`);
- ``/rest/v1/user_preferences`` — a PostgREST subset on the seed's row (:mod:`.rest`);
- ``/realtime/v1/websocket`` — Phoenix channels with ``postgres_changes`` (realtime modules).

Every request carries an ``apikey`` (:mod:`.keys`). :func:`mount` adds them all to an app;
``LIVESETTINGS_SUPABASE_COMPAT=false`` leaves them out.
"""

from __future__ import annotations

from fastapi import FastAPI

from .auth import router as auth_router
from .realtime import realtime_websocket
from .rest import router as rest_router

__all__ = ["mount"]


def mount(app: FastAPI) -> None:
    """Add the Supabase-compatible routes to ``app`` (its own router, as create_app does)."""
    for router in (auth_router, rest_router):
        app.router.routes.extend(router.routes)
    app.add_api_websocket_route("/realtime/v1/websocket", realtime_websocket)
