"""``telecentre-server report …`` through main(argv), on the configured data directory."""

from __future__ import annotations

import csv
import itertools
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from protocol.messages import Event
from server.cli import main
from server.settings import Settings
from server.store import Store
from tests.server.support import badge_in

PARIS = ZoneInfo("Europe/Paris")
SEQ = itertools.count(1)


def at(text: str) -> float:
    return datetime.strptime(f"2026-{text}", "%Y-%m-%d %H:%M").replace(tzinfo=PARIS).timestamp()


def passage(member_id: int, when: str, direction: str) -> Event:
    return badge_in(
        "boitron-01",
        next(SEQ),
        member_id,
        ts=at(when),
        direction=direction,  # type: ignore[arg-type]
        epoch="c" * 32,
    )


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory with Boitron (61051) and one member commuting to Le Mans who came
    twice in March 2026 (2 h and 3 h); the commands find it through TELECENTRE_DATA_DIR."""
    directory = tmp_path / "data"
    store = Store(Settings(data_dir=directory).db_path)
    try:
        store.create_centre("boitron", "Boitron")
        store.assign_device("boitron-01", "boitron")
        member = store.create_member({"name": "Denis Roger"})["id"]
        store.write(lambda db: db["centres"].update("boitron", {"insee": "61051"}))
        store.write(lambda db: db["members"].update(member, {"commute_insee": "72181"}))
        events = [
            passage(member, "03-09 09:00", "in"),
            passage(member, "03-09 11:00", "out"),
            passage(member, "03-16 14:00", "in"),
            passage(member, "03-16 17:00", "out"),
        ]
        store.ingest("boitron-01", events, at("03-16 17:00")).result(timeout=10)
    finally:
        store.close()
    monkeypatch.setenv("TELECENTRE_DATA_DIR", str(directory))
    return directory


def test_invoicing_as_a_table(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "invoicing", "--month", "2026-03"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "invoicing 2026-03 (2026-03-01 .. 2026-03-31)"
    (line,) = [row for row in out.splitlines() if "Denis Roger" in row]
    assert line.split()[-4:] == ["2", "2", "5.0", "0"]  # days, visits, hours, credits


def test_each_report_as_csv(data_dir: Path, tmp_path: Path) -> None:
    for kind in ("invoicing", "departement", "impact"):
        target = tmp_path / f"{kind}.csv"
        assert main(["report", kind, "--month", "2026-03", "--csv", str(target)]) == 0
        rows = list(csv.DictReader(target.open(encoding="utf-8")))
        if kind == "invoicing":
            assert [(r["name"], r["hours"]) for r in rows] == [("Denis Roger", "5.0")]
        elif kind == "departement":
            assert [(r["level"], r["visits"]) for r in rows] == [
                ("centre", "2"),
                ("commune", "2"),
                ("total", "2"),
            ]
        else:
            assert rows[-1]["level"] == "total" and rows[-1]["member_days"] == "2"
            assert float(rows[-1]["km"]) > 2 * 2 * 60  # Boitron-Le Mans: over 60 km each way


def test_a_week_of_the_departement_report_for_one_centre(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "departement", "--week", "2026-W11", "--centre", "boitron"]) == 0
    out = capsys.readouterr().out
    assert "2026-03-09 .. 2026-03-15" in out
    (total,) = [row for row in out.splitlines() if row.startswith("total")]
    assert total.split()[1:3] == ["1", "1"]  # one visit, one member that week


def test_mistakes_are_named(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "invoicing", "--month", "2026-03", "--centre", "nowhere"]) == 1
    assert "nowhere" in capsys.readouterr().err
    assert main(["report", "invoicing", "--month", "March"]) == 1
    assert "YYYY-MM" in capsys.readouterr().err
    assert main(["report", "impact", "--week", "2026-W11"]) == 1
    assert "--month" in capsys.readouterr().err
    store = Store(Settings(data_dir=data_dir).db_path)
    try:
        store.write(lambda db: db["members"].update(1, {"commute_insee": "13055"}))
    finally:
        store.close()
    assert main(["report", "impact", "--month", "2026-03"]) == 1
    assert "unknown commune '13055'" in capsys.readouterr().err
