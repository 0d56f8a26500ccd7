"""/api/events a page at a time: keyset cursors, capped counts, an index for each filter."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from server.routes.events import COUNT_LIMIT
from tests.server.test_api import NOW, assert_error, runtime


def write_events(client: TestClient, rows: list[tuple[float, str, str]]) -> None:
    """Events (ts, kind, centre) written straight to the table, as a year of traffic would
    have left them."""
    store = runtime(client).store

    def insert(db) -> None:  # noqa: ANN001
        db.conn.executemany(
            "INSERT INTO events (event_id, device_id, seq, centre_id, kind, ts, received_at,"
            " clock_synced, historical, time_suspect, door) VALUES (?, ?, ?, ?, ?, ?, ?, 1, 0,"
            " 0, 'entree')",
            [
                (str(uuid.uuid4()), "boitron-01", i + 1, centre, kind, ts, ts)
                for i, (ts, kind, centre) in enumerate(rows)
            ],
        )

    store.write(insert)


def follow(client: TestClient, params: dict) -> list[dict]:
    """Every page, following next_cursor until there is none."""
    seen: list[dict] = []
    cursor = None
    while True:
        page = client.get(
            "/api/events", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200, page.text
        body = page.json()
        seen.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def test_following_the_cursor_gives_every_event_once_newest_first(server: TestClient) -> None:
    # Several events share a time: the cursor must not skip or repeat any of them.
    rows = [(NOW - (i // 3), "access" if i % 4 else "door_forced", "boitron") for i in range(50)]
    write_events(server, rows)
    everything = follow(server, {"limit": 7})
    assert len(everything) == 50
    assert len({e["event_id"] for e in everything}) == 50
    keys = [(e["ts"], e["id"]) for e in everything]
    assert keys == sorted(keys, reverse=True)

    forced = follow(server, {"limit": 4, "kind": "door_forced"})
    assert [e["id"] for e in forced] == [e["id"] for e in everything if e["kind"] == "door_forced"]

    first = server.get("/api/events", params={"limit": 10}).json()
    assert first["total"] == 50 and first["total_exact"] is True
    # The deprecated offset still gives the same pages as the cursor.
    second = server.get("/api/events", params={"limit": 10, "offset": 10}).json()
    by_cursor = server.get("/api/events", params={"limit": 10, "cursor": first["next_cursor"]})
    assert second["items"] == by_cursor.json()["items"]


def test_a_cursor_is_checked(server: TestClient) -> None:
    write_events(server, [(NOW - i, "access", "boitron") for i in range(3)])
    cursor = server.get("/api/events", params={"limit": 1}).json()["next_cursor"]
    assert_error(server.get("/api/events", params={"cursor": "bm9wZQ=="}), 422, "cursor")
    assert_error(server.get("/api/events", params={"cursor": "%%%"}), 422, "cursor")
    both = server.get("/api/events", params={"cursor": cursor, "offset": 5})
    assert_error(both, 422, "offset")


def test_the_count_stops_at_its_limit(server: TestClient) -> None:
    write_events(server, [(NOW - i, "access", "boitron") for i in range(COUNT_LIMIT + 5)])
    page = server.get("/api/events", params={"limit": 5}).json()
    assert page["total"] == COUNT_LIMIT and page["total_exact"] is False
    assert len(page["items"]) == 5 and page["next_cursor"]
    few = server.get("/api/events", params={"kind": "room"}).json()
    assert few["total"] == 0 and few["total_exact"] is True and few["next_cursor"] is None


def test_every_filter_pages_from_an_index_without_sorting(server: TestClient) -> None:
    """Each filter reads an index that starts with its column (not the time index, which
    would walk every event to find a rare one), in the page's order (no sort)."""
    db = runtime(server).store.db
    wheres = {
        "1": "idx_events_ts",
        "kind = 'access'": "idx_events_kind_ts",
        "centre_id = 'boitron'": "idx_events_centre_id_ts",
        "centre_id = 'b' AND kind = 'room'": "idx_events_centre_id_kind_ts",
        "centre_id = 'b' AND door = 'entree'": "idx_events_centre_id_door_ts",  # one door
        "granted = 0": "idx_events_granted_ts",  # refused cards
        "reason = 'revoked'": "idx_events_reason_ts",  # the rule behind a decision
    }
    for where, index in wheres.items():
        plan = " ".join(
            row[-1]
            for row in db.execute(
                f"EXPLAIN QUERY PLAN SELECT * FROM events WHERE {where}"
                " AND (ts, id) < (1e10, 5) ORDER BY ts DESC, id DESC LIMIT 100"
            ).fetchall()
        )
        assert f"INDEX {index} " in plan + " ", (where, plan)
        assert "TEMP B-TREE" not in plan, (where, plan)
