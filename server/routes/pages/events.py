"""Événements: the filterable feed (centre, door, member, decision and its rule, kind,
days), a page at a time, and the same selection as CSV."""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from server.auth.deps import PageOperator
from server.domain.operators import Operator
from server.runtime import RuntimeDep
from server.store import Store
from server.web import describe
from server.web.filters import Form, day_range, page_number
from server.web.i18n import translator
from server.web.render import language_of, local_time, render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
CSV_MAX_ROWS = 100_000
FIELDS = ("centre", "door", "member", "decision", "reason", "kind", "since", "until")
DECISIONS = {"granted": "autorisé", "denied": "refusé"}


def selection(request: Request, store: Store, operator: Operator) -> tuple[Form, dict[str, Any]]:
    """The form as typed, and the store's filters it means (errors listed on the form)."""
    _ = translator(language_of(request))
    form = Form({name: request.query_params.get(name, "") for name in FIELDS})
    visible = [c for c in store.centres() if operator.scope.sees(c["id"])]
    centre = form.choice("centre", {c["id"] for c in visible}, _("Centre inconnu."))
    door = form.ident("door", _("Porte : lettres minuscules, chiffres, - et _."))
    member = form.text("member")
    decision = form.choice("decision", DECISIONS, _("Décision inconnue."))
    reason = form.choice("reason", describe.REASONS, _("Motif inconnu."))
    kind = form.choice("kind", describe.KINDS, _("Type d'événement inconnu."))
    first = form.day("since", _("Date de début : AAAA-MM-JJ."))
    last = form.day("until", _("Date de fin : AAAA-MM-JJ."))
    if first and last and last < first:
        form.errors.append(_("La date de fin est avant la date de début."))
    since, until = day_range(first, last)
    filters: dict[str, Any] = {
        "centre_id": centre,
        "centre_ids": operator.scope.centres,
        "door": door,
        "member_id": int(member) if member and member.isdigit() else None,
        "member_name": member if member and not member.isdigit() else None,
        "granted": None if decision is None else decision == "granted",
        "reason": reason,
        "kind": kind,
        "since": since,
        "until": until,
    }
    return form, {"filters": filters, "centres": visible}


@router.get("/events", response_class=HTMLResponse)
def events_page(request: Request, operator: PageOperator, runtime: RuntimeDep) -> HTMLResponse:
    store = runtime.store
    form, chosen = selection(request, store, operator)
    page = page_number(request.query_params.get("page"))
    total, items = (0, [])
    if not form.errors:
        total, items = store.events(
            **chosen["filters"], limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
    pages = max(1, -(-total // PAGE_SIZE))
    query = urlencode({k: v for k, v in form.raw.items() if v})
    return render(
        request,
        "events.html",
        form=form,
        centres=chosen["centres"],
        centre_names={c["id"]: c["name"] for c in chosen["centres"]},
        items=items,
        total=total,
        page=min(page, pages),
        pages=pages,
        filter_query=query,
        decisions=DECISIONS,
        status_code=422 if form.errors else 200,
    )


CSV_COLUMNS = (
    "time",
    "centre",
    "unit",
    "door",
    "kind",
    "decision",
    "reason",
    "direction",
    "member_id",
    "member",
    "room",
    "room_state",
    "description",
    "delayed",
)


@router.get("/events.csv")
def events_csv(request: Request, operator: PageOperator, runtime: RuntimeDep) -> Response:
    """The selection as CSV (at most 100,000 rows, newest first; local times)."""
    store = runtime.store
    form, chosen = selection(request, store, operator)
    if form.errors:
        return Response("\n".join(form.errors), status_code=422, media_type="text/plain")
    _ = translator(language_of(request))
    _total, items = store.events(**chosen["filters"], limit=CSV_MAX_ROWS, offset=0)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in items:
        granted = e.get("granted")
        writer.writerow(
            [
                local_time(e["ts"], "%Y-%m-%dT%H:%M:%S%z"),
                e.get("centre_id", ""),
                e.get("device_id", ""),
                e.get("door", ""),
                e.get("kind", ""),
                "" if granted is None else ("granted" if granted else "denied"),
                e.get("reason", ""),
                e.get("direction", ""),
                e.get("member_id", ""),
                e.get("member_name", ""),
                e.get("room", ""),
                e.get("room_state", ""),
                describe.event_text(e, _),
                "yes" if e.get("historical") else "",
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="evenements.csv"'},
    )
