"""Reading members from a CSV file: every value checked, every error named by its row
(the spreadsheet's number) and field."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from server.domain import member_import

PARIS = ZoneInfo("Europe/Paris")
CENTRES = {"boitron", "belleme"}
NO_DOMAIN = "There must be something after the @-sign."  # email-validator's words


def parse(text: str) -> tuple[list[member_import.MemberRow], list[str]]:
    rows, errors = member_import.parse(text, known_centres=CENTRES, tz=PARIS)
    return rows, [str(e) for e in errors]


def test_a_good_file_gives_every_member() -> None:
    rows, errors = parse(
        "name,email,valid_from,valid_until,centres,badge_uid\n"
        "Zoé Roussel,Zoe@Example.fr,2026-01-01,31/12/2026,boitron;belleme,04:A1:B2:C3\n"
        "\n"
        'Jules Hébert,,,,"",\n'
    )
    assert errors == []
    zoe, jules = rows
    assert (zoe.row, jules.row) == (2, 4)  # the blank row keeps its number
    assert zoe.email == "Zoe@example.fr"
    assert zoe.valid_from == datetime(2026, 1, 1, tzinfo=PARIS).timestamp()
    # The last day is included: valid until the next local midnight.
    assert zoe.valid_until == datetime(2027, 1, 1, tzinfo=PARIS).timestamp()
    assert zoe.centres == ["belleme", "boitron"]
    assert zoe.uid == bytes.fromhex("04a1b2c3")
    assert jules.fields() == {
        "name": "Jules Hébert",
        "email": None,
        "valid_from": None,
        "valid_until": None,
        "centres": None,
    }


def test_semicolons_and_any_column_order() -> None:
    rows, errors = parse("centres;Name\nboitron belleme;Léa\n")
    assert errors == []
    assert rows[0].name == "Léa" and rows[0].centres == ["belleme", "boitron"]


def test_every_bad_value_is_named_by_row_and_field() -> None:
    rows, errors = parse(
        "name,email,valid_from,valid_until,centres,badge_uid\n"
        "Ok,,,,,\n"
        ",zoe@,2026-13-01,2026-01-01,boitron;paris,xyz\n"
        "Late,,2026-02-01,2026-01-31,,04a1b2c3\n"
        "Twice,,,,,04:a1:b2:c3\n"
        "Short,\n"
    )
    assert errors == [
        "row 3, name: required",
        "row 3, email: 'zoe@' is not an e-mail address (" + NO_DOMAIN + ")",
        "row 3, valid_from: '2026-13-01' is not a date (YYYY-MM-DD or DD/MM/YYYY)",
        "row 3, centres: unknown centre 'paris' (known: belleme, boitron)",
        "row 3, badge_uid: uid 'xyz': expected 4 to 10 bytes in hexadecimal, e.g. 04:A1:B2:C3",
        "row 4, valid_until: before valid_from",
        "row 5, badge_uid: the same card as row 4",
        "row 6, row: 2 fields, the header has 6",
    ]
    assert [r.name for r in rows] == ["Ok"]  # the caller imports nothing when errors exist


def test_a_bad_header_is_refused_before_any_row() -> None:
    _, errors = parse("nom,email,email\nZoé,a@b.fr,c@d.fr\n")
    assert errors == [
        "row 1, nom: unknown column; the columns are ('name', 'email', 'valid_from', "
        "'valid_until', 'centres', 'badge_uid')",
        "row 1, email: column given twice",
        "row 1, name: required column missing",
    ]
    assert parse("")[1][0].startswith("row 1, header: empty file")


def test_a_name_too_long_is_refused() -> None:
    _, errors = parse("name\n" + "x" * 201 + "\n")
    assert errors == ["row 2, name: longer than 200 characters"]
