"""GET /: the one-page dashboard, shipped with the package."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from server.auth.deps import PageOperator

router = APIRouter()


@cache
def _page() -> str:
    # Read once, on first use rather than at import: nothing is done at import time.
    return files("server").joinpath("web/index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(_: PageOperator) -> str:
    """The live page, for operators logged in (others are sent to /login)."""
    return _page()
