"""Reading a page's filter form: every field is text from the browser, checked here, and a
bad one becomes a message on the page naming the field (never a crash, never a blank)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from server.web.render import TIMEZONE

IDENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass
class Form:
    """The raw values (to fill the form again) and the errors found."""

    raw: dict[str, str]
    errors: list[str] = field(default_factory=list)

    def text(self, name: str, *, max_length: int = 100) -> str | None:
        value = (self.raw.get(name) or "").strip()
        if not value:
            return None
        if len(value) > max_length:
            self.errors.append(f"{name}: {max_length} max")
            return None
        return value

    def ident(self, name: str, label: str) -> str | None:
        value = self.text(name)
        if value is not None and not IDENT.match(value):
            self.errors.append(label)
            return None
        return value

    def choice(self, name: str, choices: object, label: str) -> str | None:
        value = self.text(name)
        if value is not None and value not in choices:  # type: ignore[operator]
            self.errors.append(label)
            return None
        return value

    def day(self, name: str, label: str) -> date | None:
        value = self.text(name, max_length=10)
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.errors.append(label)
            return None


def page_number(text: str | None) -> int:
    """The page asked for (``?page=``): 1 for anything but a whole number from 1 up."""
    value = (text or "").strip()
    return int(value) if value.isdigit() and 0 < int(value) < 10**6 else 1


def day_start(day: date) -> float:
    """The first second of a local day (the centres' time zone)."""
    return datetime.combine(day, time(0), TIMEZONE).timestamp()


def day_range(first: date | None, last: date | None) -> tuple[float | None, float | None]:
    """From the start of ``first`` to the end of ``last`` (both inclusive)."""
    return (
        day_start(first) if first else None,
        day_start(last + timedelta(days=1)) if last else None,
    )
