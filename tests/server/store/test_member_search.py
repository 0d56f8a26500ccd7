"""Finding members by part of a name, an e-mail, a badge label or a card's hash."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "t.db")
    s.create_centre("boitron", "Boitron")
    s.create_centre("belleme", "Bellême")
    yield s
    s.close()


def names(store: Store, **kw: object) -> list[str]:
    _, rows = store.members(**kw)  # type: ignore[arg-type]
    return [r["name"] for r in rows]


def test_search_matches_name_email_and_badge_label(store: Store) -> None:
    alice = store.create_member({"name": "Alice Martin", "email": "alice@exemple.fr"})
    store.create_member({"name": "Bruno Petit", "email": "bruno@orne.fr"})
    store.enrol_badge(alice["id"], "a" * 64, "carte bleue 12")
    assert names(store, search="mart") == ["Alice Martin"]
    assert names(store, search="ORNE.FR") == ["Bruno Petit"]
    assert names(store, search="bleue") == ["Alice Martin"]
    assert names(store, search="nobody") == []


def test_search_by_card_hash_and_wildcards_are_literal(store: Store) -> None:
    alice = store.create_member({"name": "Alice"})
    store.create_member({"name": "100% Bruno"})
    store.enrol_badge(alice["id"], "b" * 64)
    assert names(store, search="04:A1:B2:C3", badge_hash="b" * 64) == ["Alice"]
    assert names(store, search="%") == ["100% Bruno"]
    assert names(store, search="_") == []


def test_search_stays_within_a_managers_centres(store: Store) -> None:
    store.create_member({"name": "Claire Boitron", "centres": ["boitron"]})
    store.create_member({"name": "Claire Belleme", "centres": ["belleme"]})
    store.create_member({"name": "Claire Partout"})
    total, _ = store.members(search="claire", centre_ids=["boitron"])
    assert total == 2
    assert names(store, search="claire", centre_ids=["boitron"]) == [
        "Claire Boitron",
        "Claire Partout",
    ]
