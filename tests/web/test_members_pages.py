"""The Membres pages through the real app (no browser): search, create, change, badges,
roles. The browser tests (test_members_browser.py) drive the same pages in Chromium."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from protocol.badges import badge_hash, parse_uid


def setup_centres(admin: TestClient) -> None:
    for cid, name in (("belleme", "Bellême"),):
        assert admin.post("/api/centres", json={"id": cid, "name": name}).status_code == 201


def test_admin_creates_a_member_and_finds_them_by_name_email_and_badge(
    login_client: Callable[..., TestClient], badge_key: bytes
) -> None:
    admin = login_client("alice", role="admin")
    setup_centres(admin)
    answer = admin.post(
        "/members",
        data={"name": "Jeanne Dupont", "email": "jeanne@exemple.fr", "centres": "boitron"},
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 200, answer.text
    location = answer.headers["HX-Redirect"]
    page = admin.get(location)
    assert "Jeanne Dupont" in page.text and "Membre créé." in page.text
    member_id = int(location.split("/")[2].split("?")[0])
    enrolled = admin.post(
        f"/members/{member_id}/badges", data={"enrol_uid": "04:A1:B2:C3", "enrol_label": "bleu"}
    )
    assert "Badge enregistré" in enrolled.text
    for query in ("dupont", "JEANNE@", "04:a1:b2:c3"):
        found = admin.get("/members", params={"q": query})
        assert f'href="/members/{member_id}"' in found.text, query
    assert 'href="/members/' not in admin.get("/members", params={"q": "zzz"}).text
    hashed = badge_hash(badge_key, parse_uid("04:A1:B2:C3"))
    assert admin.get(f"/api/members/{member_id}").json()["badges"][0]["badge_hash"] == hashed


def test_a_bad_form_names_each_wrong_field_and_creates_nobody(
    login_client: Callable[..., TestClient],
) -> None:
    admin = login_client("alice", role="admin")
    setup_centres(admin)
    answer = admin.post(
        "/members", data={"name": "", "email": "pas-un-mail", "valid_from": "2026-13-01"}
    )
    assert answer.status_code == 200
    assert 'aria-invalid="true"' in answer.text
    assert "date attendue" in answer.text
    assert "choisissez au moins un centre" in answer.text
    assert admin.get("/api/members").json()["total"] == 0


def test_a_viewer_sees_members_but_no_button_and_cannot_post(
    login_client: Callable[..., TestClient],
) -> None:
    admin = login_client("alice", role="admin")
    setup_centres(admin)
    member = admin.post("/api/members", json={"name": "Paul", "centres": ["boitron"]}).json()
    viewer = login_client("victor", role="viewer")
    page = viewer.get(f"/members/{member['id']}")
    assert "Paul" in page.text
    assert "<button" not in page.text.split('id="content"')[1]
    assert "Nouveau membre" not in viewer.get("/members").text
    refused = viewer.post(f"/members/{member['id']}/suspend", data={"reason": "test"})
    assert refused.status_code == 403 and "lecture seule" in refused.text
    assert admin.get(f"/api/members/{member['id']}").json()["active"] is True


def test_a_manager_sees_only_their_centres_members(
    login_client: Callable[..., TestClient],
) -> None:
    admin = login_client("alice", role="admin")
    setup_centres(admin)
    mine = admin.post("/api/members", json={"name": "Mine", "centres": ["boitron"]}).json()
    other = admin.post("/api/members", json={"name": "Autre", "centres": ["belleme"]}).json()
    manager = login_client("marc", role="manager", centres=["boitron"])
    listing = manager.get("/members").text
    assert "Mine" in listing and "Autre" not in listing
    assert manager.get(f"/members/{other['id']}").status_code == 404
    assert "Suspendre" in manager.get(f"/members/{mine['id']}").text


def test_export_and_erase_are_for_admins_and_erase_wants_the_id_again(
    login_client: Callable[..., TestClient],
) -> None:
    admin = login_client("alice", role="admin")
    member = admin.post(
        "/api/members", json={"name": "Éloïse Oubli", "centres": ["boitron"]}
    ).json()
    manager = login_client("marc", role="manager", centres=["boitron"])
    page = manager.get(f"/members/{member['id']}").text
    assert "Effacer" not in page and "export.json" not in page
    assert manager.get(f"/members/{member['id']}/export.json").status_code == 403
    exported = admin.get(f"/members/{member['id']}/export.json")
    assert exported.headers["content-disposition"].startswith("attachment")
    assert exported.json()["member"]["name"] == "Éloïse Oubli"
    wrong = admin.post(f"/members/{member['id']}/erase", data={"confirm": "999"})
    assert f"retapez le numéro du membre ({member['id']})" in wrong.text
    assert admin.get(f"/api/members/{member['id']}").status_code == 200
    refused = manager.post(f"/members/{member['id']}/erase", data={"confirm": str(member["id"])})
    assert refused.status_code == 403 and "réservé aux administrateurs" in refused.text
    erased = admin.post(
        f"/members/{member['id']}/erase",
        data={"confirm": str(member["id"])},
        headers={"HX-Request": "true"},
    )
    assert erased.headers["HX-Redirect"] == f"/members?erased={member['id']}"
    assert admin.get(f"/api/members/{member['id']}").status_code == 404
    assert f"Membre {member['id']} effacé." in admin.get(erased.headers["HX-Redirect"]).text


def test_plans_are_given_and_ended_from_the_page(
    login_client: Callable[..., TestClient],
) -> None:
    admin = login_client("alice", role="admin")
    plan = admin.post(
        "/api/plans", json={"name": "Carnet 10 jours", "kind": "day_pass", "days": 10}
    ).json()
    member = admin.post("/api/members", json={"name": "Paul", "centres": ["boitron"]}).json()
    page = admin.get(f"/members/{member['id']}").text
    assert "Carnet 10 jours (10 jours)" in page
    given = admin.post(f"/members/{member['id']}/plans", data={"plan_id": str(plan["id"])})
    assert "Formule attribuée." in given.text
    held = admin.get(f"/api/members/{member['id']}/plans").json()
    assert [h["days_left"] for h in held] == [10]
    bad = admin.post(
        f"/members/{member['id']}/plans",
        data={"plan_id": str(plan["id"]), "valid_from": "2026-05-02", "valid_until": "2026-05-01"},
    )
    assert "valid_until must not be before valid_from" in bad.text
    ended = admin.post(f"/members/{member['id']}/plans/{held[0]['id']}/end")
    assert "Formule terminée." in ended.text
    assert admin.get(f"/api/members/{member['id']}/plans").json()[0]["ended_at"] is not None
