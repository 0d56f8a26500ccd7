"""The OpenAPI schema and the pages that read it, all served from the package.

- Every error answer has one shape (server.errors); the schema says so: an ``Error``
  component referenced by every non-2xx response of every operation, for each status the
  operation can give (``STATUSES`` and the route's own ``responses=``). FastAPI's default
  422 body (``HTTPValidationError``) is never sent, so it is replaced.
- ``/docs`` is Swagger UI shipped in ``server/web/static/swagger`` (licence beside it), its
  start-up code a file (``static/docs.js``): it works offline and under the CSP.
- ``/docs`` and ``/openapi.json`` need a login like every other route (the anonymous
  browser is sent to the login page; a script gets 401). The app is built with
  ``openapi_url=None`` and the schema route is declared here, behind the login.
- ``/static`` serves the pages' script, style sheet and the Swagger assets.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from server.auth.deps import CurrentOperator, PageOperator

ERROR = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "title": ERROR,
    "type": "object",
    "description": (
        "Every error: ok is false, error says what went wrong (naming the field when one is "
        "at fault), status repeats the HTTP status. A few add keys after these (an unlock "
        "refused or unanswered adds command_id)."
    ),
    "properties": {
        "ok": {"type": "boolean", "enum": [False]},
        "error": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
    },
    "required": ["ok", "error", "status"],
    "additionalProperties": True,
}
STATUSES: dict[int, str] = {
    400: "Bad request: an unknown Host header or a malformed Content-Length",
    401: "Not logged in",
    403: "Not allowed for this operator",
    404: "Not found (or not visible to this operator)",
    409: "Conflict with the current state",
    413: "Request body too large",
    422: "Invalid parameter or body; the message names the field",
    429: "Too many attempts; try again later",
    500: "Internal error; the server log has the details",
    503: "Unit or broker unavailable",
    504: "The unit did not answer in time",
}
WRITE_METHODS = {"post", "put", "patch", "delete"}


def statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses an operation can answer with, besides those it declares."""
    found = {400, 500}
    if path.startswith("/api/"):
        found |= {401, 403}  # every /api route needs a login (issue 6)
    if operation.get("parameters") or "requestBody" in operation:
        found.add(422)
    if "{" in path:
        found.add(404)
    if "requestBody" in operation or method in WRITE_METHODS:
        found |= {413, 422}
    if method in WRITE_METHODS:
        found.add(409)
    return found


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Point every error response of ``schema`` at the Error component (in place)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components[ERROR] = ERROR_SCHEMA
    ref = {"$ref": f"#/components/schemas/{ERROR}"}
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            declared = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
            for code in sorted(declared | statuses(path, method, operation)):
                entry = responses.setdefault(str(code), {})
                if not entry.get("description"):
                    entry["description"] = STATUSES.get(code, "Error")
                entry["content"] = {"application/json": {"schema": ref}}
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in components and unused not in str(schema["paths"]):
            del components[unused]
    return schema


@cache
def _docs_page() -> str:
    return files("server").joinpath("web/docs.html").read_text(encoding="utf-8")


def install(app: FastAPI) -> None:
    """The error schema hook, /docs and /static. Build the app with docs_url=None."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            app.openapi_schema = document_errors(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount("/static", StaticFiles(packages=[("server", "web/static")]), name="static")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json(operator: CurrentOperator) -> JSONResponse:
        """The API's description, for logged-in operators and their scripts."""
        return JSONResponse(app.openapi())

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs(operator: PageOperator) -> str:
        """Swagger UI from the package: no CDN, no inline script."""
        return _docs_page()
