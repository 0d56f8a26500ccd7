"""GET /metrics: the server's Prometheus metrics (open like /healthz: no data in them)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from server.metrics import CONTENT_TYPE
from server.runtime import RuntimeDep

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(runtime: RuntimeDep) -> Response:
    """Events ingested, refused by reason, access decisions by outcome and rule, units
    online, bridge lag, writer batches and commit time, open alarms."""
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE)
