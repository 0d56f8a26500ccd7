"""Every page of the menu that the app serves: it loads for the admin without a script
error, every field has a label and every button a name, the first Tab reaches the skip
link, and its screenshot is saved (the live page's and the report page's for the README)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from server.web.render import NAV
from tests.web.conftest import LiveServer, screenshot

FOR_README = {"/", "/reports"}

UNLABELLED = """() => Array.from(document.querySelectorAll(
    "input:not([type=hidden]), select, textarea")).filter(el =>
    !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
    && !el.getAttribute("aria-labelledby")).map(el => el.outerHTML)"""
NAMELESS = """() => Array.from(document.querySelectorAll("button, a[href]")).filter(el =>
    !el.textContent.trim() && !el.getAttribute("aria-label")
    && !el.getAttribute("aria-labelledby")).map(el => el.outerHTML)"""


def served_pages(live_server: LiveServer) -> list[str]:
    """The menu's pages this app has (each page module brings its own)."""
    return [item.path for item in NAV if live_server.api.get(item.path).status_code != 404]


def test_every_page_loads_is_labelled_and_is_photographed(
    new_page: Callable[..., Any], live_server: LiveServer
) -> None:
    pages = served_pages(live_server)
    assert {"/", "/events", "/fleet", "/journal"} <= set(pages)
    page = new_page("admin")
    for path in pages:
        answer = page.goto(path)
        assert answer is not None and answer.status == 200, path
        expect(page.locator("main h1")).to_be_visible()
        expect(page.locator(f"header nav a[href='{path}']")).to_have_attribute(
            "aria-current", "page"
        )
        assert page.evaluate(UNLABELLED) == [], path
        assert page.evaluate(NAMELESS) == [], path
        page.keyboard.press("Tab")
        expect(page.locator("a.skip")).to_be_focused()
        name = "page-" + (path.strip("/") or "live")
        screenshot(page, name)
        if path in FOR_README:
            screenshot(page, path.strip("/") or "live", readme=True)
    assert page.script_errors == []
