"""Rapports: visits per week per centre, occupancy by weekday and hour, hours per member
and the commuting avoided, over a span of months and one centre or all, as charts (Chart.js,
shipped in /static/vendor) with their figures in tables, and each as CSV."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from server.auth.deps import PageOperator, clock
from server.domain import report_charts as charts
from server.domain.operators import Operator
from server.domain.reports import ReportError
from server.routes import reports as reports_api
from server.routes.params import CentreFilter
from server.runtime import Runtime, RuntimeDep
from server.store import NotFound
from server.web.forms import refusal
from server.web.i18n import translator
from server.web.render import TIMEZONE, in_language, language_of, render

router = APIRouter(include_in_schema=False)

DEFAULT_MONTHS = 3


def figures(
    runtime: Runtime, operator: Operator, first: str, last: str, centre: str | None
) -> dict[str, Any]:
    """Every chart's figures over the months (ReportError naming a bad filter)."""
    months = charts.months_between(first, last)
    scope = operator.scope
    centre_ids = reports_api.scoped(runtime, scope, centre)
    now = clock(runtime)
    store = runtime.store
    weeks = [
        store.departement_report(w, now=now, centre_ids=centre_ids)
        for w in charts.weeks_over(months)
    ]
    invoices = [store.invoicing_report(m, now=now, centre_ids=centre_ids) for m in months]
    impact_error = None
    try:
        impacts = [
            store.impact_report(
                m, kg_per_km=runtime.settings.impact_kg_co2e_per_km, centre_ids=centre_ids
            )
            for m in months
        ]
    except ReportError as exc:  # a centre or commune the estimate cannot place
        impacts, impact_error = [], str(exc)
    local_now = datetime.fromtimestamp(now, TIMEZONE).replace(tzinfo=None)
    return {
        "period": {"from": first, "to": last, "centre": centre},
        "visits": charts.weekly_visits(weeks),
        "occupancy": charts.occupancy_by_hour(weeks, local_now),
        "members": charts.member_hours(invoices),
        "impact": charts.impact_over(impacts),
        "impact_error": impact_error,
    }


def default_span(runtime: Runtime) -> tuple[str, str]:
    today = datetime.fromtimestamp(clock(runtime), TIMEZONE).date()
    return charts.months_before(today, DEFAULT_MONTHS)


@router.get("/reports", response_class=HTMLResponse)
def reports_page(
    request: Request,
    runtime: RuntimeDep,
    operator: PageOperator,
    from_: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    to: Annotated[str | None, Query(max_length=20)] = None,
    centre: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    lang = language_of(request)
    first, last = default_span(runtime)
    first, last = from_ or first, to or last
    chosen = centre or None
    error = None
    status = 200
    data: dict[str, Any] | None = None
    try:
        data = figures(runtime, operator, first, last, chosen)
    except ReportError as exc:
        error, status = str(exc), 422
    except NotFound as exc:  # a centre that does not exist (or is not this manager's)
        error, status = refusal(exc, translator(lang), lang), 404
    return render(
        request,
        "reports.html",
        status_code=status,
        first=first,
        last=last,
        centre=chosen,
        centres=[c for c in runtime.store.centres() if operator.scope.sees(c["id"])],
        figures=data,
        error=error,
        weekdays=charts.WEEKDAYS,
        in_language=in_language,
    )


@router.get("/reports/{table}.csv")
def report_csv(
    request: Request,
    table: Literal["visits", "occupancy", "members", "impact"],
    runtime: RuntimeDep,
    operator: PageOperator,
    from_: Annotated[str, Query(alias="from", max_length=20)],
    to: Annotated[str, Query(max_length=20)],
    centre: CentreFilter = None,
) -> Response:
    """One chart's figures as CSV, for the same filters as the page."""
    try:
        data = figures(runtime, operator, from_, to, centre)
    except ReportError as exc:
        raise HTTPException(422, str(exc)) from None
    name = f"{table}-{from_}-{to}{'-' + centre if centre else ''}"
    return reports_api.csv_response(charts.charts_csv(table, data), name)
