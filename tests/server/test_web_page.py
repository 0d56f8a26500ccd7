"""Static checks of the live occupancy page (no server, no browser needed)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib.resources import files

import pytest

VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}
IMPORTANT = {
    "html",
    "head",
    "body",
    "header",
    "main",
    "section",
    "script",
    "style",
    "div",
    "ul",
    "h1",
    "h2",
    "title",
}


class TagChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.attrs.extend((tag, name, value) for name, value in attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.attrs.extend((tag, name, value) for name, value in attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if tag not in self.stack:
            self.errors.append(f"stray </{tag}>")
            return
        while self.stack:
            top = self.stack.pop()
            if top == tag:
                break
            if top in IMPORTANT:
                self.errors.append(f"<{top}> closed implicitly by </{tag}>")


@pytest.fixture(scope="module")
def html() -> str:
    return files("server").joinpath("web/index.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def script() -> str:
    return files("server").joinpath("web/static/app.js").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def style() -> str:
    return files("server").joinpath("web/static/app.css").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(html: str, script: str, style: str) -> str:
    """The page as the browser gets it: the HTML, its script and its style sheet."""
    return "\n".join([html, script, style])


@pytest.fixture(scope="module")
def parsed(html: str) -> TagChecker:
    checker = TagChecker()
    checker.feed(html)
    checker.close()
    return checker


def test_page_is_well_formed(parsed: TagChecker) -> None:
    assert parsed.errors == []
    leftover = [tag for tag in parsed.stack if tag in IMPORTANT]
    assert leftover == []
    for tag in ("html", "head", "body", "header", "main", "title"):
        assert parsed.tags.get(tag) == 1, tag
    assert ("script", "src", "/static/app.js") in parsed.attrs
    assert ("link", "href", "/static/app.css") in parsed.attrs


def test_page_has_no_inline_script_or_style(html: str, parsed: TagChecker) -> None:
    """The CSP (script-src 'self', style-src 'self') would block them."""
    assert parsed.tags.get("style", 0) == 0
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/static/app.js"></script>'[:-9]]
    assert "</script>" in html and re.search(r"<script[^>]*>\s*</script>", html)
    for tag, name, _value in parsed.attrs:
        assert name != "style" and not name.startswith("on"), (tag, name)


def test_page_is_french(page: str, parsed: TagChecker) -> None:
    assert ("html", "lang", "fr") in parsed.attrs
    assert 'lang="fr"' in page
    assert "Télécentres de l'Orne — occupation en direct" in page
    assert "connexion perdue — reconnexion…" in page
    assert "unité hors ligne : état des salles inconnu" in page
    assert "Derniers passages" in page
    assert "(différé)" in page


def test_page_uses_the_api(page: str) -> None:
    assert "/api/occupancy/stream" in page
    assert re.search(r"""["']/api/occupancy["']""", page)
    assert "/api/events" in page
    assert "EventSource" in page


def test_page_loads_nothing_external(page: str, parsed: TagChecker) -> None:
    for tag, name, value in parsed.attrs:
        if name in ("src", "href", "action", "srcset", "data"):
            assert not re.match(r"\s*(https?:)?//", value or "", re.I), (tag, name, value)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?\s*(https?:)?//", page, re.I)
    assert not re.search(r"""fetch\(\s*["'`](https?:)?//""", page, re.I)


def test_page_never_injects_markup(page: str) -> None:
    for match in re.finditer(r"(innerHTML|outerHTML)\s*(\+?=)\s*([^;\n]*)", page):
        assert match.group(2) == "=" and match.group(3).strip() in ('""', "''"), match.group(0)
    assert "insertAdjacentHTML" not in page
    assert "document.write" not in page
    assert "textContent" in page
