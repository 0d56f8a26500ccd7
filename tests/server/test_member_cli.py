"""``telecentre-server member …`` and ``purge`` through ``main(argv)``, on the store of
the configured data dir."""

from __future__ import annotations

import json
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.badges import badge_hash
from protocol.messages import Event
from server import cli
from server.store import Store
from tests.server.privacy_support import find_values

DAY = 86400


@pytest.fixture
def data_dir(tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TELECENTRE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TELECENTRE_BADGE_KEY_FILE", str(key_file))
    store = Store(tmp_path / "data" / "telecentre.db")
    store.create_centre("boitron", "Boitron")
    store.create_centre("belleme", "Bellême")
    store.close()
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> Iterator[Store]:
    """The same database, opened after (or between) the commands."""
    s = Store(data_dir / "telecentre.db")
    yield s
    s.close()


def run(*argv: str) -> int:
    return cli.main(list(argv))


def test_add_and_list(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(
            "member", "add", "Zoé Roussel", "--email", "zoe@example.fr", "--centre", "boitron",
            "--valid-from", "2026-01-01", "--valid-until", "31/12/2026",
        )
        == 0
    )  # fmt: skip
    assert capsys.readouterr().out == "member 1 created\n"
    assert run("member", "add", "Partout") == 0
    capsys.readouterr()
    assert run("member", "list") == 0
    listed = capsys.readouterr().out.splitlines()
    assert "Partout" in listed[0] and " * " in listed[0]  # every centre
    assert "Zoé Roussel" in listed[1] and "2026-01-01..2026-12-31" in listed[1]
    assert run("member", "add", "X", "--centre", "paris") == 1
    assert "unknown centre 'paris'" in capsys.readouterr().err
    assert run("member", "add", "X", "--email", "x@") == 1
    assert "is not an e-mail address" in capsys.readouterr().err


def test_every_change_is_audited_by_unix_user(data_dir: Path, tmp_path: Path) -> None:
    run("member", "add", "Zoé Roussel", "--email", "zoe@example.fr")
    (tmp_path / "m.csv").write_text("name\nJules\n")
    run("member", "import", str(tmp_path / "m.csv"))
    run("member", "export", "1", "--output", str(tmp_path / "zoe.json"))
    run("member", "erase", "1", "--yes")
    run("purge")
    store = Store(data_dir / "telecentre.db")
    try:
        entries = store.audit_entries()[1]
    finally:
        store.close()
    assert [e["action"] for e in reversed(entries)] == [
        "member.created",
        "member.imported",
        "member.exported",
        "member.erased",
    ]  # the purge removed nothing: no entry
    assert all(e["actor"].startswith("cli:") for e in entries)
    assert entries[2]["after"] == {"count": 1, "badges": 0, "file": "m.csv"}
    assert entries[3]["after"]["name"] == "[erased]"


GOOD = (
    "name;email;valid_from;valid_until;centres;badge_uid\n"
    "Zoé Roussel;zoe@example.fr;2026-01-01;2026-12-31;boitron;04:A1:B2:C3\n"
    "Jules Hébert;;;;boitron belleme;\n"
)


def test_import_a_good_file(
    data_dir: Path, tmp_path: Path, badge_key: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "membres.csv"
    path.write_text("\ufeff" + GOOD, encoding="utf-8")  # a spreadsheet's byte order mark
    assert run("member", "import", str(path), "--check") == 0
    assert "2 members, no error" in capsys.readouterr().out
    assert run("member", "import", str(path)) == 0
    out = capsys.readouterr().out
    assert "2 members imported (1 with a card)" in out and "restart" in out
    store = Store(data_dir / "telecentre.db")
    try:
        card = badge_hash(badge_key, bytes.fromhex("04a1b2c3"))
        assert store.member_by_badge_hash(card)["name"] == "Zoé Roussel"
        assert store.members()[0] == 2
    finally:
        store.close()
    # The same card again: refused by row, nothing imported.
    assert run("member", "import", str(path)) == 1
    err = capsys.readouterr().err
    assert "row 2, badge_uid: this card is already enrolled" in err
    assert "nothing imported" in err


def test_a_bad_file_is_refused_whole_with_every_error(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "membres.csv"
    rows = [f"Membre {i},m{i}@example.fr,,,boitron," for i in range(60)]
    rows[10] = "Membre 10,m10@,,,boitron,"
    rows[40] = "Membre 40,,,,lyon,zz"
    path.write_text("name,email,valid_from,valid_until,centres,badge_uid\n" + "\n".join(rows))
    assert run("member", "import", str(path)) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[1:] == [
        "  row 12, email: 'm10@' is not an e-mail address "
        "(There must be something after the @-sign.)",
        "  row 42, centres: unknown centre 'lyon' (known: belleme, boitron)",
        "  row 42, badge_uid: uid 'zz': expected 4 to 10 bytes in hexadecimal, e.g. 04:A1:B2:C3",
    ]
    assert err.startswith(f"{path}: 3 errors, nothing imported")
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("name\nHélène\n".encode("latin-1"))
    assert run("member", "import", str(latin)) == 1
    assert "not UTF-8 text (save it as CSV UTF-8)" in capsys.readouterr().err
    assert run("member", "list") == 0
    assert capsys.readouterr().out == ""  # nothing was imported


def test_a_long_file_shows_progress_on_stderr(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "long.csv"
    path.write_text("name\n" + "".join(f"Membre {i}\n" for i in range(1500)))
    assert run("member", "import", str(path)) == 0
    captured = capsys.readouterr()
    assert "1500 members imported" in captured.out
    assert "checking long.csv" in captured.err and "1500" in captured.err


def test_export_erase_and_purge(
    data_dir: Path, tmp_path: Path, badge_key: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m.csv").write_text(GOOD)
    run("member", "import", str(tmp_path / "m.csv"))
    card = badge_hash(badge_key, bytes.fromhex("04a1b2c3"))
    store = Store(data_dir / "telecentre.db")
    try:
        store.assign_device("boitron-01", "boitron")
        old = time.time() - 200 * DAY
        event = Event(
            event_id=str(uuid.uuid4()),
            device_id="boitron-01",
            epoch="e" * 32,
            seq=1,
            kind="access",
            ts=old,
            clock_synced=True,
            door="entree",
            badge_hash=card,
            granted=True,
            reason="granted",
            direction="in",
            member_id=1,
        )
        store.ingest("boitron-01", [event], received_at=old + 1).result(timeout=10)
    finally:
        store.close()
    capsys.readouterr()

    assert run("member", "export", "1") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["member"]["name"] == "Zoé Roussel" and len(data["events"]) == 1
    target = tmp_path / "zoe.json"
    assert run("member", "export", "1", "--output", str(target)) == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text())["badges"][0]["badge_hash"] == card
    assert run("member", "export", "99") == 1
    assert "no member 99" in capsys.readouterr().err

    assert run("member", "erase", "1") == 1
    assert "add --yes" in capsys.readouterr().err
    assert run("member", "erase", "1", "--yes") == 0
    out = capsys.readouterr().out
    assert "member 1 erased" in out and "restart" in out
    assert find_values(data_dir / "telecentre.db", ["Zoé Roussel", "zoe@example.fr", card]) == []

    assert run("purge") == 0
    out = capsys.readouterr().out
    assert "events and unknown cards 92 days" in out
    assert "events" in out and " 1\n" in out
    store = Store(data_dir / "telecentre.db")
    try:
        assert store.event_count() == 0
        (day,) = store.daily_counts()
        assert (day["granted"], day["unique_members"]) == (1, 1)  # erased, still counted
    finally:
        store.close()
