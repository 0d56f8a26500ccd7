"""One way to answer a page: ``render(request, "page.html", **ctx)``.

Every template gets the operator logged in (``operator``, ``role``, ``can_write``,
``is_admin``), the language (``lang``) and its ``_()``, the session's CSRF token (``csrf``,
sent back by htmx in the ``X-CSRF-Token`` header of every write), the navigation (``nav``)
and a few formatting helpers. Templates live in ``server/web/templates``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from server.auth.deps import CSRF_COOKIE
from server.domain.operators import Operator
from server.web import describe, i18n

TIMEZONE = ZoneInfo("Europe/Paris")  # the centres' (and their operators') local time


@dataclass(frozen=True)
class NavItem:
    path: str
    label: str  # French source text
    admin_only: bool = False


# Every page of the dashboard, in the order of the menu.
NAV = (
    NavItem("/", "En direct"),
    NavItem("/events", "Événements"),
    NavItem("/members", "Membres"),
    NavItem("/centres", "Centres"),
    NavItem("/fleet", "Parc"),
    NavItem("/reports", "Rapports"),
    NavItem("/journal", "Journal", admin_only=True),
)


def local_time(ts: float | None, fmt: str = "%d/%m/%Y %H:%M") -> str:
    """A Unix time as the centres' local time ("" for none)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, TIMEZONE).strftime(fmt)


def short_time(ts: float | None) -> str:
    """HH:MM today, else DD/MM HH:MM."""
    if ts is None:
        return ""
    when = datetime.fromtimestamp(ts, TIMEZONE)
    if when.date() == datetime.now(TIMEZONE).date():
        return when.strftime("%H:%M")
    return when.strftime("%d/%m %H:%M")


def list_version(version: int | None) -> str:
    """An access list's version: in practice its publishing time in milliseconds, shown
    as that time (a small number, as from a test, as it is)."""
    if version is None:
        return "—"
    if version > 10**11:
        return local_time(version / 1000, "%d/%m %H:%M:%S")
    return str(version)


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("server", "web/templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        # Records leave out the fields they do not have (an event without a door): a
        # missing field reads as empty, so templates test ``e.door`` without ``.get``.
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        local_time=local_time,
        short_time=short_time,
        list_version=list_version,
        event_text=describe.event_text,
        is_alert=describe.is_alert,
        member_label=describe.member_label,
        alarm_words=describe.ALARMS,
        reason_words=describe.REASONS,
        kind_words=describe.KINDS,
    )
    return env


def language_of(request: Request) -> str:
    return i18n.language(request.cookies.get(i18n.COOKIE))


def context(request: Request, **ctx: Any) -> dict[str, Any]:
    """What every template may use, then the page's own values."""
    operator: Operator | None = getattr(request.state, "operator", None)
    lang = language_of(request)
    role = operator.role if operator else None
    is_admin = role == "admin"
    return {
        "request": request,
        "operator": operator,
        "role": role,
        "can_write": bool(operator and operator.can_write),
        "is_admin": is_admin,
        "lang": lang,
        "languages": i18n.NAMES,
        "_": i18n.translator(lang),
        "csrf": request.cookies.get(CSRF_COOKIE, ""),
        "path": request.url.path,
        "nav": [item for item in NAV if is_admin or not item.admin_only],
        **ctx,
    }


def render_text(request: Request, template: str, **ctx: Any) -> str:
    return environment().get_template(template).render(context(request, **ctx))


def render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **ctx: Any,
) -> HTMLResponse:
    """A page (or an htmx fragment) rendered for the operator of this request."""
    return HTMLResponse(
        render_text(request, template, **ctx), status_code=status_code, headers=headers
    )


def in_language(message: str, lang: str) -> str:
    """The server's errors say ``"français / English"``: the half in the page's language."""
    french, sep, english = message.partition(" / ")
    if not sep:
        return message
    return english if lang == "en" else french


def safe_next(target: str | None) -> str:
    """Only a path of this site: never an open redirect to another one."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def redirect(request: Request, location: str) -> HTMLResponse:
    """Go to ``location``: htmx follows ``HX-Redirect``, a plain form the 303."""
    if request.headers.get("HX-Request"):
        return HTMLResponse("", headers={"HX-Redirect": location})
    return HTMLResponse("", status_code=303, headers={"Location": location})
