"""Plans: the catalogue's kinds and hour rules, and which plan a day credit is taken from.

A member's plan is a copy of the catalogue plan's rules when it was given (a later change
to the catalogue does not change what was sold). Subscriptions run from/to dates; day-pass
books and trials hold ``days`` credits, one used by the first granted entry of a local
day at any centre (``protocol.policy``).
"""

from __future__ import annotations

from collections.abc import Iterable

from protocol.messages import (
    ALWAYS,
    DAY_PASS,
    OPENING_HOURS,
    SUBSCRIPTION,
    TRIAL,
    WINDOW,
)

KINDS = {"subscription": SUBSCRIPTION, "day_pass": DAY_PASS, "trial": TRIAL}
HOURS = {"always": ALWAYS, "opening": OPENING_HOURS, "window": WINDOW}


def credit_plan(plans: Iterable[dict], ts: float) -> dict | None:
    """The plan a day used at ``ts`` is taken from: the credit plan (trial before book)
    valid at ``ts`` with days left, the one ending first; else the last valid credit plan
    (it goes below zero: days over, shown on the invoice); None when no credit plan is
    valid. (Whether a subscription admitted the entry instead is the caller's question.)"""
    valid = [
        p
        for p in plans
        if (p["valid_from"] is None or p["valid_from"] <= ts)
        and (p["valid_until"] is None or ts < p["valid_until"])
    ]
    credit = [p for p in valid if p["kind"] in ("trial", "day_pass")]
    if not credit:
        return None
    credit.sort(key=lambda p: (p["kind"] != "trial", p["valid_until"] or float("inf"), p["id"]))
    with_days = [p for p in credit if (p["days"] or 0) - p["used"] > 0]
    return with_days[0] if with_days else credit[-1]
