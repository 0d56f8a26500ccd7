"""GET /healthz: what a monitor polls to know the server, its broker link and its workers."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from server.routes import models
from server.runtime import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=models.Health)
def healthz(runtime: RuntimeDep) -> dict:
    """ok: every worker thread alive, the broker connected and the units' events coming in."""
    bridge = runtime.bridge
    workers = [*bridge.workers, *runtime.store.workers, *runtime.workers]
    health = [asdict(w.health()) for w in workers]
    mqtt = bridge.stats()
    return {
        "ok": all(h["alive"] for h in health) and mqtt["connected"] and mqtt["receiving"],
        "workers": health,
        "mqtt": mqtt,
        "rejected_by_reason": mqtt["rejected_by_reason"],
        "events": runtime.store.event_count(),
        "writer": runtime.store.writer_stats,
    }
