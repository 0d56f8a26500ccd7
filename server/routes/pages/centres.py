"""Centres: each centre's details, opening hours, closures, rooms and doors; a door opened
remotely with the unit's real answer shown; a unit locked down and released.

Actions go through the API routes' own functions (roles, a manager's centres, audit, the
units' lists); the page shows what the unit answered, never "done" for a door that did
not open.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from server.auth.deps import Auditor, PageOperator, address_of, require_centre
from server.domain.operators import Operator
from server.routes import calendar as calendar_api
from server.routes import centres as centres_api
from server.routes.params import CentreIdPath, DeviceIdPath
from server.runtime import Runtime, RuntimeDep
from server.web import forms
from server.web.forms import REFUSED, FormError, text
from server.web.i18n import translator
from server.web.render import in_language, language_of, render

router = APIRouter(include_in_schema=False)

DAYS = ("Lundi", "Mardi", "Mercredi", "Jeudi", "Vendredi", "Samedi", "Dimanche")
SLOTS = 2  # opening intervals a day on the form (morning and afternoon)
CALENDAR_DAYS = 14
LOCAL_ID = re.compile(calendar_api.LOCAL_ID)


def auditor(request: Request, runtime: Runtime, operator: Operator) -> Auditor:
    return Auditor(runtime, operator.login, address_of(request))


@router.get("/centres", response_class=HTMLResponse)
def centres_page(request: Request, runtime: RuntimeDep, operator: PageOperator) -> HTMLResponse:
    store = runtime.store
    centres = [c for c in store.centres() if operator.scope.sees(c["id"])]
    units: dict[str, list[dict]] = {}
    for device in store.devices():
        units.setdefault(device.get("centre_id") or "", []).append(device)
    return render(request, "centres.html", centres=centres, units=units)


def minutes(value: int) -> str:
    return f"{value // 60:02d}:{value % 60:02d}"


def hours_rows(hours: list | None) -> list[dict[str, Any]]:
    """The week as the hours form shows it: per day, up to SLOTS intervals as HH:MM."""
    rows = []
    for index, name in enumerate(DAYS):
        day = (hours or [[]] * 7)[index]
        slots = [(minutes(s), minutes(e)) for s, e in day][:SLOTS]
        rows.append(
            {"index": index, "name": name, "slots": slots + [("", "")] * (SLOTS - len(slots))}
        )
    return rows


def parse_minutes(value: Any, field: str) -> int | None:
    raw = text(value)
    if raw is None:
        return None
    hour, sep, minute = raw.partition(":")
    if not sep or not hour.isdigit() or not minute.isdigit():
        raise FormError({field: "heure attendue (HH:MM)"})
    total = int(hour) * 60 + int(minute)
    if int(minute) > 59 or total > 1440:
        raise FormError({field: "heure attendue (HH:MM)"})
    return total


def hours_of(data: dict[str, Any]) -> list[list[list[int]]] | None:
    """The hours form as the API's ``hours``: None when open around the clock."""
    if data.get("always") == "1":
        return None
    week: list[list[list[int]]] = []
    errors: dict[str, str] = {}
    for index in range(7):
        day: list[list[int]] = []
        for slot in range(SLOTS):
            start_field, end_field = f"d{index}s{slot}_start", f"d{index}s{slot}_end"
            try:
                start = parse_minutes(data.get(start_field), start_field)
                end = parse_minutes(data.get(end_field), end_field)
            except FormError as exc:
                errors.update(exc.fields)
                continue
            if start is None and end is None:
                continue
            if start is None or end is None or end <= start:
                errors[start_field] = "ouverture avant fermeture, les deux remplies"
                continue
            day.append([start, end])
        week.append(day)
    if errors:
        raise FormError(errors)
    return week


def detail(
    request: Request,
    runtime: Runtime,
    operator: Operator,
    centre_id: str,
    *,
    full: bool = False,
    message: str | None = None,
    error: str | None = None,
    errors: dict[str, str] | None = None,
    results: dict[str, dict[str, str]] | None = None,
) -> HTMLResponse:
    """The centre's page, or (htmx) its body after an action."""
    store = runtime.store
    require_centre(operator.scope, centre_id, f"no centre {centre_id!r}")
    centre = store.centre(centre_id)
    devices = store.devices(centre_id)
    registry = store.doors(centre_id)
    named = {d["door_id"]: d for d in registry}
    doors = []  # every door a unit of the centre reports or the registry names
    for device in devices:
        for door_id in device.get("doors") or []:
            doors.append(
                {"door_id": door_id, "device": device, "name": named.get(door_id, {}).get("name")}
            )
    reported = {(d["device"]["device_id"], d["door_id"]) for d in doors}
    by_id = {d["device_id"]: d for d in devices}
    for door in registry:
        device = by_id.get(door.get("device_id") or "")
        if device and (device["device_id"], door["door_id"]) not in reported:
            doors.append({"door_id": door["door_id"], "device": device, "name": door["name"]})
    return render(
        request,
        "centres_detail.html" if full else "centres_body.html",
        centre=centre,
        may_change=operator.can_write,
        devices=devices,
        doors=doors,
        registry=registry,
        rooms=store.rooms(centre_id),
        closures=store.closures(centre_id),
        calendar=calendar_api.centre_calendar(
            centre_id, store, operator.scope, start=None, days=CALENDAR_DAYS
        ),
        week=hours_rows(centre.get("hours")),
        always=centre.get("hours") is None,
        days=DAYS,
        minutes=minutes,
        oob=not full,
        message=message,
        error=error,
        errors=errors or {},
        results=results or {},
    )


@router.get("/centres/{centre_id}", response_class=HTMLResponse)
def centre_page(
    request: Request, centre_id: CentreIdPath, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    return detail(request, runtime, operator, centre_id, full=True)


async def act(
    request: Request,
    runtime: Runtime,
    operator: Operator,
    centre_id: str,
    action: Callable[[dict[str, Any]], Any],
    done: str,
) -> HTMLResponse:
    data = await forms.fields_of(request)
    lang = language_of(request)
    _ = translator(lang)
    forms.require_write(operator)
    try:
        await run_in_threadpool(action, data)
    except REFUSED as exc:
        return detail(
            request,
            runtime,
            operator,
            centre_id,
            error=forms.refusal(exc, _, lang),
            errors=exc.fields if isinstance(exc, FormError) else {},
        )
    return detail(request, runtime, operator, centre_id, message=_(done))


@router.post("/centres/{centre_id}/edit", response_class=HTMLResponse)
async def edit_centre(
    request: Request, centre_id: CentreIdPath, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    def run(data: dict[str, Any]) -> None:
        fields = {
            key: text(data.get(key))
            for key in ("name", "commune", "insee", "address", "lat", "lon", "capacity")
        }
        fields["name"] = fields["name"] or ""
        body = forms.validate(calendar_api.CentreUpdate, fields)
        calendar_api.update_centre(
            centre_id, body, runtime, operator, operator.scope, auditor(request, runtime, operator)
        )

    return await act(request, runtime, operator, centre_id, run, "Centre enregistré.")


@router.post("/centres/{centre_id}/hours", response_class=HTMLResponse)
async def set_hours(
    request: Request, centre_id: CentreIdPath, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    def run(data: dict[str, Any]) -> None:
        body = forms.validate(calendar_api.CentreUpdate, {"hours": hours_of(data)})
        calendar_api.update_centre(
            centre_id, body, runtime, operator, operator.scope, auditor(request, runtime, operator)
        )

    return await act(
        request, runtime, operator, centre_id, run, "Horaires enregistrés : envoyés aux boîtiers."
    )


@router.post("/centres/{centre_id}/closures", response_class=HTMLResponse)
async def add_closure(
    request: Request, centre_id: CentreIdPath, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    def run(data: dict[str, Any]) -> None:
        body = forms.validate(
            calendar_api.ClosureCreate,
            {
                "start_date": text(data.get("start_date")) or "",
                "end_date": text(data.get("end_date")) or text(data.get("start_date")) or "",
                "reason": text(data.get("reason")),
            },
        )
        calendar_api.add_closure(
            centre_id, body, runtime, operator, operator.scope, auditor(request, runtime, operator)
        )

    return await act(request, runtime, operator, centre_id, run, "Fermeture ajoutée.")


@router.post("/centres/{centre_id}/closures/{closure_id}/remove", response_class=HTMLResponse)
async def remove_closure(
    request: Request,
    centre_id: CentreIdPath,
    closure_id: calendar_api.ClosureId,
    runtime: RuntimeDep,
    operator: PageOperator,
) -> HTMLResponse:
    def run(_: dict[str, Any]) -> None:
        calendar_api.remove_closure(
            centre_id,
            closure_id,
            runtime,
            operator,
            operator.scope,
            auditor(request, runtime, operator),
        )

    return await act(request, runtime, operator, centre_id, run, "Fermeture retirée.")


@router.post("/centres/{centre_id}/rooms", response_class=HTMLResponse)
async def put_room(
    request: Request, centre_id: CentreIdPath, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    def run(data: dict[str, Any]) -> None:
        room_id = text(data.get("room_id")) or ""
        if not LOCAL_ID.match(room_id):
            raise FormError({"room_id": "identifiant : minuscules, chiffres, - ou _"})
        body = forms.validate(
            calendar_api.RoomPut,
            {
                "name": text(data.get("name")) or "",
                "capacity": text(data.get("capacity")),
                "bookable": data.get("bookable") == "1",
            },
        )
        calendar_api.put_room(
            centre_id,
            room_id,
            body,
            runtime,
            operator,
            operator.scope,
            auditor(request, runtime, operator),
        )

    return await act(request, runtime, operator, centre_id, run, "Salle enregistrée.")


@router.post("/centres/{centre_id}/doors", response_class=HTMLResponse)
async def put_door(
    request: Request, centre_id: CentreIdPath, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    def run(data: dict[str, Any]) -> None:
        door_id = text(data.get("door_id")) or ""
        if not LOCAL_ID.match(door_id):
            raise FormError({"door_id": "identifiant : minuscules, chiffres, - ou _"})
        body = forms.validate(
            calendar_api.DoorPut,
            {"name": text(data.get("name")) or "", "device_id": text(data.get("device_id"))},
        )
        calendar_api.put_door(
            centre_id,
            door_id,
            body,
            runtime,
            operator,
            operator.scope,
            auditor(request, runtime, operator),
        )

    return await act(request, runtime, operator, centre_id, run, "Porte enregistrée.")


def command_result(answer: dict | JSONResponse, lang: str) -> tuple[str, str]:
    """(outcome, words) of a unit command: executed, refused, offline or no answer."""
    if isinstance(answer, dict):
        return "executed", ""
    body = json.loads(bytes(answer.body))
    if answer.status_code == 409:
        return "refused", str(body.get("reason") or "")
    return "timeout", in_language(str(body.get("error", "")), lang)


async def unit_command(
    request: Request,
    runtime: Runtime,
    operator: Operator,
    device_id: str,
    action: str,
) -> HTMLResponse:
    """Send one command to the unit, wait for its answer (off the event loop), and show it
    beside the door or unit it was for."""
    data = await forms.fields_of(request)
    lang = language_of(request)
    _ = translator(lang)
    door = text(data.get("door"))
    centres_api.visible_device(runtime.store, operator.scope, device_id)  # else 404
    forms.require_write(operator)
    try:
        reason = text(data.get("reason"))
        if reason is None:
            raise FormError({"reason": "obligatoire"})
        fields: dict[str, Any] = {"reason": reason}
        audit = auditor(request, runtime, operator)
        if action == "unlock":
            body: Any = forms.validate(centres_api.UnlockCommand, {**fields, "door": door or ""})
            call = centres_api.unlock
        else:
            body = forms.validate(centres_api.UnitCommand, fields)
            call = centres_api.lockdown if action == "lockdown" else centres_api.release
        answer = await run_in_threadpool(
            call, device_id, body, runtime, operator, operator.scope, audit
        )
        outcome, why = command_result(answer, lang)
    except HTTPException as exc:
        if exc.status_code == 503:
            outcome, why = "offline", in_language(str(exc.detail), lang)
        else:
            outcome, why = "error", forms.refusal(exc, _, lang)
    except REFUSED as exc:
        outcome, why = "error", forms.refusal(exc, _, lang)
    return render(
        request,
        "centres_result.html",
        result={"outcome": outcome, "why": why, "action": action},
    )


@router.post("/centres/units/{device_id}/unlock", response_class=HTMLResponse)
async def unlock(
    request: Request, device_id: DeviceIdPath, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    return await unit_command(request, runtime, operator, device_id, "unlock")


@router.post("/centres/units/{device_id}/lockdown", response_class=HTMLResponse)
async def lockdown(
    request: Request, device_id: DeviceIdPath, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    return await unit_command(request, runtime, operator, device_id, "lockdown")


@router.post("/centres/units/{device_id}/release", response_class=HTMLResponse)
async def release(
    request: Request, device_id: DeviceIdPath, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    return await unit_command(request, runtime, operator, device_id, "release")
