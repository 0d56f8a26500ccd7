"""The Orne's outline as SVG, and the centres placed on it by their coordinates.

The outline (``server/data/orne-outline.json``) is Natural Earth's admin-1 polygon of the
département (public domain; its source is written in the file). Longitudes are scaled by
the cosine of the mean latitude (an equirectangular projection): at this size the
département's shape and the centres' places are right to well under a pixel's worth.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

WIDTH = 400.0
MARGIN = 12.0


@dataclass(frozen=True)
class Projection:
    west: float
    north: float
    x_scale: float
    y_scale: float
    height: float

    def point(self, lon: float, lat: float) -> tuple[float, float]:
        return (
            round(MARGIN + (lon - self.west) * self.x_scale, 1),
            round(MARGIN + (self.north - lat) * self.y_scale, 1),
        )


@cache
def outline() -> list[tuple[float, float]]:
    text = files("server").joinpath("data/orne-outline.json").read_text(encoding="utf-8")
    return [(float(lon), float(lat)) for lon, lat in json.loads(text)["outline"]]


@cache
def projection() -> Projection:
    ring = outline()
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    west, east, south, north = min(lons), max(lons), min(lats), max(lats)
    squash = math.cos(math.radians((north + south) / 2))
    x_scale = (WIDTH - 2 * MARGIN) / (east - west)  # pixels per degree of longitude
    y_scale = x_scale / squash  # a degree of latitude is longer on the ground
    height = round((north - south) * y_scale + 2 * MARGIN, 1)
    return Projection(west, north, x_scale, y_scale, height)


@cache
def outline_path() -> str:
    """The SVG path of the département's border."""
    p = projection()
    points = [p.point(lon, lat) for lon, lat in outline()]
    head, *rest = points
    return f"M{head[0]} {head[1]}" + "".join(f"L{x} {y}" for x, y in rest) + "Z"


def view_box() -> str:
    return f"0 0 {WIDTH:g} {projection().height:g}"


def place(lon: float | None, lat: float | None) -> tuple[float, float] | None:
    """Where a centre goes on the map (None when its coordinates are not known)."""
    if lon is None or lat is None:
        return None
    return projection().point(lon, lat)
