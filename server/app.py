"""The FastAPI application factory: nothing is created at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from server import __version__, errors, http, openapi
from server.auth import deps as auth
from server.routes import (
    alarms,
    audit,
    calendar,
    centres,
    events,
    fleet,
    health,
    members,
    metrics,
    pages,
    plans,
    reports,
    visits,
)
from server.routes import auth as auth_routes
from server.routes import privacy as privacy_routes
from server.runtime import Runtime
from server.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.start(settings)
        app.state.runtime = runtime
        try:
            yield
        finally:
            runtime.stop()

    app = FastAPI(
        title="Telecentre",
        version=__version__,
        description="Accès et occupation des télécentres de l'Orne.",
        lifespan=lifespan,
        docs_url=None,  # server.openapi serves /docs from the package
        redoc_url=None,
        openapi_url=None,  # server.openapi serves it behind the login
    )
    errors.install(app)
    http.install(app, allowed_hosts=settings.allowed_hosts, max_body_bytes=settings.max_body_bytes)
    openapi.install(app)
    auth.install(app)  # 401/403/429 refusals, with their headers
    for module in (centres, members, events, health, auth_routes, audit):
        app.include_router(module.router)
    for module in (calendar, plans, visits, reports):
        app.include_router(module.router)
    for module in (fleet, alarms, metrics):
        app.include_router(module.router)
    app.include_router(privacy_routes.router)  # a member's export and erasure
    pages.install(app)  # the operators' HTML pages (server/routes/pages/)
    return app
