"""Reference data shipped in the package: the communes the impact report can place."""

from __future__ import annotations

import csv
from functools import cache
from importlib.resources import files

from server.domain.reports import Commune


@cache
def communes() -> dict[str, Commune]:
    """``communes.csv`` by INSEE code (lines starting with # are its header comment)."""
    text = files("server").joinpath("data/communes.csv").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {
        row["insee"]: Commune(row["insee"], row["name"], float(row["lat"]), float(row["lon"]))
        for row in csv.DictReader(lines)
    }
