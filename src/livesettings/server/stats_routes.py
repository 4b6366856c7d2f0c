"""``GET /v1/admin/stats``: the numbers the ``/admin`` charts draw, and the nodes' table.

Admins only (:data:`~.admin_access.AdminDep`: 401 without a valid token, 403 for anyone
else). The series are this node's (:mod:`.stats`: one point a second, 15 minutes at most);
``nodes`` lists this node and every node heard on the bus (:mod:`.nodes`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from .admin_access import AdminDep
from .dependencies import ERRORS, ServicesDep

__all__ = ["AdminStats", "NodeStatus", "StatsSeries", "router"]

router = APIRouter()


class StatsSeries(BaseModel):
    """One list per number, all as long as ``t``; ``null`` where a second had nothing to
    measure (no push, no commit)."""

    t: list[float] = Field(description="End of each one-second interval, Unix seconds.")
    ws_connections: list[int] = Field(description="Open WebSockets at t.")
    sse_connections: list[int] = Field(description="Open SSE streams at t.")
    writes_per_s: list[float] = Field(description="Committed mutations that made a revision.")
    conflicts_per_s: list[float] = Field(description="Conflicts reported to writers.")
    push_p50_ms: list[float | None] = Field(
        description="Commit to change frame queued for a subscriber: median of the second."
    )
    push_p99_ms: list[float | None] = Field(description="The same, 99th percentile.")
    commit_size: list[float | None] = Field(description="Mean mutations per group commit.")
    errors_per_s: dict[str, list[float]] = Field(
        description="Errors answered, by code: only codes seen in these points."
    )


class NodeStatus(BaseModel):
    """A node as its latest heartbeat described it (this node: as it is now)."""

    model_config = ConfigDict(populate_by_name=True)

    node_id: str
    version: str
    started_at: float = Field(description="Unix seconds.")
    heartbeat_at: float | None = Field(description="Its latest heartbeat, its clock.")
    connections: int = Field(description="Open WebSockets and SSE streams.")
    bus_lag_ms: float | None = Field(
        description="Publish to receipt of its own previous heartbeat; null until measured."
    )
    is_self: bool = Field(alias="self", description="Whether this is the node that answered.")
    stale: bool = Field(
        description="Three heartbeats missed, or it said it was stopping (this node: its own "
        "heartbeat has not come back over the bus)."
    )


class AdminStats(BaseModel):
    """The node that answered, its series, and the nodes' table."""

    node_id: str
    version: str
    started_at: float
    now: float
    interval_s: float
    series: StatsSeries
    nodes: list[NodeStatus]


@router.get(
    "/v1/admin/stats",
    response_model=AdminStats,
    response_model_by_alias=True,
    responses=ERRORS,
    tags=["admin"],
)
async def admin_stats(
    _admin: AdminDep,
    services: ServicesDep,
    since: Annotated[
        float | None,
        Query(ge=0, le=1e11, description="Only points with t after this (Unix seconds)."),
    ] = None,
) -> Any:
    """This node's last 15 minutes, one point a second (the ``/admin`` charts poll it with
    ``since``), and every node heard on the bus."""
    beats = services.heartbeats
    return {
        "node_id": beats.node_id,
        "version": beats.version,
        "started_at": beats.started_at,
        "now": round(services.clock.time(), 3),
        "interval_s": services.stats.interval,
        "series": services.stats.series(since),
        "nodes": beats.nodes(),
    }
