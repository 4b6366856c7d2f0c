"""Operations routes: liveness, readiness and Prometheus metrics (``OPS_TOKEN`` and
``OPS_ADDRESS`` guard them, see ``perimeter.py``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from .dependencies import ServicesDep, draining
from .models import ErrorResponse

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"], responses={503: {"model": ErrorResponse}})
async def readyz(services: ServicesDep) -> Any:
    """Readiness: the database and the bus are reachable."""
    if services.draining:
        raise draining()
    await services.store.ping()
    await services.bus.ping()
    return {"status": "ready"}


@router.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
async def metrics(services: ServicesDep) -> PlainTextResponse:
    """Prometheus metrics."""
    return PlainTextResponse(
        services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
