"""Static checks of the pages' templates, translations and shipped assets (no browser)."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path

import pytest
from jinja2 import Environment, nodes

from protocol.messages import DENY_REASONS
from server.web import describe, i18n
from server.web.render import NAV, environment

WEB = Path(str(files("server").joinpath("web")))
TEMPLATES = sorted((WEB / "templates").glob("*.html"))
SOURCES = [*sorted((WEB.parent / "routes" / "pages").glob("*.py")), *sorted(WEB.glob("*.py"))]


def french_texts() -> set[str]:
    """Every literal the pages pass to ``_()``, and the words looked up in tables."""
    found: set[str] = set()
    env = Environment()
    for path in TEMPLATES:
        tree = env.parse(path.read_text("utf-8"))
        for call in tree.find_all(nodes.Call):
            named = isinstance(call.node, nodes.Name) and call.node.name == "_"
            if named and call.args and isinstance(call.args[0], nodes.Const):
                found.add(call.args[0].value)
        for pair in tree.find_all(nodes.Pair):  # the words of {"online": "en ligne", …}
            if isinstance(pair.value, nodes.Const) and isinstance(pair.value.value, str):
                found.add(pair.value.value)
    for path in SOURCES:
        found.update(re.findall(r"""\b_\(\s*"([^"]+)"[,)]""", path.read_text("utf-8")))
    found.update(item.label for item in NAV)
    for table in (describe.REASONS, describe.KINDS, describe.ROOM_STATES, describe.ALARMS):
        found.update(table.values())
    return found


def test_there_are_templates_and_each_compiles() -> None:
    assert {"base.html", "login.html", "live.html"} <= {p.name for p in TEMPLATES}
    for path in TEMPLATES:
        environment().get_template(path.name)


def test_every_french_text_has_an_english_translation() -> None:
    english = i18n.catalog("en")
    missing = sorted(text for text in french_texts() if text not in english)
    assert missing == [], "add these to server/web/locales/en/<page>.json"


def test_translations_keep_their_placeholders() -> None:
    for french, english in i18n.catalog("en").items():
        assert set(re.findall(r"{\w*}", french)) == set(re.findall(r"{\w*}", english)), french


def test_a_broken_catalog_is_refused_naming_the_file() -> None:
    with pytest.raises(i18n.CatalogError, match="en/x.json: not JSON"):
        i18n.parse_catalog("en/x.json", "{nope")
    with pytest.raises(i18n.CatalogError, match="JSON object"):
        i18n.parse_catalog("en/x.json", json.dumps({"a": 1}))


def test_an_untranslated_text_stays_french_and_unknown_languages_are_french() -> None:
    assert i18n.translator("en")("Texte jamais traduit") == "Texte jamais traduit"
    assert i18n.translator("en")("Membre n°{n}", n=4) == "Member #4"
    assert i18n.translator("xx")("Membre n°{n}", n=4) == "Membre n°4"
    assert i18n.language("de") == "fr" and i18n.language("en") == "en"


def test_templates_have_no_inline_script_style_or_handler() -> None:
    """The CSP (script-src 'self', style-src 'self') would block them."""
    for path in TEMPLATES:
        text = path.read_text("utf-8")
        assert "<style" not in text, path.name
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path.name
        assert not re.search(r"\s(on[a-z]+|style|hx-on[:\w-]*)\s*=", text), path.name


def test_pages_load_nothing_from_elsewhere() -> None:
    for path in [*TEMPLATES, *(WEB / "static").glob("*.*")]:
        text = path.read_text("utf-8")
        assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", text), path
        assert not re.search(r"@import|url\(\s*['\"]?\s*(https?:)?//", text), path


def test_every_vendored_script_ships_with_its_licence() -> None:
    vendor = WEB / "static" / "vendor"
    scripts = sorted(p.name for p in vendor.glob("*.js"))
    assert "htmx.min.js" in scripts
    for name in scripts:
        stem = name.removesuffix(".js").removesuffix(".min")
        licence = vendor / f"{stem}.LICENSE"
        assert licence.exists() and "Permission" in licence.read_text("utf-8"), name


def test_every_refusal_reason_is_in_words() -> None:
    assert set(DENY_REASONS) <= describe.REASONS.keys()


def luminance(hex_colour: str) -> float:
    value = hex_colour.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    channels = [int(value[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_text_colours_meet_wcag_aa_contrast() -> None:
    """Every text colour of the style sheet on the backgrounds it is used on: 4.5:1."""
    css = (WEB / "static" / "app.css").read_text("utf-8")
    colours = dict(re.findall(r"--([a-z]+):\s*(#[0-9a-fA-F]{3,6})", css))
    white = "#ffffff"
    pairs = [
        (colours[text], colours[ground])
        for text in ("ink", "muted", "brand", "ok", "warn", "bad")
        for ground in ("paper", "band")
    ]
    pairs += [(white, colours["brand"]), (white, colours["bad"])]
    # Room chips: their text on their own tint.
    pairs += [(colours["bad"], "#fdecec"), (colours["ok"], "#e9f6ec")]
    pairs += [(colours["ink"], "#fdf0d5")]  # the warning banner
    low = [(a, b, round(contrast(a, b), 2)) for a, b in pairs if contrast(a, b) < 4.5]
    assert low == []


def test_a_unit_is_unknown_while_the_broker_is_lost_and_degraded_when_faulty() -> None:
    from server.web.live import centre_state, unit_state

    online = {"state": "online", "faults": [], "open_alarms": []}
    assert unit_state(online, True) == "online"
    assert unit_state(online, False) == "unknown"
    assert unit_state({**online, "faults": ["entree: reader: no answer"]}, True) == "degraded"
    assert unit_state({**online, "open_alarms": ["clock_unsynced"]}, True) == "degraded"
    assert unit_state({**online, "open_alarms": ["door_forced"]}, True) == "online"
    # From its heartbeat: degraded with the reasons, or silent (shown offline).
    assert unit_state({**online, "condition": "degraded"}, True) == "degraded"
    assert unit_state({**online, "condition": "ok"}, True) == "online"
    assert unit_state({**online, "open_alarms": ["unit_silent"]}, True) == "offline"
    assert unit_state({"state": "offline"}, True) == "offline"
    assert unit_state({"state": None}, True) == "unknown"
    assert centre_state([{"state": "online"}, {"state": "unknown"}]) == "online"
    assert centre_state([{"state": "online"}, {"state": "offline"}]) == "offline"
    assert centre_state([]) == "unknown"
