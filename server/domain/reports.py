"""Reports on visits: invoicing, the Département's activity report, the impact estimate.

Pure rules on plain rows the store hands over (no I/O): periods, people present sampled
through the day, aggregation by member, centre and commune, distances and CO2e, and the
CSV form of each report. Definitions are in docs/operations.md ("Reports").
"""

from __future__ import annotations

import csv
import io
import math
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from itertools import accumulate, pairwise
from typing import Any

from protocol.calendar import Calendar

SAMPLE_MINUTES = 5
SAMPLES_PER_DAY = 24 * 60 // SAMPLE_MINUTES
SAMPLES_PER_HOUR = 60 // SAMPLE_MINUTES
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# The avoided trip is the member's commute: home <-> usual workplace. The centre's commune
# stands for home (members use the centre near where they live) and the declared
# commute_insee is the workplace. Road kilometres are the great-circle distance times
# ROAD_FACTOR, a detour factor: the main roads from the Orne's towns (Alençon-Caen about
# 105 km for 90 km in a straight line, Alençon-Le Mans about 57 km for 49 km) run 1.15-1.2
# times the straight line, at the low end of the 1.2-1.4 usually found for car trips
# between towns (F. Héran, "Des distances à vol d'oiseau aux distances réelles ou de
# l'origine des détours", Flux 76-77, 2009).
ROAD_FACTOR = 1.2
EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
# ADEME Base Carbone, "Voiture - motorisation moyenne - 2018" (France continentale), kg CO2e
# per vehicle-km, one occupant: the default of the impact_kg_co2e_per_km setting.
EMISSION_FACTOR_KG_PER_KM = 0.2156
EMISSION_FACTOR_SOURCE = (
    "ADEME Base Carbone, « Voiture - motorisation moyenne - 2018 », kg CO2e par km"
)

MONTH = re.compile(r"^(\d{4})-(\d{2})$")
WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


class ReportError(ValueError):
    """A report cannot be made as asked; the message names what is wrong."""


# -- periods ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """A report's local days, ``first`` to ``last`` included."""

    kind: str  # month or week
    label: str
    first: date
    last: date

    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    def public(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "label": self.label,
            "first_day": self.first.isoformat(),
            "last_day": self.last.isoformat(),
        }


def month(text: str) -> Period:
    """``YYYY-MM`` as a period; ReportError otherwise."""
    found = MONTH.match(text or "")
    if not found or not 1 <= int(found[2]) <= 12 or int(found[1]) < 1970:
        raise ReportError(f"month: expected YYYY-MM (e.g. 2026-03), got {text!r}")
    year, number = int(found[1]), int(found[2])
    first = date(year, number, 1)
    nxt = date(year + 1, 1, 1) if number == 12 else date(year, number + 1, 1)
    return Period("month", text, first, nxt - timedelta(days=1))


def week(text: str) -> Period:
    """``YYYY-Www`` (ISO week, Monday first) as a period; ReportError otherwise."""
    found = WEEK.match(text or "")
    if not found or int(found[1]) < 1970:
        raise ReportError(f"week: expected YYYY-Www (e.g. 2026-W12), got {text!r}")
    try:
        first = date.fromisocalendar(int(found[1]), int(found[2]), 1)
    except ValueError:
        raise ReportError(f"week: {text!r} is not a week of {found[1]}") from None
    return Period("week", text, first, first + timedelta(days=6))


# -- people present through a day -----------------------------------------------------------


def sample_instants(cal: Calendar, day: date) -> list[float]:
    """The epoch times of a local day's samples: every 5 minutes of wall-clock time from
    midnight (on a day the clocks change, a skipped time is read as the hour after)."""
    return list(_instants(cal.timezone, day))


@lru_cache(maxsize=4096)
def _instants(timezone: str, day: date) -> tuple[float, ...]:
    cal = Calendar(timezone=timezone)
    start = cal.at(day, 0)
    if cal.at(day + timedelta(days=1), 0) - start == 86400:
        return tuple(start + i * SAMPLE_MINUTES * 60 for i in range(SAMPLES_PER_DAY))
    return tuple(cal.at(day, i * SAMPLE_MINUTES) for i in range(SAMPLES_PER_DAY))


def day_occupancy(
    spans: Iterable[Sequence[float]], instants: Sequence[float], start: float, end: float
) -> tuple[int, list[int]]:
    """(most people present at once within [start, end), people present at each instant)
    from visits as (check_in, end) pairs: present from check-in, gone at the end."""
    kept = [(s[0], s[1]) for s in spans if s[1] > s[0]]
    ins = sorted(s for s, _ in kept)
    outs = sorted(e for _, e in kept)
    if all(a <= b for a, b in pairwise(instants)):
        steps = [0] * (len(instants) + 1)
        for check_in, gone in kept:
            steps[bisect_left(instants, check_in)] += 1
            steps[bisect_left(instants, gone)] -= 1
        samples = list(accumulate(steps[:-1]))
    else:  # the night the clocks go forward: some instants repeat
        samples = [bisect_right(ins, t) - bisect_right(outs, t) for t in instants]
    # The most at once: at the start, or just after a check-in within the day (departures
    # at the same instant go first).
    moments = [start, *(t for t in ins if start <= t < end)]
    peak = max(bisect_right(ins, t) - bisect_right(outs, t) for t in moments)
    return peak, samples


def pack_samples(samples: Sequence[int]) -> bytes:
    if samples and (max(samples) > 65535 or min(samples) < 0):
        samples = [min(65535, max(0, n)) for n in samples]
    return array("H", samples).tobytes()


def unpack_samples(raw: bytes) -> list[int]:
    samples = array("H")
    samples.frombytes(raw)
    return samples.tolist()


# -- invoicing ------------------------------------------------------------------------------


def invoicing(
    period: Period,
    usage: Iterable[Sequence[Any]],
    credits: Iterable[Sequence[Any]],
    plans: Iterable[Sequence[Any]],
    names: Mapping[int, str],
) -> dict[str, Any]:
    """One row per member with a visit or a day credit in the period.

    ``usage``: (member_id, days present, visits, seconds present), a day belonging to the
    centre of its first visit; ``credits``: (member_id,
    day credits used); ``plans``: (member_id, plan name) of plans held during the period.
    """
    rows: dict[int, dict[str, Any]] = {}

    def row(member_id: int) -> dict[str, Any]:
        if member_id not in rows:
            rows[member_id] = {
                "member_id": member_id,
                "name": names.get(member_id, ""),
                "days_present": 0,
                "visits": 0,
                "hours": 0.0,
                "credit_days": 0,
                "plans": [],
            }
        return rows[member_id]

    for member_id, days, visits, seconds in usage:
        r = row(member_id)
        r.update(days_present=days, visits=visits, hours=hours(seconds))
    for member_id, used in credits:
        row(member_id)["credit_days"] = used
    held: dict[int, set[str]] = {}
    for member_id, name in plans:
        held.setdefault(member_id, set()).add(name)
    for member_id, r in rows.items():
        r["plans"] = sorted(held.get(member_id, ()))
    items = sorted(rows.values(), key=lambda r: (r["name"].casefold(), r["member_id"]))
    return {
        "period": period.public(),
        "members": items,
        "total": {
            "members": len(items),
            "days_present": sum(r["days_present"] for r in items),
            "visits": sum(r["visits"] for r in items),
            "hours": round(sum(r["hours"] for r in items), 2),
            "credit_days": sum(r["credit_days"] for r in items),
        },
    }


def hours(seconds: float | None) -> float:
    return round((seconds or 0.0) / 3600.0, 2)


# -- the Département's report -----------------------------------------------------------------


@dataclass(frozen=True)
class OccupancyDay:
    """A centre's stored day: most present at once, and the 5-minute samples."""

    centre_id: str
    day: date
    peak: int
    samples: Sequence[int]


def departement(
    period: Period,
    centres: Sequence[Mapping[str, Any]],
    pairs: Iterable[Sequence[Any]],
    firsts: Iterable[Sequence[Any]],
    days: Iterable[OccupancyDay],
    *,
    valid_samples: Mapping[date, int],
    commune_names: Mapping[str, str],
) -> dict[str, Any]:
    """Activity per centre, per commune (centres' INSEE code) and in total.

    ``centres``: the centres shown (id, name, insee, commune); ``pairs``: (centre_id,
    member_id, visits, seconds present) of visits in the period; ``firsts``: (member_id,
    centre_id, first day ever at that centre) for the centres shown; ``days``: the stored
    occupancy days of the period; ``valid_samples``: for each day of the period up to now,
    how many of its samples lie in the past (288 for a past day).
    """
    shown = {c["id"]: c for c in centres}
    groups: dict[str, list[str]] = {}
    for c in centres:
        groups.setdefault(c.get("insee") or "", []).append(c["id"])
    visits: dict[str, int] = {}
    seconds: dict[str, float] = {}
    members: dict[str, set[int]] = {}
    for centre_id, member_id, n, secs in pairs:
        if centre_id not in shown:
            continue
        visits[centre_id] = visits.get(centre_id, 0) + n
        seconds[centre_id] = seconds.get(centre_id, 0.0) + (secs or 0.0)
        members.setdefault(centre_id, set()).add(member_id)
    # New members: a member's first visit ever at a centre, at any centre of a commune,
    # at any centre shown, falls within the period.
    first_at: dict[int, dict[str, date]] = {}
    for member_id, centre_id, day in firsts:
        if centre_id in shown:
            first_at.setdefault(member_id, {})[centre_id] = as_date(day)
    new: dict[str, int] = {}
    for by_centre in first_at.values():
        earliest: dict[str, date] = {}
        for centre_id, day in by_centre.items():
            for key in (centre_id, f"insee:{shown[centre_id].get('insee') or ''}", "total"):
                if key not in earliest or day < earliest[key]:
                    earliest[key] = day
        for key, day in earliest.items():
            if period.first <= day <= period.last:
                new[key] = new.get(key, 0) + 1
    stored: dict[str, dict[date, OccupancyDay]] = {}
    for d in days:
        if d.centre_id in shown:
            stored.setdefault(d.centre_id, {})[d.day] = d

    def summary(centre_ids: Sequence[str], key: str) -> dict[str, Any]:
        people: set[int] = set()
        for c in centre_ids:
            people |= members.get(c, set())
        profile, peak = _occupancy(centre_ids, stored, valid_samples)
        if len(centre_ids) == 1:  # a single centre: the exact peak of its stored days
            peak = max((d.peak for d in stored.get(centre_ids[0], {}).values()), default=0)
        return {
            "visits": sum(visits.get(c, 0) for c in centre_ids),
            "unique_members": len(people),
            "new_members": new.get(key, 0),
            "hours": hours(sum(seconds.get(c, 0.0) for c in centre_ids)),
            "peak_occupancy": peak,
            "occupancy": profile,
        }

    centre_rows = [
        {
            "centre_id": c["id"],
            "name": c["name"],
            "insee": c.get("insee"),
            **summary([c["id"]], c["id"]),
        }
        for c in centres
    ]
    commune_rows = []
    for insee, ids in sorted(groups.items()):
        name = commune_names.get(insee) or next(
            (shown[i].get("commune") for i in ids if shown[i].get("commune")), insee
        )
        commune_rows.append(
            {"insee": insee or None, "name": name, "centres": ids, **summary(ids, f"insee:{insee}")}
        )
    return {
        "period": period.public(),
        "centres": centre_rows,
        "communes": commune_rows,
        "total": {"centres": len(centres), **summary([c["id"] for c in centres], "total")},
    }


def as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _occupancy(
    centre_ids: Sequence[str],
    stored: Mapping[str, Mapping[date, OccupancyDay]],
    valid_samples: Mapping[date, int],
) -> tuple[dict[str, list[float]], int]:
    """(average people present by weekday and local hour, the most present at one sample
    instant) of these centres together, over the period's days up to now."""
    totals = [[0] * 24 for _ in range(7)]
    counts = [[0] * 24 for _ in range(7)]
    peak = 0
    for day, valid in valid_samples.items():
        weekday = day.weekday()
        arrays = [stored[c][day].samples[:valid] for c in centre_ids if day in stored.get(c, {})]
        if arrays:
            combined = arrays[0]
            if len(arrays) > 1:
                combined = [sum(n) for n in zip(*arrays, strict=True)]
            for hour in range(24):
                start = hour * SAMPLES_PER_HOUR
                totals[weekday][hour] += sum(combined[start : start + SAMPLES_PER_HOUR])
            peak = max(peak, max(combined, default=0))
        for hour in range(24):
            counts[weekday][hour] += max(0, min(SAMPLES_PER_HOUR, valid - hour * SAMPLES_PER_HOUR))
    profile = {
        WEEKDAYS[w]: [
            round(totals[w][h] / counts[w][h], 3) if counts[w][h] else 0.0 for h in range(24)
        ]
        for w in range(7)
    }
    return profile, peak


def valid_samples(period: Period, cal: Calendar, now: float) -> dict[date, int]:
    """For each day of the period that has begun, how many of its samples are past."""
    found: dict[date, int] = {}
    for day in period.days():
        instants = sample_instants(cal, day)
        past = bisect_right(instants, now)
        if past:
            found[day] = past
    return found


# -- impact -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commune:
    insee: str
    name: str
    lat: float
    lon: float


def great_circle_km(a: Commune, b: Commune) -> float:
    """Haversine distance between two communes' points, in km."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def round_trip_km(home: Commune, work: Commune) -> float:
    """Road kilometres of one avoided day of commuting: there and back."""
    return 2 * ROAD_FACTOR * great_circle_km(home, work)


def commune(communes: Mapping[str, Commune], insee: str, what: str) -> Commune:
    found = communes.get(insee)
    if found is None:
        raise ReportError(
            f"unknown commune {insee!r} ({what}): add its INSEE code, name, latitude and "
            "longitude to server/data/communes.csv"
        )
    return found


def impact(
    period: Period,
    centres: Sequence[Mapping[str, Any]],
    days: Iterable[Sequence[Any]],
    commutes: Mapping[int, str | None],
    communes: Mapping[str, Commune],
    *,
    kg_per_km: float = EMISSION_FACTOR_KG_PER_KM,
) -> dict[str, Any]:
    """Commuting avoided per centre and in total over the period.

    ``days``: (member_id, centre_id, days present): a day belongs to the centre of the
    member's first visit that day. ``commutes``: member_id -> declared commute INSEE code
    (None: not declared). One day present avoids one round trip home <-> workplace, the
    centre's commune standing for home; a member whose workplace is the centre's commune
    avoids none.
    """
    shown = {c["id"]: c for c in centres}
    rows = {
        c["id"]: {
            "centre_id": c["id"],
            "name": c["name"],
            "insee": c.get("insee"),
            "member_days": 0,
            "members": set(),
            "undeclared_member_days": 0,
            "km": 0.0,
        }
        for c in centres
    }
    distances: dict[tuple[str, str], float] = {}
    for member_id, centre_id, count in days:
        row = rows.get(centre_id)
        if row is None or not count:
            continue
        work = commutes.get(member_id)
        if not work:
            row["undeclared_member_days"] += count
            continue
        home_insee = shown[centre_id].get("insee")
        if not home_insee:
            raise ReportError(
                f"centre {centre_id!r} has no INSEE code: set its insee to estimate the "
                "commuting its members avoid"
            )
        key = (home_insee, work)
        if key not in distances:
            home = commune(communes, home_insee, f"INSEE code of centre {centre_id!r}")
            place = commune(communes, work, f"commute_insee of member {member_id}")
            distances[key] = round_trip_km(home, place)
        row["member_days"] += count
        row["members"].add(member_id)
        row["km"] += count * distances[key]
    out = []
    everyone: set[int] = set()
    for row in rows.values():
        everyone |= row["members"]
        out.append(_impact_row(row, kg_per_km))
    total = {
        "member_days": sum(r["member_days"] for r in out),
        "members": len(everyone),
        "undeclared_member_days": sum(r["undeclared_member_days"] for r in out),
        "km": round(sum(r["km"] for r in rows.values()), 1),
        "kg_co2e": round(sum(r["km"] for r in rows.values()) * kg_per_km, 1),
    }
    return {
        "period": period.public(),
        "method": {
            "avoided_trip": "home <-> workplace (centre's commune <-> commute_insee), "
            "one round trip per day present",
            "road_factor": ROAD_FACTOR,
            "kg_co2e_per_km": kg_per_km,
            "emission_factor_source": EMISSION_FACTOR_SOURCE,
        },
        "centres": out,
        "total": total,
    }


def _impact_row(row: dict[str, Any], kg_per_km: float) -> dict[str, Any]:
    return {
        **{k: v for k, v in row.items() if k not in ("members", "km")},
        "members": len(row["members"]),
        "km": round(row["km"], 1),
        "kg_co2e": round(row["km"] * kg_per_km, 1),
    }


# -- CSV -------------------------------------------------------------------------------------


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def invoicing_csv(report: Mapping[str, Any]) -> str:
    """One line per member; plans joined with " | "."""
    label = report["period"]["label"]
    columns = ("member_id", "name", "days_present", "visits", "hours", "credit_days")
    return _csv(
        ("period", *columns, "plans"),
        ((label, *(r[c] for c in columns), " | ".join(r["plans"])) for r in report["members"]),
    )


METRICS = ("visits", "unique_members", "new_members", "hours", "peak_occupancy")
OCCUPANCY_COLUMNS = tuple(f"occupancy_{d}_{h:02d}" for d in WEEKDAYS for h in range(24))


def departement_csv(report: Mapping[str, Any]) -> str:
    """One line per centre, per commune and the total; average people present by weekday
    and hour in the ``occupancy_<day>_<hour>`` columns."""
    label = report["period"]["label"]

    def line(level: str, ident: Any, name: Any, insee: Any, r: Mapping[str, Any]) -> list:
        profile = [r["occupancy"][d][h] for d in WEEKDAYS for h in range(24)]
        return [label, level, ident, name, insee, *(r[m] for m in METRICS), *profile]

    rows = [line("centre", r["centre_id"], r["name"], r["insee"], r) for r in report["centres"]]
    rows += [line("commune", r["insee"], r["name"], r["insee"], r) for r in report["communes"]]
    rows.append(line("total", "", "", "", report["total"]))
    return _csv(("period", "level", "id", "name", "insee", *METRICS, *OCCUPANCY_COLUMNS), rows)


IMPACT_COLUMNS = ("member_days", "members", "undeclared_member_days", "km", "kg_co2e")


def impact_csv(report: Mapping[str, Any]) -> str:
    """One line per centre and the total."""
    label = report["period"]["label"]
    rows = [
        (label, "centre", r["centre_id"], r["name"], r["insee"], *(r[c] for c in IMPACT_COLUMNS))
        for r in report["centres"]
    ]
    total = report["total"]
    rows.append((label, "total", "", "", "", *(total[c] for c in IMPACT_COLUMNS)))
    return _csv(("period", "level", "centre_id", "name", "insee", *IMPACT_COLUMNS), rows)
