"""The FastAPI application factory: nothing is created at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from server import __version__, errors
from server.routes import centres, events, members
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
    )
    errors.install(app)
    for module in (centres, members, events):
        app.include_router(module.router)

    page = files("server").joinpath("web/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    return app
