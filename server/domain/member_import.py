"""Members from a CSV file (``telecentre-server member import``): the columns, how each
value is read, and every error found, by row and field. Pure: text in, rows or errors out.

The file has a header row naming its columns, in any order: ``name`` (required),
``email``, ``valid_from``, ``valid_until``, ``centres``, ``badge_uid``. Commas or
semicolons separate the fields (what a French spreadsheet writes). Dates are
``YYYY-MM-DD`` or ``DD/MM/YYYY`` in the centres' local time, both days included; centres
are ids separated by spaces, ``;``, ``,`` or ``|`` (empty: every centre); a badge UID is
hexadecimal as printed on the card. Row numbers are the spreadsheet's: the header is row 1.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from email_validator import EmailNotValidError, validate_email

from protocol.badges import parse_uid

COLUMNS = ("name", "email", "valid_from", "valid_until", "centres", "badge_uid")
REQUIRED = ("name",)
MAX_NAME = 200
MAX_EMAIL = 320
_CENTRE_SEPARATORS = re.compile(r"[\s;,|]+")


@dataclass(frozen=True)
class RowError:
    row: int  # 1 is the header
    field: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, {self.field}: {self.message}"


@dataclass(frozen=True)
class MemberRow:
    row: int
    name: str
    email: str | None
    valid_from: float | None
    valid_until: float | None
    centres: list[str] | None
    uid: bytes | None

    def fields(self) -> dict[str, object]:
        """The member's fields as the store takes them."""
        return {
            "name": self.name,
            "email": self.email,
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
            "centres": self.centres,
        }


def parse_date(text: str) -> date:
    """``YYYY-MM-DD`` or ``DD/MM/YYYY``."""
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date (YYYY-MM-DD or DD/MM/YYYY)")


def day_start(d: date, tz: ZoneInfo) -> float:
    """Local midnight starting ``d``: a validity from that day."""
    return datetime.combine(d, time(), tz).timestamp()


def day_end(d: date, tz: ZoneInfo) -> float:
    """Local midnight ending ``d``: a validity until that day included."""
    return day_start(d + timedelta(days=1), tz)


def parse_email(text: str) -> str:
    if len(text) > MAX_EMAIL:
        raise ValueError(f"longer than {MAX_EMAIL} characters")
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{text!r} is not an e-mail address ({exc})") from None


def parse_centres(text: str, known: set[str]) -> list[str] | None:
    ids = [c for c in _CENTRE_SEPARATORS.split(text.strip()) if c]
    if not ids:
        return None
    unknown = [c for c in ids if c not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none yet"
        raise ValueError(f"unknown centre {unknown[0]!r} (known: {listed})")
    return sorted(set(ids))


def records(text: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(the header, then each non-blank row with its spreadsheet row number)."""
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, [])

    def rows() -> Iterator[tuple[int, list[str]]]:
        for number, values in enumerate(reader, start=2):
            if any(v.strip() for v in values):
                yield number, values

    return [h.strip().lower() for h in header], rows()


def check_header(header: list[str]) -> list[RowError]:
    errors = []
    if not header or header == [""]:
        return [RowError(1, "header", f"empty file: the first row names the columns {COLUMNS}")]
    for name in header:
        if name not in COLUMNS:
            errors.append(
                RowError(1, name or "(empty)", f"unknown column; the columns are {COLUMNS}")
            )
    for name in {h for h in header if header.count(h) > 1}:
        errors.append(RowError(1, name, "column given twice"))
    for name in REQUIRED:
        if name not in header:
            errors.append(RowError(1, name, "required column missing"))
    return errors


def parse(
    text: str,
    *,
    known_centres: set[str],
    tz: ZoneInfo,
    progress: Callable[[Iterable[tuple[int, list[str]]]], Iterable[tuple[int, list[str]]]] = (
        lambda rows: rows
    ),
) -> tuple[list[MemberRow], list[RowError]]:
    """Every row of the file, or every error in it (rows, fields); ``progress`` wraps the
    rows as they are read (a progress bar)."""
    header, rows = records(text)
    errors = check_header(header)
    if errors:
        return [], errors
    members: list[MemberRow] = []
    first_row_of_uid: dict[bytes, int] = {}
    for number, values in progress(rows):
        if len(values) != len(header):
            errors.append(
                RowError(number, "row", f"{len(values)} fields, the header has {len(header)}")
            )
            continue
        cells = {k: v.strip() for k, v in zip(header, values, strict=True)}
        row_errors: list[RowError] = []
        read = _Reader(cells, number, row_errors)
        name = cells["name"]
        if not name:
            row_errors.append(RowError(number, "name", "required"))
        elif len(name) > MAX_NAME:
            row_errors.append(RowError(number, "name", f"longer than {MAX_NAME} characters"))
        email = read("email", parse_email)
        start = read("valid_from", parse_date)
        end = read("valid_until", parse_date)
        if isinstance(start, date) and isinstance(end, date) and end < start:
            row_errors.append(RowError(number, "valid_until", "before valid_from"))
        centres = read("centres", partial(parse_centres, known=known_centres))
        uid = read("badge_uid", parse_uid)
        if isinstance(uid, bytes):
            if uid in first_row_of_uid:
                row_errors.append(
                    RowError(number, "badge_uid", f"the same card as row {first_row_of_uid[uid]}")
                )
            first_row_of_uid.setdefault(uid, number)
        if row_errors:
            errors += row_errors
            continue
        members.append(
            MemberRow(
                row=number,
                name=name,
                email=email,  # type: ignore[arg-type]
                valid_from=day_start(start, tz) if isinstance(start, date) else None,
                valid_until=day_end(end, tz) if isinstance(end, date) else None,
                centres=centres,  # type: ignore[arg-type]
                uid=uid,  # type: ignore[arg-type]
            )
        )
    return members, errors


@dataclass
class _Reader:
    """Reads one row's cells; a bad value is an error of that row and field."""

    cells: dict[str, str]
    row: int
    errors: list[RowError]

    def __call__(self, field: str, parser: Callable[[str], object]) -> object:
        raw = self.cells.get(field, "")
        if not raw:
            return None
        try:
            return parser(raw)
        except ValueError as exc:
            self.errors.append(RowError(self.row, field, str(exc)))
            return None
