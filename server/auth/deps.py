"""Who is calling, and what they may do: the FastAPI dependencies every route declares.

``CurrentOperator`` (any login), ``CanWrite`` (admins and managers), ``AdminOnly``, the
centre scope (``Scope``) and an ``Auditor`` bound to the caller. A caller is known by an
``Authorization: Bearer`` API token (scripts) or by the session cookie (pages); a write
made with the cookie must also carry the session's CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse

from server.auth import tokens
from server.auth.errors import (
    AuthError,
    CsrfRefused,
    Forbidden,
    LoginRedirect,
    NotAuthenticated,
)
from server.domain.audit import AuditEvent
from server.domain.operators import CentreScope, Operator, SessionTimes, session_alive
from server.errors import error_response
from server.runtime import Runtime, get_runtime
from server.store import NotFound

SESSION_COOKIE = "telecentre_session"
CSRF_COOKIE = "telecentre_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOUCH_EVERY_S = 30  # a session's last use is written at most this often, not per request


def clock(runtime: Runtime) -> float:
    return runtime.clock() if getattr(runtime, "clock", None) else time.time()


def address_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def _from_token(runtime: Runtime, secret: str, now: float) -> Operator:
    record = runtime.store.token_by_hash(tokens.digest(secret))
    if record is None or record["revoked_at"] is not None or record["expires_at"] <= now:
        raise NotAuthenticated(
            "jeton invalide, révoqué ou expiré / invalid, revoked or expired token"
        )
    return runtime.store.operator(record["operator_id"])


def _from_session(request: Request, runtime: Runtime, secret: str, now: float) -> Operator:
    settings = runtime.settings
    token_hash = tokens.digest(secret)
    row = runtime.store.session(token_hash)
    alive = row is not None and session_alive(
        SessionTimes(row["created_at"], row["last_seen"]),
        now,
        idle_s=settings.session_idle_minutes * 60,
        absolute_s=settings.session_max_hours * 3600,
    )
    if not alive:
        if row is not None:
            runtime.store.end_session(token_hash)
        raise NotAuthenticated("session expirée, reconnectez-vous / session expired, log in again")
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not tokens.same(sent, row["csrf_hash"]):
            raise CsrfRefused(
                f"jeton CSRF manquant ou faux (en-tête {CSRF_HEADER}) "
                f"/ missing or wrong CSRF token ({CSRF_HEADER} header)"
            )
    if now - row["last_seen"] >= TOUCH_EVERY_S:
        runtime.store.touch_session(token_hash, now)
    request.state.session_hash = token_hash
    return runtime.store.operator(row["operator_id"])


def authenticate(request: Request) -> Operator | None:
    """The operator calling, or None when no credential came; a bad one raises."""
    runtime = get_runtime(request)
    now = clock(runtime)
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        operator = _from_token(runtime, credential.strip(), now)
    elif cookie := request.cookies.get(SESSION_COOKIE):
        operator = _from_session(request, runtime, cookie, now)
    else:
        return None
    if operator.disabled:
        raise NotAuthenticated("compte désactivé / account disabled")
    request.state.operator = operator
    return operator


def current_operator(request: Request) -> Operator:
    operator = authenticate(request)
    if operator is None:
        raise NotAuthenticated("connexion requise / login required")
    return operator


def page_operator(request: Request) -> Operator:
    """For HTML pages: the anonymous (or expired) browser is sent to the login page."""
    try:
        operator = authenticate(request)
    except NotAuthenticated:
        operator = None
    if operator is None:
        raise LoginRedirect(f"/login?next={quote(request.url.path)}")
    return operator


CurrentOperator = Annotated[Operator, Depends(current_operator)]
PageOperator = Annotated[Operator, Depends(page_operator)]


def can_write(operator: CurrentOperator) -> Operator:
    if not operator.can_write:
        raise Forbidden("lecture seule : votre rôle ne permet pas de modifier / read-only role")
    return operator


def admin_only(operator: CurrentOperator) -> Operator:
    if operator.role != "admin":
        raise Forbidden("réservé aux administrateurs / admins only")
    return operator


CanWrite = Annotated[Operator, Depends(can_write)]
AdminOnly = Annotated[Operator, Depends(admin_only)]


def centre_scope(operator: CurrentOperator) -> CentreScope:
    return operator.scope


Scope = Annotated[CentreScope, Depends(centre_scope)]


def require_centre(scope: CentreScope, centre_id: str | None, missing: str) -> None:
    """Raise NotFound(``missing``) for a record of a centre the operator does not see:
    the same answer as for a record that does not exist, so nothing leaks."""
    if not scope.sees(centre_id):
        raise NotFound(missing)


@dataclass
class Auditor:
    """Appends audit entries for the operator making this request."""

    runtime: Runtime
    actor: str
    address: str | None

    def record(
        self,
        action: str,
        target_kind: str,
        target_id: object,
        *,
        centre: str | None = None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> None:
        self.runtime.store.audit(
            AuditEvent(
                self.actor,
                action,
                target_kind,
                None if target_id is None else str(target_id),
                clock(self.runtime),
                centre_id=centre,
                address=self.address,
                before=before,
                after=after,
            )
        )


def auditor(request: Request, operator: CurrentOperator) -> Auditor:
    return Auditor(get_runtime(request), operator.login, address_of(request))


AuditDep = Annotated[Auditor, Depends(auditor)]


def install(app: FastAPI) -> None:
    """Answer refusals in the one error shape, with their headers (Retry-After, …)."""

    @app.exception_handler(AuthError)
    async def _refused(request: Request, exc: AuthError) -> JSONResponse | RedirectResponse:
        if isinstance(exc, LoginRedirect):
            return RedirectResponse(exc.headers["Location"], status_code=303)
        response = error_response(exc.status, str(exc))
        response.headers.update(exc.headers)
        return response
