"""What the pages' forms send, checked by the API's own models, and refusals in words.

A form's fields are strings; ``validate`` turns them into the body model the API route
takes (the same rules, the same limits), and a refusal into one message per field in the
page's language. ``refusal`` says why the API refused an action, in that language too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError

from server.auth.errors import AuthError, Forbidden
from server.domain.operators import Operator
from server.store import Conflict, NotFound
from server.web.i18n import Translate
from server.web.render import TIMEZONE, in_language

M = TypeVar("M", bound=BaseModel)

# Pydantic's error kinds a person can act on, in French (the page's ``_`` translates).
MESSAGES = {
    "missing": "obligatoire",
    "string_too_short": "obligatoire",
    "string_too_long": "trop long",
    "string_pattern_mismatch": "format non reconnu",
    "int_parsing": "nombre entier attendu",
    "float_parsing": "nombre attendu",
    "greater_than_equal": "trop petit",
    "less_than_equal": "trop grand",
    "greater_than": "trop petit",
    "date_from_datetime_parsing": "date attendue (AAAA-MM-JJ)",
    "date_parsing": "date attendue (AAAA-MM-JJ)",
}


# Form fields by the name a person reads in a message (French; the page's ``_`` translates).
FIELD_LABELS = {
    "name": "nom",
    "email": "e-mail",
    "valid_from": "début de validité",
    "valid_until": "fin de validité",
    "centres": "centres",
    "commute_insee": "commune de travail",
    "reason": "motif",
    "plan_id": "formule",
    "enrol_uid": "carte",
    "replace_uid": "carte",
    "uid": "carte",
    "confirm": "confirmation",
    "form": "formulaire",
}


class FormError(ValueError):
    """A form that cannot become a request: ``fields`` maps a field to what is wrong."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = dict(fields)


async def fields_of(request: Request) -> dict[str, Any]:
    """The submitted fields: a field sent several times (checkboxes) as a list."""
    form = await request.form()
    out: dict[str, Any] = {}
    for key in form:
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        out[key] = values if len(values) > 1 else (values[0] if values else "")
    return out


def text(value: Any) -> str | None:
    """A text field: stripped, None when left empty."""
    if isinstance(value, list):
        value = value[0] if value else ""
    value = (value or "").strip()
    return value or None


def as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return [v for v in (value if isinstance(value, list) else [value]) if v]


def day_start(value: Any, field: str) -> float | None:
    """A date field (YYYY-MM-DD) as the epoch seconds of that local midnight."""
    return _epoch(value, field, end=False)


def day_end(value: Any, field: str) -> float | None:
    """A date field as the epoch seconds of the end of that local day (the day included)."""
    return _epoch(value, field, end=True)


def _epoch(value: Any, field: str, *, end: bool) -> float | None:
    raw = text(value)
    if raw is None:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise FormError({field: MESSAGES["date_parsing"]}) from None
    if end:
        day += timedelta(days=1)
    try:
        stamp = datetime.combine(day, time(0), TIMEZONE).timestamp()
    except (OverflowError, ValueError):
        raise FormError({field: MESSAGES["date_parsing"]}) from None
    return stamp - 1 if end else stamp


def as_date(ts: float | None) -> str:
    """Epoch seconds as the local date a date field shows ("" for none)."""
    if ts is None:
        return ""
    when = datetime.fromtimestamp(ts, TIMEZONE)
    return when.date().isoformat()


def validate(model: type[M], data: Mapping[str, Any]) -> M:
    """The body model from the form's values; FormError naming each wrong field."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise FormError(field_errors(exc.errors())) from None


def field_errors(errors: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
        field = loc[0] if loc else "form"
        message = MESSAGES.get(error.get("type", ""))
        if message is None:
            message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        found.setdefault(field, message)
    return found


def refusal(exc: Exception, _: Translate, lang: str) -> str:
    """Why the server refused, in the page's language."""
    if isinstance(exc, FormError):
        return "; ".join(f"{_(FIELD_LABELS.get(k, k))} : {_(v)}" for k, v in exc.fields.items())
    if isinstance(exc, HTTPException):
        return in_language(str(exc.detail), lang)
    if isinstance(exc, NotFound):
        return _("introuvable : {what}", what=str(exc).strip("'\""))
    if isinstance(exc, (Conflict, AuthError)):
        return in_language(str(exc), lang)
    raise exc


# What a form's answer shows in the page (the form again, each wrong field named). A
# refusal by role (403) or of something the operator cannot see (404) is not among them:
# it keeps its status, and the pages' script shows its message.
REFUSED = (FormError, HTTPException, Conflict)


def require_write(operator: Operator) -> None:
    if not operator.can_write:
        raise Forbidden("lecture seule : votre rôle ne permet pas de modifier / read-only role")


def require_admin(operator: Operator) -> None:
    if operator.role != "admin":
        raise Forbidden("réservé aux administrateurs / admins only")
