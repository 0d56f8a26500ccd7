"""Journal (admins only): the audit log with filters, a page at a time, and its CSV."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from server.auth.deps import PageOperator
from server.runtime import RuntimeDep
from server.web.filters import Form, day_range, page_number
from server.web.i18n import translator
from server.web.render import TIMEZONE, language_of, render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
FIELDS = ("actor", "action", "centre", "since", "until")


@router.get("/journal", response_class=HTMLResponse)
def journal_page(request: Request, operator: PageOperator, runtime: RuntimeDep) -> HTMLResponse:
    _ = translator(language_of(request))
    if operator.role != "admin":
        return render(
            request,
            "error.html",
            status_code=403,
            heading=_("Journal"),
            message=_("Le journal est réservé aux administrateurs."),
        )
    store = runtime.store
    form = Form({name: request.query_params.get(name, "") for name in FIELDS})
    actor = form.text("actor")
    action = form.text("action", max_length=50)
    centre = form.choice("centre", {c["id"] for c in store.centres()}, _("Centre inconnu."))
    first = form.day("since", _("Date de début : AAAA-MM-JJ."))
    last = form.day("until", _("Date de fin : AAAA-MM-JJ."))
    if first and last and last < first:
        form.errors.append(_("La date de fin est avant la date de début."))
    since, until = day_range(first, last)
    page = page_number(request.query_params.get("page"))
    total, items = 0, []
    if not form.errors:
        total, items = store.audit_entries(
            actor=actor,
            action=action,
            centre_id=centre,
            since=since,
            until=until,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
    pages = max(1, -(-total // PAGE_SIZE))
    # The CSV is the API's (/api/audit.csv): the same filters, the same local days.
    csv_query = {"actor": actor, "action": action, "centre": centre}
    for name, ts in (("since", since), ("until", until)):
        if ts is not None:
            csv_query[name] = datetime.fromtimestamp(ts, TIMEZONE).isoformat()
    return render(
        request,
        "journal.html",
        status_code=422 if form.errors else 200,
        form=form,
        centres=store.centres(),
        items=items,
        total=total,
        page=min(page, pages),
        pages=pages,
        filter_query=urlencode({k: v for k, v in form.raw.items() if v}),
        csv_query=urlencode({k: v for k, v in csv_query.items() if v}),
    )
