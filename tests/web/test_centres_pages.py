"""The Centres pages through the real app (no browser): hours, closures, rooms, doors,
roles, and a remote unlock showing what the unit really answered."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.conftest import wait_until


def test_hours_closures_and_rooms_are_saved_and_shown(
    login_client: Callable[..., TestClient],
) -> None:
    admin = login_client("alice", role="admin")
    form = {f"d{d}s0_start": "08:30" for d in range(5)} | {f"d{d}s0_end": "18:00" for d in range(5)}
    saved = admin.post("/centres/boitron/hours", data=form)
    assert "Horaires enregistrés" in saved.text
    hours = admin.get("/api/centres/boitron").json()["hours"]
    assert hours == [[[510, 1080]]] * 5 + [[], []]
    bad = admin.post("/centres/boitron/hours", data={"d0s0_start": "18:00", "d0s0_end": "08:00"})
    assert "ouverture avant fermeture" in bad.text
    assert admin.get("/api/centres/boitron").json()["hours"] == hours
    added = admin.post(
        "/centres/boitron/closures",
        data={"start_date": "2026-12-24", "end_date": "2026-12-26", "reason": "Noël"},
    )
    assert "Fermeture ajoutée." in added.text and "2026-12-24 → 2026-12-26 (Noël)" in added.text
    reversed_ = admin.post(
        "/centres/boitron/closures", data={"start_date": "2026-12-24", "end_date": "2026-12-01"}
    )
    assert "end_date is before start_date" in reversed_.text
    room = admin.post("/centres/boitron/rooms", data={"room_id": "visio", "name": "Salle visio"})
    assert "Salle enregistrée." in room.text and "Salle visio" in room.text
    assert admin.post("/centres/boitron/rooms", data={"room_id": "Visio!", "name": "x"}).text.count(
        'class="error"'
    )


def test_a_viewer_reads_a_centre_without_any_button(
    login_client: Callable[..., TestClient],
) -> None:
    viewer = login_client("victor", role="viewer")
    page = viewer.get("/centres/boitron")
    assert page.status_code == 200 and "Boitron" in page.text
    assert "<button" not in page.text.split('id="content"')[1]
    refused = viewer.post("/centres/boitron/closures", data={"start_date": "2026-12-24"})
    assert refused.status_code == 403 and "lecture seule" in refused.text


def test_a_manager_does_not_see_other_centres(
    login_client: Callable[..., TestClient],
) -> None:
    admin = login_client("alice", role="admin")
    admin.post("/api/centres", json={"id": "belleme", "name": "Bellême"})
    manager = login_client("marc", role="manager", centres=["boitron"])
    assert "Bellême" not in manager.get("/centres").text
    assert manager.get("/centres/belleme").status_code == 404


def test_remote_unlock_shows_the_units_answer_and_offline(
    login_client: Callable[..., TestClient], make_unit: Callable[..., object]
) -> None:
    admin = login_client("alice", role="admin")
    assert (
        "Unité hors ligne"
        in admin.post(
            "/centres/units/boitron-01/unlock", data={"door": "entree", "reason": "livraison"}
        ).text
    )
    make_unit()
    runtime = admin.app.state.runtime  # type: ignore[attr-defined]
    wait_until(lambda: runtime.store.device("boitron-01")["state"] == "online", what="online")
    page = admin.get("/centres/boitron")
    assert "entree" in page.text
    opened = admin.post(
        "/centres/units/boitron-01/unlock", data={"door": "entree", "reason": "livraison"}
    )
    assert "Porte ouverte" in opened.text
    missing = admin.post("/centres/units/boitron-01/unlock", data={"door": "entree"})
    assert "obligatoire" in missing.text


def test_lockdown_and_release_show_the_units_answer(
    login_client: Callable[..., TestClient], make_unit: Callable[..., object]
) -> None:
    admin = login_client("alice", role="admin")
    unit = make_unit()
    runtime = admin.app.state.runtime  # type: ignore[attr-defined]
    wait_until(lambda: runtime.store.device("boitron-01")["state"] == "online", what="online")
    locked = admin.post("/centres/units/boitron-01/lockdown", data={"reason": "exercice"})
    assert "Confinement en place" in locked.text
    assert unit.lockdown is True  # type: ignore[attr-defined]
    released = admin.post("/centres/units/boitron-01/release", data={"reason": "fin"})
    assert "Confinement levé" in released.text
    assert unit.lockdown is False  # type: ignore[attr-defined]
    admin.post("/api/centres", json={"id": "belleme", "name": "Bellême"})
    manager = login_client("marc", role="manager", centres=["belleme"])
    hidden = manager.post("/centres/units/boitron-01/lockdown", data={"reason": "x"})
    assert hidden.status_code == 404 and "no unit 'boitron-01'" in hidden.text
    assert unit.lockdown is False  # type: ignore[attr-defined]
