"""French is the source text of every page; English comes from catalogs.

One JSON file per page in ``server/web/locales/<lang>/<page>.json`` maps the French text to
its translation. They are all loaded and merged once, on first use; a French text with no
translation is shown in French (never an error, never an empty string).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from importlib.resources import files
from typing import Any

LANGUAGES = ("fr", "en")
DEFAULT = "fr"
COOKIE = "telecentre_lang"
NAMES = {"fr": "Français", "en": "English"}

Translate = Callable[..., str]


class CatalogError(ValueError):
    """A locale file that is not a JSON object of strings."""


def parse_catalog(name: str, text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{name}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise CatalogError(f"{name}: must be one JSON object of French text -> translation")
    return data


@cache
def catalog(lang: str) -> Mapping[str, str]:
    """Every page's translations into ``lang`` merged (French: empty, it is the source)."""
    merged: dict[str, str] = {}
    if lang == DEFAULT:
        return merged
    folder = files("server").joinpath(f"web/locales/{lang}")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            merged.update(parse_catalog(f"{lang}/{entry.name}", entry.read_text("utf-8")))
    return merged


def translator(lang: str) -> Translate:
    """``_("Membre n°{n}", n=4)``: the text in ``lang``, then formatted."""
    table = catalog(lang if lang in LANGUAGES else DEFAULT)

    def _(text: str, /, **values: Any) -> str:
        found = table.get(text) or text
        return found.format(**values) if values else found

    return _


def language(cookie: str | None) -> str:
    return cookie if cookie in LANGUAGES else DEFAULT
