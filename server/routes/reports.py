"""Reports: invoicing, the Département's activity report and the impact estimate, in JSON
or CSV (the ``.csv`` routes). A manager gets their centres' rows only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import Field

from server.auth.deps import Scope, clock, require_centre
from server.domain import reports as rules
from server.domain.operators import CentreScope
from server.domain.reports import Period, ReportError
from server.routes import models
from server.routes.params import CentreFilter
from server.runtime import Runtime, RuntimeDep

router = APIRouter(tags=["visits and reports"])

NOT_FOUND = {404: {"description": "No such centre (or not one of this manager's)"}}
CSV = {
    200: {"content": {"text/csv": {}}, "description": "The report as CSV (UTF-8)."},
    **NOT_FOUND,
}
YEAR = r"(19[7-9]\d|[2-9]\d{3})"
Month = Annotated[
    str, Query(pattern=rf"^{YEAR}-(0[1-9]|1[0-2])$", examples=["2026-03"], description="YYYY-MM")
]
OptionalMonth = Annotated[
    str | None,
    Query(pattern=rf"^{YEAR}-(0[1-9]|1[0-2])$", examples=["2026-03"], description="YYYY-MM"),
]
Week = Annotated[
    str | None,
    Query(
        pattern=rf"^{YEAR}-W(0[1-9]|[1-4]\d|5[0-3])$",
        examples=["2026-W12"],
        description="YYYY-Www (ISO week), instead of month",
    ),
]


class Report(models.Public):
    period: dict[str, str]
    total: dict[str, Any]


class InvoicingReport(Report):
    members: list[dict[str, Any]] = Field(
        description="member_id, name, days_present, visits, hours, credit_days, plans."
    )


class DepartementReport(Report):
    centres: list[dict[str, Any]]
    communes: list[dict[str, Any]] = Field(description="Centres grouped by INSEE code.")


class ImpactReport(Report):
    method: dict[str, Any]
    centres: list[dict[str, Any]]


def scoped(runtime: Runtime, scope: CentreScope, centre: str | None) -> list[str] | None:
    """The centres a report covers: the one asked for (404 if unknown or not the
    manager's), else the manager's, else every centre (None)."""
    if centre is not None:
        require_centre(scope, centre, f"no centre {centre!r}")
        runtime.store.centre(centre)
        return [centre]
    return None if scope.centres is None else sorted(scope.centres)


def period_of(month: str | None, week: str | None = None) -> Period:
    if (month is None) == (week is None):
        raise HTTPException(422, "month or week: give exactly one (YYYY-MM or YYYY-Www)")
    try:
        return rules.month(month) if month is not None else rules.week(week or "")
    except ReportError as exc:
        raise HTTPException(422, str(exc)) from None


def csv_response(text: str, name: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def invoicing(runtime: Runtime, scope: CentreScope, month: str, centre: str | None) -> dict:
    return runtime.store.invoicing_report(
        period_of(month), now=clock(runtime), centre_ids=scoped(runtime, scope, centre)
    )


def departement(
    runtime: Runtime, scope: CentreScope, month: str | None, week: str | None, centre: str | None
) -> dict:
    period = period_of(month, week)
    return runtime.store.departement_report(
        period, now=clock(runtime), centre_ids=scoped(runtime, scope, centre)
    )


def impact(runtime: Runtime, scope: CentreScope, month: str, centre: str | None) -> dict:
    period = period_of(month)
    try:
        return runtime.store.impact_report(
            period,
            kg_per_km=runtime.settings.impact_kg_co2e_per_km,
            centre_ids=scoped(runtime, scope, centre),
        )
    except ReportError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/api/reports/invoicing", response_model=InvoicingReport, responses=NOT_FOUND)
def invoicing_report(
    runtime: RuntimeDep, scope: Scope, month: Month, centre: CentreFilter = None
) -> dict:
    """Per member and month: days present, visits, hours, day credits used, plans held."""
    return invoicing(runtime, scope, month, centre)


@router.get("/api/reports/invoicing.csv", response_class=Response, responses=CSV)
def invoicing_csv(
    runtime: RuntimeDep, scope: Scope, month: Month, centre: CentreFilter = None
) -> Response:
    """The invoicing report as CSV, one line per member."""
    report = invoicing(runtime, scope, month, centre)
    return csv_response(rules.invoicing_csv(report), f"invoicing-{month}")


@router.get("/api/reports/departement", response_model=DepartementReport, responses=NOT_FOUND)
def departement_report(
    runtime: RuntimeDep,
    scope: Scope,
    month: OptionalMonth = None,
    week: Week = None,
    centre: CentreFilter = None,
) -> dict:
    """Per centre, per commune and in total, over a month or an ISO week: visits, unique
    and new members, hours, peak occupancy, people present by weekday and hour."""
    return departement(runtime, scope, month, week, centre)


@router.get("/api/reports/departement.csv", response_class=Response, responses=CSV)
def departement_csv(
    runtime: RuntimeDep,
    scope: Scope,
    month: OptionalMonth = None,
    week: Week = None,
    centre: CentreFilter = None,
) -> Response:
    """The Département's report as CSV: one line per centre, per commune and the total."""
    report = departement(runtime, scope, month, week, centre)
    return csv_response(rules.departement_csv(report), f"departement-{report['period']['label']}")


@router.get("/api/reports/impact", response_model=ImpactReport, responses=NOT_FOUND)
def impact_report(
    runtime: RuntimeDep, scope: Scope, month: Month, centre: CentreFilter = None
) -> dict:
    """Commuting avoided per centre over a month: round-trip km and kg CO2e (method in
    the answer); 422 naming a commune the server cannot place."""
    return impact(runtime, scope, month, centre)


@router.get("/api/reports/impact.csv", response_class=Response, responses=CSV)
def impact_csv(
    runtime: RuntimeDep, scope: Scope, month: Month, centre: CentreFilter = None
) -> Response:
    """The impact report as CSV: one line per centre and the total."""
    return csv_response(rules.impact_csv(impact(runtime, scope, month, centre)), f"impact-{month}")
