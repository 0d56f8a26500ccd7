"""GET /healthz: what a monitor polls to know the server, its broker link and its writer work."""

from __future__ import annotations

from fastapi import APIRouter

from server.runtime import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(runtime: RuntimeDep) -> dict:
    return {
        "ok": True,
        "mqtt": runtime.bridge.stats(),
        "events": runtime.store.event_count(),
        "writer": runtime.store.writer_stats,
    }
