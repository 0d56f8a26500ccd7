"""Privacy rules (GDPR, CNIL): how long data is kept, the anonymous daily counts that
outlive raw events, and which values of an audit entry are personal. Pure: no I/O.

Retention is counted in whole local days: with ``days = 92``, the events of the 92 days
before today (local time of their centre) and of today are kept, anything older goes. A
centre's day is folded into its daily counts whole, so its unique members are exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.domain.audit import AuditEvent

DEFAULT_TIMEZONE = "Europe/Paris"
RETENTION_ACTOR = "retention"  # the audit actor of the server's own scheduled purge

# Keys whose values in an audit entry about a member identify them (or may: free text).
PERSONAL_KEYS = frozenset(
    {"name", "email", "label", "badge_hash", "uid", "commute_insee", "suspended_reason"}
)
PERSONAL_MARK = "[personal]"  # stored in the audit row in place of a personal value
ERASED_MARK = "[erased]"  # shown in its place once the member is erased


def zone(name: str | None) -> ZoneInfo:
    """A centre's time zone; the default for an unknown or missing one."""
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def check_retention(name: str, days: int) -> int:
    """A retention setting must keep at least one whole day."""
    if days < 1:
        raise ValueError(f"{name}: must be at least 1 day, got {days}")
    return days


def boundary(now: float, days: int, tz: ZoneInfo) -> float:
    """Epoch seconds of the local midnight starting the oldest kept day: anything dated
    before it is past the retention."""
    today = datetime.fromtimestamp(now, tz).date()
    return _midnight(today - timedelta(days=days), tz)


def local_day(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).date().isoformat()


def day_bounds(day: str, tz: ZoneInfo) -> tuple[float, float]:
    """[start, end) of a local day in epoch seconds (23 or 25 hours on a DST change)."""
    d = date.fromisoformat(day)
    return _midnight(d, tz), _midnight(d + timedelta(days=1), tz)


def _midnight(d: date, tz: ZoneInfo) -> float:
    return datetime.combine(d, time(), tz).timestamp()


# -- daily counts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRow:
    """What folding needs of one stored event."""

    ts: float
    received_at: float | None
    time_suspect: bool
    kind: str
    granted: bool | None
    direction: str | None


def event_time(ts: float, received_at: float | None, time_suspect: bool) -> float:
    """The time an event is filed under: its own, or its arrival when its clock was wrong."""
    return received_at if time_suspect and received_at is not None else ts


def is_entry(kind: str, granted: bool | None, direction: str | None) -> bool:
    """A granted access that let someone in (a badge-out is not an entry)."""
    return kind == "access" and bool(granted) and direction != "out"


def is_refusal(kind: str, granted: bool | None) -> bool:
    return kind == "access" and not granted


@dataclass
class DayCounts:
    granted: int = 0
    denied: int = 0


def count_by_day(rows: Iterable[EventRow], tz: ZoneInfo) -> dict[str, DayCounts]:
    """Entries granted and refused per local day (days with other events count zero)."""
    out: dict[str, DayCounts] = {}
    for r in rows:
        counts = out.setdefault(
            local_day(event_time(r.ts, r.received_at, r.time_suspect), tz), DayCounts()
        )
        if is_entry(r.kind, r.granted, r.direction):
            counts.granted += 1
        elif is_refusal(r.kind, r.granted):
            counts.denied += 1
    return out


def first_entry_per_day(
    entries: Iterable[tuple[int, str, float]], zones: Mapping[str, ZoneInfo]
) -> list[int]:
    """Of one member's entries ``(event id, centre, time)``, the id of the first of each
    centre and local day: what keeps them counted once a day after their erasure."""
    first: dict[tuple[str, str], tuple[float, int]] = {}
    for event_id, centre_id, ts in entries:
        key = (centre_id, local_day(ts, zones.get(centre_id) or zone(None)))
        if key not in first or (ts, event_id) < first[key]:
            first[key] = (ts, event_id)
    return sorted(event_id for _, event_id in first.values())


# -- personal values in the audit log ----------------------------------------------------------


def audit_subject(target_kind: str, target_id: str | None, before: Any, after: Any) -> int | None:
    """The member an audit entry is about, if any: its target, or the ``member_id`` it
    names (a badge's entries)."""
    if target_kind == "member" and target_id is not None:
        return int(target_id) if target_id.isdigit() else None
    for values in (after, before):
        member_id = values.get("member_id") if isinstance(values, dict) else None
        if isinstance(member_id, int) and not isinstance(member_id, bool):
            return member_id
    return None


def redact(value: Any, keys: frozenset[str] = PERSONAL_KEYS) -> Any:
    """``value`` with every personal key's value (at any depth) replaced by the mark."""
    if isinstance(value, dict):
        return {
            k: (PERSONAL_MARK if k in keys and v is not None else redact(v, keys))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, keys) for v in value]
    return value


def split_values(
    target_kind: str,
    target_id: str | None,
    before: Any,
    after: Any,
    keys: frozenset[str] = PERSONAL_KEYS,
) -> tuple[Any, Any, int | None]:
    """(before, after) as the append-only log stores them, and the member whose personal
    values were taken out; that member is None when nothing personal was taken out, and
    then both are unchanged. Values of an entry naming no member stay in it (nobody could
    erase them apart)."""
    member_id = audit_subject(target_kind, target_id, before, after)
    if member_id is None:
        return before, after, None
    public_before, public_after = redact(before, keys), redact(after, keys)
    if public_before == before and public_after == after:
        return before, after, None
    return public_before, public_after, member_id


def split_personal(event: AuditEvent) -> tuple[AuditEvent, int | None]:
    """``split_values`` on an entry: (the entry to store, the member it is about)."""
    before, after, member_id = split_values(
        event.target_kind, event.target_id, event.before, event.after
    )
    if member_id is None:
        return event, None
    return replace(event, before=before, after=after), member_id


def restore(stored: Any, personal: Any, keys: frozenset[str] = PERSONAL_KEYS) -> Any:
    """What an entry's ``before`` or ``after`` reads as: the personal copy when there is one
    and it matches the stored entry once redacted (a copy that does not is ignored), else
    the stored entry with its marks shown as erased."""
    if personal is not None and redact(personal, keys) == stored:
        return personal
    return _erased(stored)


def _erased(value: Any) -> Any:
    if value == PERSONAL_MARK:
        return ERASED_MARK
    if isinstance(value, dict):
        return {k: _erased(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_erased(v) for v in value]
    return value
