"""``telecentre-server report invoicing|departement|impact``: the reports of the API on the
server's own command line, from the configured data directory, as a table or CSV."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from protocol.errors import TelecentreError
from server.domain import reports as rules
from server.settings import Settings
from server.store import Store

COMMANDS = ("report",)
KINDS = ("invoicing", "departement", "impact")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report", help="reports: invoicing, departement (activity), impact (commuting avoided)"
    )
    report.add_argument("kind", choices=KINDS)
    period = report.add_mutually_exclusive_group(required=True)
    period.add_argument("--month", help="YYYY-MM")
    period.add_argument("--week", help="YYYY-Www, an ISO week (departement only)")
    report.add_argument("--centre", help="only this centre")
    report.add_argument("--csv", type=Path, metavar="FILE", help="write the report as CSV there")


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    try:
        if args.week is not None and args.kind != "departement":
            raise rules.ReportError(f"--week: the {args.kind} report is monthly; use --month")
        period = rules.week(args.week) if args.week is not None else rules.month(args.month)
        settings = settings or Settings.from_env()
        store = Store(settings.store_location, max_stay_s=settings.max_stay_hours * 3600)
        try:
            return _run(store, settings, args, period)
        finally:
            store.close()
    except (TelecentreError, ValueError, LookupError, OSError) as exc:
        print(f"telecentre-server: {exc}", file=sys.stderr)
        return 1


def _run(store: Store, settings: Settings, args: argparse.Namespace, period: Any) -> int:
    centre_ids = None
    if args.centre is not None:
        store.centre(args.centre)  # names an unknown centre
        centre_ids = [args.centre]
    now = time.time()
    if args.kind == "invoicing":
        report = store.invoicing_report(period, now=now, centre_ids=centre_ids)
        text, table = rules.invoicing_csv(report), _invoicing_table(report)
    elif args.kind == "departement":
        report = store.departement_report(period, now=now, centre_ids=centre_ids)
        text, table = rules.departement_csv(report), _departement_table(report)
    else:
        report = store.impact_report(
            period, kg_per_km=settings.impact_kg_co2e_per_km, centre_ids=centre_ids
        )
        text, table = rules.impact_csv(report), _impact_table(report)
    if args.csv is not None:
        args.csv.write_text(text, encoding="utf-8")
        print(f"wrote {args.csv} ({text.count(chr(10)) - 1} lines)")
        return 0
    p = report["period"]
    print(f"{args.kind} {p['label']} ({p['first_day']} .. {p['last_day']})")
    print(table)
    return 0


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in header], *([("" if c is None else str(c)) for c in r] for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _invoicing_table(report: dict[str, Any]) -> str:
    columns = ("member_id", "name", "days_present", "visits", "hours", "credit_days")
    rows = [[*(r[c] for c in columns), ", ".join(r["plans"])] for r in report["members"]]
    t = report["total"]
    rows.append(
        [
            "total",
            f"{t['members']} members",
            t["days_present"],
            t["visits"],
            t["hours"],
            t["credit_days"],
            "",
        ]
    )
    return _table((*columns, "plans"), rows)


def _departement_table(report: dict[str, Any]) -> str:
    rows = [
        [r["centre_id"], r["name"], r["insee"], *(r[m] for m in rules.METRICS)]
        for r in report["centres"]
    ]
    rows += [
        [f"commune {r['insee'] or '-'}", r["name"], r["insee"], *(r[m] for m in rules.METRICS)]
        for r in report["communes"]
    ]
    rows.append(["total", "", "", *(report["total"][m] for m in rules.METRICS)])
    return _table(("centre", "name", "insee", *rules.METRICS), rows)


def _impact_table(report: dict[str, Any]) -> str:
    rows = [
        [r["centre_id"], r["name"], r["insee"], *(r[c] for c in rules.IMPACT_COLUMNS)]
        for r in report["centres"]
    ]
    rows.append(["total", "", "", *(report["total"][c] for c in rules.IMPACT_COLUMNS)])
    m = report["method"]
    note = (
        f"\nroad factor {m['road_factor']}, {m['kg_co2e_per_km']} kg CO2e/km "
        f"({m['emission_factor_source']})"
    )
    return _table(("centre", "name", "insee", *rules.IMPACT_COLUMNS), rows) + note
