"""Membres in a real browser: enrol a card just tapped at the door, replace a lost badge,
and a whole task done with the keyboard alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from edge.agent import EdgeAgent
from protocol.badges import badge_hash
from protocol.messages import ACTIVE, REVOKED
from tests.conftest import wait_until
from tests.web.conftest import LiveServer, enrol, screenshot


def listed(unit: EdgeAgent, hashed: str, state: int = ACTIVE) -> Callable[[], bool]:
    def check() -> bool:
        entry = unit.access.entry(hashed)
        return entry is not None and entry.state == state

    return check


def test_an_unknown_card_tapped_at_the_door_is_enrolled_and_then_opens(
    new_page: Callable[..., Any], live_server: LiveServer, unit: EdgeAgent
) -> None:
    member = live_server.api.post(
        "/api/members", json={"name": "Bérénice Lefèvre", "centres": ["boitron"]}
    ).json()
    page = new_page("manager")
    page.goto(f"/members/{member['id']}")
    expect(page.locator("h1")).to_contain_text("Bérénice Lefèvre")

    card = bytes.fromhex("04b0b1b2b3")
    hashed = badge_hash(live_server.key, card)
    assert unit.badge("entree", card).granted is False  # a card nobody enrolled yet
    wait_until(
        lambda: any(c["badge_hash"] == hashed for c in live_server.store.unknown_cards()),
        what="the server to record the unknown card",
    )
    page.get_by_role("button", name="Actualiser les cartes présentées").last.click()
    tapped = page.locator(f"#taps-enrol input[value='{hashed}']")
    expect(tapped).to_be_visible()
    expect(page.locator("#taps-enrol")).to_contain_text("porte « entree »")
    tapped.check()
    page.get_by_label("Étiquette", exact=True).fill("carte verte")
    page.get_by_role("button", name="Enregistrer le badge").click()
    expect(page.locator("#outcome")).to_contain_text("Badge enregistré")
    expect(page.locator("#badges-title + table")).to_contain_text("carte verte")
    screenshot(page, "members")

    wait_until(listed(unit, hashed), what="the unit's list with the enrolled card")
    opened = unit.badge("entree", card)
    assert opened.granted is True and opened.member_id == member["id"]
    assert page.script_errors == []


def test_a_lost_badge_is_revoked_and_replaced_in_one_step(
    new_page: Callable[..., Any], live_server: LiveServer, unit: EdgeAgent
) -> None:
    lost = bytes.fromhex("04c1c2c3c4")
    member_id = enrol(live_server, unit, "Octave Perdu", lost)
    assert unit.badge("entree", lost).granted is True
    page = new_page("admin")
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"/members/{member_id}")
    page.get_by_text("Badge perdu…").click()
    page.get_by_label("ou UID de la nouvelle carte").fill("04:D1:D2:D3:D4")
    page.get_by_label("Étiquette du nouveau badge").fill("remplaçante")
    page.get_by_role("button", name="Révoquer et remplacer").click()
    expect(page.locator("#outcome")).to_contain_text(
        "Badge perdu révoqué et nouveau badge enregistré."
    )
    badges = page.locator("#badges-title + table")
    expect(badges).to_contain_text("révoqué le")
    expect(badges).to_contain_text("remplaçante")

    old_hash = badge_hash(live_server.key, lost)
    new_card = bytes.fromhex("04d1d2d3d4")
    wait_until(listed(unit, old_hash, REVOKED), what="the unit's list revoking the card")
    denied = unit.badge("entree", lost)
    assert denied.granted is False and denied.reason == "revoked"
    wait_until(listed(unit, badge_hash(live_server.key, new_card)), what="the new card listed")
    assert unit.badge("entree", new_card).granted is True
    assert page.script_errors == []


def tab_to(page: Any, selector: str, limit: int = 120) -> None:
    """Press Tab until ``selector`` has the focus (as a keyboard user would)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} never got the focus by Tab")


def focus_ring(page: Any) -> str:
    return page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return s.outlineStyle + ' ' + s.outlineWidth; }"
    )


def test_create_search_and_suspend_a_member_with_the_keyboard_only(
    new_page: Callable[..., Any], live_server: LiveServer
) -> None:
    page = new_page("admin")
    page.goto("/members")
    tab_to(page, "#new-name")
    assert focus_ring(page).startswith("solid"), "the focused field shows no focus ring"
    page.keyboard.type("Clavier Seul")
    tab_to(page, "#new-email")
    page.keyboard.type("clavier@exemple.fr")
    page.keyboard.press("Enter")
    expect(page.locator("#outcome")).to_contain_text("Membre créé.")
    expect(page.locator("h1")).to_contain_text("Clavier Seul")

    tab_to(page, "#suspend-reason")
    assert focus_ring(page).startswith("solid")
    page.keyboard.type("impayé")
    page.keyboard.press("Enter")
    expect(page.locator("#outcome")).to_contain_text("Membre suspendu")
    expect(page.locator("h1")).to_contain_text("suspendu")

    page.goto("/members")
    tab_to(page, "#q")
    page.keyboard.type("clavier@")
    page.keyboard.press("Enter")
    expect(page.locator("#results")).to_contain_text("Clavier Seul")
    screenshot(page, "members-search")
    tab_to(page, "#results a")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("Clavier Seul")
    assert page.script_errors == []


def test_a_viewer_sees_members_in_english_and_no_button(
    new_page: Callable[..., Any], live_server: LiveServer
) -> None:
    page = new_page("viewer", lang="en")
    page.goto("/members")
    expect(page.locator("h1")).to_have_text("Members")
    expect(page.get_by_label("Name, e-mail or badge")).to_be_visible()
    expect(page.locator("#new-title")).to_have_count(0)
    assert page.script_errors == []
