"""``telecentre-server plan …`` and ``badge …`` through ``main(argv)``, on the store of the
configured data dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server import cli
from server.store import Store


@pytest.fixture
def data_dir(tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TELECENTRE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TELECENTRE_BADGE_KEY_FILE", str(key_file))
    store = Store(tmp_path / "data" / "telecentre.db")
    store.create_centre("boitron", "Boitron")
    store.create_member({"name": "Nina Lambert"})
    store.close()
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> Iterator[Store]:
    s = Store(data_dir / "telecentre.db")
    yield s
    s.close()


def run(*argv: str) -> int:
    return cli.main(list(argv))


def test_plans_are_added_listed_and_given(
    data_dir: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("plan", "add", "Carnet 10", "--kind", "day_pass", "--days", "10") == 0
    assert (
        run(
            "plan",
            "add",
            "Matins",
            "--kind",
            "subscription",
            "--hours",
            "window",
            "--window",
            "1,08:00,12:00",
            "--centre",
            "boitron",
        )
        == 0
    )
    assert run("plan", "list") == 0
    listing = capsys.readouterr().out
    assert "Carnet 10" in listing and "day_pass" in listing and "Matins" in listing
    assert run("plan", "give", "1", "1", "--valid-from", "2026-11-01") == 0
    (held,) = store.member_plans(1)
    assert held["name"] == "Carnet 10" and held["days_left"] == 10
    (matins,) = [p for p in store.plans() if p["name"] == "Matins"]
    assert matins["window"] == [[1, 480, 720]] and matins["centres"] == ["boitron"]
    actions = [e["action"] for e in store.audit_entries(limit=10)[1]]
    assert actions.count("plan.created") == 2 and "plan.given" in actions


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("plan", "add", "X", "--kind", "day_pass"), "--days"),
        (("plan", "add", "X", "--kind", "subscription", "--days", "3"), "--days"),
        (("plan", "add", "X", "--kind", "subscription", "--hours", "window"), "--window"),
        (
            (
                "plan",
                "add",
                "X",
                "--kind",
                "subscription",
                "--hours",
                "window",
                "--window",
                "8,9,10",
            ),
            "weekday",
        ),
        (("plan", "add", "X", "--kind", "subscription", "--centre", "mars"), "mars"),
        (("plan", "give", "1", "99"), "no plan 99"),
        (("plan", "give", "42", "1"), "no member 42"),
        (("badge", "enrol", "1", "not-a-uid"), "UID"),
        (("badge", "revoke", "77"), "no badge 77"),
    ],
)
def test_bad_arguments_are_refused_by_name(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], words: str
) -> None:
    if argv[:2] == ("plan", "give") and argv[3] == "1":
        assert run("plan", "add", "Carnet", "--kind", "day_pass", "--days", "5") == 0
    capsys.readouterr()
    assert run(*argv) == 1
    err = capsys.readouterr().err
    assert words.lower() in err.lower(), err


def test_a_lost_badge_is_replaced(data_dir: Path, store: Store) -> None:
    assert run("badge", "enrol", "1", "04:A1:B2:C3", "--label", "carte") == 0
    (badge,) = store.member(1)["badges"]
    assert run("badge", "replace", str(badge["id"]), "04:D4:E5:F6") == 0
    badges = {b["id"]: b for b in store.member(1)["badges"]}
    assert badges[badge["id"]]["revoked_at"] is not None
    (new,) = [b for b in badges.values() if b["id"] != badge["id"]]
    assert new["revoked_at"] is None
    assert run("badge", "revoke", str(new["id"])) == 0
    assert store.badge(new["id"])["revoked_at"] is not None
