"""Logging in and out, the password, personal API tokens, who am I (the JSON API; the
login page is ``server.routes.pages.session``)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from server.auth import service
from server.auth.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    AuditDep,
    CurrentOperator,
    address_of,
    clock,
)
from server.routes import models
from server.routes.params import TokenId
from server.runtime import RuntimeDep
from server.store import NotFound

router = APIRouter(tags=["operators and sessions"])


class LoginBody(BaseModel):
    login: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024)


class PasswordChange(BaseModel):
    current: str = Field(min_length=1, max_length=1024)
    new: str = Field(min_length=1, max_length=1024)


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["export nocturne"])
    days: int = Field(default=90, ge=1, le=3650, description="Validity in days.")


def set_session_cookies(
    response: Response, request: Request, opened: service.NewSession, max_age_s: int
) -> None:
    """The session (HttpOnly) and its CSRF token (readable by the page's script), both
    SameSite=Strict, Secure over HTTPS: for the JSON login and the login page alike."""
    secure = request.url.scheme == "https"
    for name, value, httponly in (
        (SESSION_COOKIE, opened.session_token, True),
        (CSRF_COOKIE, opened.csrf_token, False),
    ):
        response.set_cookie(
            name,
            value,
            max_age=max_age_s,
            httponly=httponly,
            secure=secure,
            samesite="strict",
            path="/",
        )


def clear_session_cookies(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


@router.post(
    "/api/login",
    response_model=models.LoginResult,
    responses={401: {}, 429: {}},
)
def login(body: LoginBody, request: Request, response: Response, runtime: RuntimeDep) -> dict:
    """Open a session: an HttpOnly cookie, and the CSRF token every write must send back
    in ``X-CSRF-Token`` (also in a cookie the page's script can read)."""
    opened = service.login(
        runtime.store,
        runtime.settings,
        body.login,
        body.password,
        address_of(request),
        clock(runtime),
    )
    set_session_cookies(response, request, opened, int(runtime.settings.session_max_hours * 3600))
    return {"ok": True, "operator": opened.operator.public(), "csrf_token": opened.csrf_token}


@router.post("/api/logout", response_model=models.Ok)
def logout(
    request: Request,
    response: Response,
    operator: CurrentOperator,
    audit: AuditDep,
    runtime: RuntimeDep,
) -> dict:
    session_hash = getattr(request.state, "session_hash", None)
    if session_hash:
        runtime.store.end_session(session_hash)
    clear_session_cookies(response)
    audit.record("logout", "operator", operator.login)
    return {"ok": True}


@router.post("/api/password", response_model=models.Ok, responses={429: {}})
def change_password(
    body: PasswordChange, request: Request, operator: CurrentOperator, runtime: RuntimeDep
) -> dict:
    """Change one's own password; every other session of the account ends."""
    try:
        service.change_password(
            runtime.store,
            operator,
            body.current,
            body.new,
            address=address_of(request),
            now=clock(runtime),
            keep_session=getattr(request.state, "session_hash", None),
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"ok": True}


@router.get("/api/me", response_model=models.OperatorPublic)
def me(operator: CurrentOperator) -> dict:
    return operator.public()


@router.get("/api/tokens", response_model=list[models.TokenPublic])
def list_tokens(operator: CurrentOperator, runtime: RuntimeDep) -> list[dict]:
    """The caller's own API tokens (never the tokens themselves)."""
    return runtime.store.tokens(operator.id)


@router.post("/api/tokens", status_code=201, response_model=models.TokenPublic)
def create_token(
    body: TokenCreate, request: Request, operator: CurrentOperator, runtime: RuntimeDep
) -> dict:
    """A personal API token for ``Authorization: Bearer``: shown in this answer only."""
    try:
        token, record = service.create_token(
            runtime.store,
            runtime.settings,
            operator,
            name=body.name,
            days=body.days,
            actor=operator.login,
            address=address_of(request),
            now=clock(runtime),
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return {**record, "token": token}


@router.delete("/api/tokens/{token_id}", response_model=models.TokenPublic)
def revoke_token(
    token_id: TokenId, request: Request, operator: CurrentOperator, runtime: RuntimeDep
) -> dict:
    """Revoke one of one's tokens (an admin may revoke anyone's)."""
    record = runtime.store.token(token_id)
    if record["operator_id"] != operator.id and operator.role != "admin":
        raise NotFound(f"no token {token_id}")
    return service.revoke_token(
        runtime.store,
        token_id,
        actor=operator.login,
        address=address_of(request),
        now=clock(runtime),
    )
