"""Every API error has one JSON shape: {"ok": false, "error": "...", "status": n}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from server.http import security_headers
from server.store import Conflict, NotFound

log = logging.getLogger(__name__)


def error_response(status: int, message: str, **extra: object) -> JSONResponse:
    """The one error shape; ``extra`` keys (a command id, say) may come after it."""
    body = {"ok": False, "error": message, "status": status, **extra}
    return JSONResponse(body, status_code=status)


def _location(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "request"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response(422, details)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(NotFound)
    async def _missing(request: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, str(exc))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        response = error_response(500, "internal error; the server log has the details")
        # Starlette answers a crash outside every middleware: the headers are added here.
        response.headers.update(security_headers())
        return response

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return error_response(409, str(exc))
