"""Parc: every unit's health (last seen, versions, access-list skew, outbox, clock,
faults) and the alarms, which admins and managers acknowledge here."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from server.auth.deps import Auditor, PageOperator, address_of
from server.auth.errors import Forbidden
from server.domain import fleet as fleet_rules
from server.domain.operators import Operator
from server.routes import alarms as alarm_routes
from server.routes.params import MAX_ID
from server.runtime import Runtime, RuntimeDep
from server.store import Conflict
from server.web import live
from server.web.i18n import translator
from server.web.render import language_of, render

router = APIRouter(include_in_schema=False)

ALARM_LIMIT = 200


def units(runtime: Runtime, operator: Operator) -> list[dict]:
    now = time.time()
    connected = runtime.bridge.connected.is_set()
    found = []
    for unit, published, kinds in runtime.store.fleet(centre_ids=operator.scope.centres):
        health = fleet_rules.unit_health(
            unit, published_version=published, open_alarms=kinds, now=now
        )
        health["shown_state"] = live.unit_state(health, connected)
        found.append(health)
    return found


def alarms(runtime: Runtime, operator: Operator) -> tuple[int, list[dict]]:
    """Alarms that still need someone: open, or not yet acknowledged."""
    return runtime.store.alarms(view="active", centre_ids=operator.scope.centres, limit=ALARM_LIMIT)


@router.get("/fleet", response_class=HTMLResponse)
def fleet_page(request: Request, operator: PageOperator, runtime: RuntimeDep) -> HTMLResponse:
    total, items = alarms(runtime, operator)
    return render(
        request,
        "fleet.html",
        units=units(runtime, operator),
        broker_connected=runtime.bridge.connected.is_set(),
        alarms=items,
        alarm_total=total,
        notice=None,
    )


@router.post("/fleet/alarms/{alarm_id}/ack", response_class=HTMLResponse)
def acknowledge(
    request: Request,
    alarm_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    operator: PageOperator,
    runtime: RuntimeDep,
) -> HTMLResponse:
    """Acknowledge through the API's own route function (same role, scope and audit
    rules); the answer is the alarms section again, with what happened."""
    _ = translator(language_of(request))
    if not operator.can_write:
        raise Forbidden("lecture seule : votre rôle ne permet pas de modifier / read-only role")
    try:
        done = alarm_routes.acknowledge(
            alarm_id,
            runtime,
            operator,
            operator.scope,
            Auditor(runtime, operator.login, address_of(request)),
        )
        notice = _("Alarme n°{n} acquittée.", n=done["id"])
    except Conflict:  # someone else was quicker: say so, and show the list as it is now
        notice = _("Alarme n°{n} déjà acquittée.", n=alarm_id)
    total, items = alarms(runtime, operator)
    return render(request, "_fleet_alarms.html", alarms=items, alarm_total=total, notice=notice)
