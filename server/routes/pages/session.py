"""Connexion: the login page, logging out, changing one's password, the language switch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse

from server.auth import service
from server.auth.deps import Auditor, PageOperator, address_of, clock
from server.auth.errors import AuthError, BadCredentials
from server.routes.auth import clear_session_cookies, set_session_cookies
from server.runtime import RuntimeDep
from server.web import i18n
from server.web.render import in_language, language_of, redirect, render, safe_next

router = APIRouter(include_in_schema=False)

YEAR_S = 365 * 86400


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: Annotated[str, Query(max_length=500)] = "/") -> HTMLResponse:
    return render(request, "login.html", next=safe_next(next), error=None, login="")


@router.post("/login", response_class=HTMLResponse)
def login_form(
    request: Request,
    runtime: RuntimeDep,
    login: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
) -> HTMLResponse:
    """A plain form (no script needed): a session, then the page asked for."""
    target = safe_next(next)
    lang = language_of(request)
    try:
        if not login.strip() or not password:
            raise BadCredentials(
                "identifiant et mot de passe requis / login and password are required"
            )
        opened = service.login(
            runtime.store,
            runtime.settings,
            login,
            password,
            address_of(request),
            clock(runtime),
        )
    except AuthError as exc:
        return render(
            request,
            "login.html",
            status_code=exc.status,
            headers=exc.headers,
            next=target,
            error=in_language(str(exc), lang),
            login=login,
        )
    response = redirect(request, target)
    set_session_cookies(response, request, opened, int(runtime.settings.session_max_hours * 3600))
    return response


@router.post("/logout", response_class=HTMLResponse)
def logout(request: Request, operator: PageOperator, runtime: RuntimeDep) -> HTMLResponse:
    """End this session (the CSRF header is checked like any write)."""
    session_hash = getattr(request.state, "session_hash", None)
    if session_hash:
        runtime.store.end_session(session_hash)
    Auditor(runtime, operator.login, address_of(request)).record(
        "logout", "operator", operator.login
    )
    response = redirect(request, "/login")
    clear_session_cookies(response)
    return response


@router.get("/password", response_class=HTMLResponse)
def password_page(request: Request, _: PageOperator) -> HTMLResponse:
    return render(request, "password.html", result=None, ok=False)


@router.post("/password", response_class=HTMLResponse)
def password_form(
    request: Request,
    operator: PageOperator,
    runtime: RuntimeDep,
    current: Annotated[str, Form(max_length=1024)] = "",
    new: Annotated[str, Form(max_length=1024)] = "",
    confirm: Annotated[str, Form(max_length=1024)] = "",
) -> HTMLResponse:
    """Change one's own password; the answer is the message shown under the form."""
    _ = i18n.translator(language_of(request))
    status = 200
    if not current or not new:
        result, status = _("Les deux mots de passe sont requis."), 422
    elif new != confirm:
        result, status = _("La confirmation ne correspond pas au nouveau mot de passe."), 422
    else:
        try:
            service.change_password(
                runtime.store,
                operator,
                current,
                new,
                address=address_of(request),
                now=clock(runtime),
                keep_session=getattr(request.state, "session_hash", None),
            )
            result = _("Mot de passe changé. Vos autres sessions sont fermées.")
        except BadCredentials as exc:
            result, status = in_language(str(exc), language_of(request)), 422
        except ValueError as exc:  # the password rules (length): the rule's own words
            result, status = f"{_('Nouveau mot de passe refusé')} : {exc}", 422
    # htmx swaps 2xx answers only: a refusal is still shown, its status in the fragment.
    return render(request, "_password_result.html", result=result, ok=status == 200)


@router.get("/lang/{lang}", response_class=HTMLResponse)
def switch_language(
    request: Request, lang: str, next: Annotated[str, Query(max_length=500)] = "/"
) -> HTMLResponse:
    """Remember the language in a cookie (a preference: no session needed), then go back."""
    response = redirect(request, safe_next(next))
    if lang in i18n.LANGUAGES:
        response.set_cookie(
            i18n.COOKIE, lang, max_age=YEAR_S, samesite="lax", path="/", httponly=True
        )
    return response
