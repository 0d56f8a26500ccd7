"""Membres: find, create and change members, their plans and badges, enrol a card just
tapped at a door, replace a lost badge, see their visits; export and erase (admins).

Every action goes through the API route's own function, so the rules (roles, a manager's
centres, audit, the units' lists) are the API's; the page shows the result or the refusal
in words, in an ``aria-live`` region.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from protocol.badges import badge_hash, parse_uid
from server.auth.deps import Auditor, PageOperator, address_of, clock
from server.domain.operators import Operator
from server.routes import members as members_api
from server.routes import plans as plans_api
from server.routes import privacy as privacy_api
from server.routes.params import MAX_ID, BadgeId, MemberId
from server.runtime import Runtime, RuntimeDep
from server.store import NotFound
from server.web import forms
from server.web.forms import REFUSED, FormError, text
from server.web.i18n import translator
from server.web.render import language_of, redirect, render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
TAP_WINDOW_S = 15 * 60  # unknown cards offered for enrolment: those tapped this recently
VISITS_SHOWN = 20
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def auditor(request: Request, runtime: Runtime, operator: Operator) -> Auditor:
    return Auditor(runtime, operator.login, address_of(request))


def search_hash(runtime: Runtime, query: str) -> str | None:
    """The card hash a search could name: a typed UID, or a hash pasted whole."""
    if HEX64.match(query.lower()):
        return query.lower()
    try:
        return badge_hash(runtime.badge_key, parse_uid(query))
    except ValueError:
        return None


@router.get("/members", response_class=HTMLResponse)
def members_page(
    request: Request,
    runtime: RuntimeDep,
    operator: PageOperator,
    q: Annotated[str, Query(max_length=200)] = "",
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    erased: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> HTMLResponse:
    """The members the operator sees, found by name, e-mail or badge."""
    query = q.strip()
    total, items = runtime.store.members(
        limit=PAGE_SIZE,
        offset=offset,
        centre_ids=operator.scope.centres,
        search=query or None,
        badge_hash=search_hash(runtime, query) if query else None,
    )
    template = "members_table.html" if request.headers.get("HX-Target") == "results" else None
    return render(
        request,
        template or "members.html",
        q=query,
        total=total,
        items=items,
        offset=offset,
        page_size=PAGE_SIZE,
        centres=visible_centres(runtime, operator),
        form={},
        errors={},
        message=(
            translator(language_of(request))("Membre {id} effacé.", id=erased) if erased else None
        ),
    )


def visible_centres(runtime: Runtime, operator: Operator) -> list[dict]:
    return [c for c in runtime.store.centres() if operator.scope.sees(c["id"])]


def member_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A member form's values as the API's body (dates as local days)."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {"name": text(data.get("name")) or ""}
    body["email"] = text(data.get("email"))
    try:
        body["valid_from"] = forms.day_start(data.get("valid_from"), "valid_from")
    except FormError as exc:
        errors.update(exc.fields)
    try:
        body["valid_until"] = forms.day_end(data.get("valid_until"), "valid_until")
    except FormError as exc:
        errors.update(exc.fields)
    if data.get("every_centre") == "1":
        body["centres"] = None
    else:
        body["centres"] = forms.as_list(data.get("centres"))
        if not body["centres"]:
            errors["centres"] = "choisissez au moins un centre, ou tous les centres"
    body["lockdown_exempt"] = data.get("lockdown_exempt") == "1"
    body["commute_insee"] = text(data.get("commute_insee"))
    if errors:
        raise FormError(errors)
    return body


@router.post("/members", response_class=HTMLResponse)
async def create_member(
    request: Request, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    data = await forms.fields_of(request)
    lang = language_of(request)
    forms.require_write(operator)
    try:
        body = forms.validate(members_api.MemberCreate, member_fields(data))
        member = members_api.create_member(
            body, runtime, operator, operator.scope, auditor(request, runtime, operator)
        )
    except REFUSED as exc:
        errors = exc.fields if isinstance(exc, FormError) else {}
        return render(
            request,
            "members_new.html",
            centres=visible_centres(runtime, operator),
            form=data,
            errors=errors,
            message=forms.refusal(exc, translator(lang), lang),
        )
    return redirect(request, f"/members/{member['id']}?created=1")


def recent_taps(runtime: Runtime, operator: Operator, now: float) -> list[dict]:
    """Unknown cards tapped lately at a door the operator sees, newest first."""
    return [
        card
        for card in runtime.store.unknown_cards()
        if card.get("badge_hash")
        and operator.scope.sees(card.get("centre_id"))
        and card["last_seen"] >= now - TAP_WINDOW_S
    ]


def detail(
    request: Request,
    runtime: Runtime,
    operator: Operator,
    member_id: int,
    *,
    message: str | None = None,
    error: str | None = None,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    full: bool = False,
) -> HTMLResponse:
    """The member's page, or (for htmx) its body after an action."""
    store = runtime.store
    member = members_api.visible_member(store, operator.scope, member_id)
    now = clock(runtime)
    _, visits = store.visits(now=now, member_id=member_id, limit=VISITS_SHOWN)
    names = {c["id"]: c["name"] for c in store.centres()}
    return render(
        request,
        "members_detail.html" if full else "members_body.html",
        member=member,
        may_change=operator.can_write and operator.scope.changes_member(member["centres"]),
        held=store.member_plans(member_id),
        catalogue=[p for p in store.plans() if p["active"]],
        taps=recent_taps(runtime, operator, now),
        tap_window_min=TAP_WINDOW_S // 60,
        visits=visits,
        centre_names=names,
        centres=visible_centres(runtime, operator),
        as_date=forms.as_date,
        oob=not full,
        message=message,
        error=error,
        errors=errors or {},
        form=form,
        now=now,
    )


@router.get("/members/{member_id}", response_class=HTMLResponse)
def member_page(
    request: Request,
    member_id: MemberId,
    runtime: RuntimeDep,
    operator: PageOperator,
    created: Annotated[int, Query(ge=0, le=1)] = 0,
) -> HTMLResponse:
    _ = translator(language_of(request))
    return detail(
        request,
        runtime,
        operator,
        member_id,
        message=_("Membre créé.") if created else None,
        full=True,
    )


@router.get("/members/{member_id}/taps", response_class=HTMLResponse)
def taps_fragment(
    request: Request, member_id: MemberId, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    """The cards tapped lately, for the enrol and replace forms (their "refresh")."""
    members_api.visible_member(runtime.store, operator.scope, member_id)
    return render(
        request,
        "members_taps.html",
        taps=recent_taps(runtime, operator, clock(runtime)),
        tap_window_min=TAP_WINDOW_S // 60,
        field=request.query_params.get("field", "enrol"),
    )


async def act(
    request: Request,
    runtime: Runtime,
    operator: Operator,
    member_id: int,
    action: Any,
    done: str,
) -> HTMLResponse:
    """Run ``action(form_fields)`` and show the member again with ``done`` or the
    refusal (the form's values kept, each wrong field named)."""
    data = await forms.fields_of(request)
    lang = language_of(request)
    _ = translator(lang)
    forms.require_write(operator)
    try:
        action(data)
    except REFUSED as exc:
        return detail(
            request,
            runtime,
            operator,
            member_id,
            error=forms.refusal(exc, _, lang),
            errors=exc.fields if isinstance(exc, FormError) else {},
            form=data,
        )
    return detail(request, runtime, operator, member_id, message=_(done))


@router.post("/members/{member_id}/edit", response_class=HTMLResponse)
async def edit_member(
    request: Request, member_id: MemberId, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    def run(data: dict[str, Any]) -> None:
        body = forms.validate(members_api.MemberUpdate, member_fields(data))
        members_api.update_member(
            member_id, body, runtime, operator, operator.scope, auditor(request, runtime, operator)
        )

    return await act(request, runtime, operator, member_id, run, "Fiche enregistrée.")


@router.post("/members/{member_id}/suspend", response_class=HTMLResponse)
async def suspend_member(
    request: Request, member_id: MemberId, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    def run(data: dict[str, Any]) -> None:
        body = forms.validate(plans_api.Suspension, {"reason": text(data.get("reason")) or ""})
        plans_api.suspend(
            member_id, body, runtime, operator, operator.scope, auditor(request, runtime, operator)
        )

    return await act(
        request, runtime, operator, member_id, run, "Membre suspendu : ses badges sont refusés."
    )


@router.post("/members/{member_id}/reactivate", response_class=HTMLResponse)
async def reactivate_member(
    request: Request, member_id: MemberId, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    def run(data: dict[str, Any]) -> None:
        reason = text(data.get("reason")) or "réactivé"
        body = forms.validate(plans_api.Suspension, {"reason": reason})
        plans_api.reactivate(
            member_id, body, runtime, operator, operator.scope, auditor(request, runtime, operator)
        )

    return await act(request, runtime, operator, member_id, run, "Membre réactivé.")


@router.post("/members/{member_id}/plans", response_class=HTMLResponse)
async def give_plan(
    request: Request, member_id: MemberId, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    def run(data: dict[str, Any]) -> None:
        fields: dict[str, Any] = {"plan_id": text(data.get("plan_id")) or ""}
        fields["valid_from"] = forms.day_start(data.get("valid_from"), "valid_from")
        fields["valid_until"] = forms.day_end(data.get("valid_until"), "valid_until")
        body = forms.validate(plans_api.PlanGive, fields)
        plans_api.give_plan(
            member_id, body, runtime, operator, operator.scope, auditor(request, runtime, operator)
        )

    return await act(request, runtime, operator, member_id, run, "Formule attribuée.")


@router.post("/members/{member_id}/plans/{held_id}/end", response_class=HTMLResponse)
async def end_plan(
    request: Request,
    member_id: MemberId,
    held_id: plans_api.HeldId,
    runtime: RuntimeDep,
    operator: PageOperator,
) -> HTMLResponse:
    def run(_: dict[str, Any]) -> None:
        plans_api.end_plan(
            member_id,
            held_id,
            runtime,
            operator,
            operator.scope,
            auditor(request, runtime, operator),
        )

    return await act(request, runtime, operator, member_id, run, "Formule terminée.")


def card_body(data: dict[str, Any], prefix: str) -> members_api.BadgeEnrol:
    """The card of an enrol or replace form: a tapped card chosen, or a typed UID."""
    uid = text(data.get(f"{prefix}_uid"))
    tapped = text(data.get(f"{prefix}_hash"))
    if (uid is None) == (tapped is None):
        raise FormError(
            {f"{prefix}_uid": "choisissez une carte présentée au lecteur ou saisissez son UID"}
        )
    fields = {"uid": uid, "badge_hash": tapped, "label": text(data.get(f"{prefix}_label"))}
    return forms.validate(members_api.BadgeEnrol, fields)


@router.post("/members/{member_id}/badges", response_class=HTMLResponse)
async def enrol_badge(
    request: Request, member_id: MemberId, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    def run(data: dict[str, Any]) -> None:
        members_api.enrol_badge(
            member_id,
            card_body(data, "enrol"),
            runtime,
            operator,
            operator.scope,
            auditor(request, runtime, operator),
        )

    return await act(
        request, runtime, operator, member_id, run, "Badge enregistré : il ouvre dès maintenant."
    )


def own_badge(runtime: Runtime, member_id: int, badge_id: int) -> None:
    """A badge of another member is not found from this member's page."""
    if runtime.store.badge(badge_id)["member_id"] != member_id:
        raise NotFound(f"no badge {badge_id}")


@router.post("/members/{member_id}/badges/{badge_id}/revoke", response_class=HTMLResponse)
async def revoke_badge(
    request: Request,
    member_id: MemberId,
    badge_id: BadgeId,
    runtime: RuntimeDep,
    operator: PageOperator,
) -> HTMLResponse:
    def run(_: dict[str, Any]) -> None:
        own_badge(runtime, member_id, badge_id)
        members_api.revoke_badge(
            badge_id, runtime, operator, operator.scope, auditor(request, runtime, operator)
        )

    return await act(request, runtime, operator, member_id, run, "Badge révoqué.")


@router.post("/members/{member_id}/badges/{badge_id}/replace", response_class=HTMLResponse)
async def replace_badge(
    request: Request,
    member_id: MemberId,
    badge_id: BadgeId,
    runtime: RuntimeDep,
    operator: PageOperator,
) -> HTMLResponse:
    """Badge perdu: the lost one revoked and the new one enrolled in one step."""

    def run(data: dict[str, Any]) -> None:
        own_badge(runtime, member_id, badge_id)
        plans_api.replace_lost_badge(
            badge_id,
            card_body(data, "replace"),
            runtime,
            operator,
            operator.scope,
            auditor(request, runtime, operator),
        )

    return await act(
        request,
        runtime,
        operator,
        member_id,
        run,
        "Badge perdu révoqué et nouveau badge enregistré.",
    )


@router.get("/members/{member_id}/export.json")
def export_member(
    request: Request, member_id: MemberId, runtime: RuntimeDep, operator: PageOperator
) -> Response:
    """Everything stored about the member, as a JSON file to download (admins)."""
    forms.require_admin(operator)
    data = privacy_api.export_member(
        member_id, runtime, operator, auditor(request, runtime, operator)
    )
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2),
        media_type="application/json; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="membre-{member_id}.json"'},
    )


@router.post("/members/{member_id}/erase", response_class=HTMLResponse)
async def erase_member(
    request: Request, member_id: MemberId, runtime: RuntimeDep, operator: PageOperator
) -> HTMLResponse:
    """Erase the member once the id is typed again (admins); then back to the list."""
    data = await forms.fields_of(request)
    lang = language_of(request)
    _ = translator(lang)
    forms.require_admin(operator)
    try:
        confirm = text(data.get("confirm")) or ""
        if not confirm.isdigit() or int(confirm) != member_id:
            raise FormError({"confirm": _("retapez le numéro du membre ({id})", id=member_id)})
        body = privacy_api.EraseRequest(confirm=min(int(confirm), MAX_ID))
        privacy_api.erase_member(
            member_id, body, runtime, operator, auditor(request, runtime, operator)
        )
    except REFUSED as exc:
        return detail(
            request,
            runtime,
            operator,
            member_id,
            error=forms.refusal(exc, _, lang),
            errors=exc.fields if isinstance(exc, FormError) else {},
            form=data,
        )
    return redirect(request, f"/members?erased={member_id}")
