"""GET /api/audit and its CSV export: who changed what, for admins only."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from server.auth.deps import AdminOnly
from server.routes import models
from server.routes.params import CentreFilter, Since, Until, time_range
from server.runtime import StoreDep

router = APIRouter(tags=["audit"])

CSV_MAX_ROWS = 100_000
COLUMNS = (
    "id",
    "at",
    "actor",
    "action",
    "target_kind",
    "target_id",
    "centre_id",
    "address",
    "before",
    "after",
)


class AuditFilter:
    """The filters both routes share (a class dependency: one place declares them)."""

    def __init__(
        self,
        actor: Annotated[str | None, Query(max_length=100)] = None,
        action: Annotated[str | None, Query(max_length=50)] = None,
        centre: CentreFilter = None,
        since: Since = None,
        until: Until = None,
    ) -> None:
        start, end = time_range(since, until)
        self.kwargs = {
            "actor": actor,
            "action": action,
            "centre_id": centre,
            "since": start,
            "until": end,
        }


@router.get("/api/audit", response_model=models.Page[models.AuditEntryPublic])
def audit_log(
    _: AdminOnly,
    store: StoreDep,
    filters: Annotated[AuditFilter, Depends()],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict:
    """Audit entries newest first, with the total matching the filters."""
    total, items = store.audit_entries(**filters.kwargs, limit=limit, offset=offset)
    return {"total": total, "limit": limit, "offset": offset, "items": items}


@router.get("/api/audit.csv", response_class=Response)
def audit_csv(
    _: AdminOnly,
    store: StoreDep,
    filters: Annotated[AuditFilter, Depends()],
) -> Response:
    """The same entries as CSV (at most 100,000, newest first); times in ISO 8601 UTC."""
    _, items = store.audit_entries(**filters.kwargs, limit=CSV_MAX_ROWS, offset=0)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for item in items:
        row = dict(item)
        row["at"] = datetime.fromtimestamp(item["at"], UTC).isoformat()
        for key in ("before", "after"):
            row[key] = json.dumps(item[key], ensure_ascii=False) if item[key] else ""
        writer.writerow([row.get(c) if row.get(c) is not None else "" for c in COLUMNS])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )
