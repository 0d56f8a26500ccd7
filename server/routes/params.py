"""Bounded parameter types shared by the routes: no value reaches the store unchecked.

Ids fit SQLite's signed 64-bit integer (2^63 is a 422, not a 500), pages are bounded,
centre and unit ids follow protocol.topics, times are finite and ordered.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from fastapi import HTTPException, Path, Query
from pydantic import AfterValidator, Field

from protocol import topics

MAX_ID = 2**63 - 1
MAX_LIMIT = 1000
MAX_OFFSET = 10**9
# Epoch seconds a date can have (up to the end of year 9999): finite and storable.
MAX_EPOCH = 253_402_300_799.0
IDENT = rf"^{topics.CENTRE_ID_PATTERN.pattern}$"
DEVICE = rf"^{topics.DEVICE_ID_PATTERN.pattern}$"
COMMAND = r"^[A-Za-z0-9-]{1,64}$"

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items skipped.")]

MemberId = Annotated[int, Path(ge=1, le=MAX_ID)]
BadgeId = Annotated[int, Path(ge=1, le=MAX_ID)]
TokenId = Annotated[int, Path(ge=1, le=MAX_ID)]
CentreIdPath = Annotated[str, Path(pattern=IDENT, examples=["boitron"])]
DeviceIdPath = Annotated[str, Path(pattern=DEVICE, examples=["boitron-01"])]
CommandIdPath = Annotated[str, Path(pattern=COMMAND)]
CentreFilter = Annotated[str | None, Query(pattern=IDENT, description="Only this centre.")]

# In bodies: a centre id, and epoch seconds that are finite and within years 1970..9999.
CentreId = Annotated[str, Field(pattern=IDENT, examples=["boitron"])]
EpochSeconds = Annotated[float, Field(ge=0, le=MAX_EPOCH, allow_inf_nan=False)]


def _finite_date(value: datetime) -> datetime:
    try:
        stamp = value.timestamp()
    except (OverflowError, OSError, ValueError):
        raise ValueError("date out of range") from None
    if not math.isfinite(stamp):
        raise ValueError("date out of range")
    return value


Since = Annotated[
    datetime | None,
    Query(description="ISO 8601, inclusive; a date without zone is the server's local time"),
    AfterValidator(lambda v: v if v is None else _finite_date(v)),
]
Until = Annotated[
    datetime | None,
    Query(description="ISO 8601, exclusive; not before since"),
    AfterValidator(lambda v: v if v is None else _finite_date(v)),
]


def time_range(since: datetime | None, until: datetime | None) -> tuple[float | None, float | None]:
    """Epoch seconds of both ends; 422 when until comes before since."""
    start = since.timestamp() if since else None
    end = until.timestamp() if until else None
    if start is not None and end is not None and end < start:
        raise HTTPException(422, "until: must not be before since")
    return start, end


def page(items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    """The paging envelope over a list the store returned whole (a short list: centres)."""
    return {
        "total": len(items),
        "limit": limit,
        "offset": offset,
        "items": items[offset : offset + limit],
    }


def known_centres(store: Any, centre_ids: list[str] | None) -> None:
    """422 naming the first centre the store does not know (a body referred to it)."""
    if not centre_ids:
        return
    known = {c["id"] for c in store.centres()}
    for centre_id in centre_ids:
        if centre_id not in known:
            raise HTTPException(422, f"centres: unknown centre {centre_id!r}")


def check_validity(valid_from: float | None, valid_until: float | None) -> None:
    """A member's validity window: its end must not come before its start."""
    if valid_from is not None and valid_until is not None and valid_until < valid_from:
        raise ValueError("valid_until must not be before valid_from")
