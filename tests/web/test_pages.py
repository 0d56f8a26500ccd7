"""The operators' pages in a real browser: roles, events, fleet and alarms, the audit log,
the language switch and a task done with the keyboard alone."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from edge.agent import EdgeAgent
from server.auth import service
from tests.conftest import TEST_PASSWORD, wait_until
from tests.web.conftest import LOGINS, LiveServer, enrol, force_door, log_in, screenshot

BRUNO = bytes.fromhex("04b0b0b0")
STRANGER = bytes.fromhex("0badcafe")


def nav_labels(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("header nav a").all_inner_texts()]


def test_each_role_sees_what_its_role_allows(
    new_page: Callable[..., Any], live_server: LiveServer, unit: EdgeAgent
) -> None:
    force_door(live_server, unit)  # an alarm to act on (or not)

    admin = new_page("admin")
    assert nav_labels(admin) == [
        "En direct",
        "Événements",
        "Membres",
        "Centres",
        "Parc",
        "Rapports",
        "Journal",
    ]
    expect(admin.locator("#centre-belleme")).to_be_visible()
    admin.goto("/fleet")
    expect(admin.get_by_role("button", name="Acquitter").first).to_be_visible()

    manager = new_page("manager")
    assert "Journal" not in nav_labels(manager)
    expect(manager.locator("#centre-boitron")).to_be_visible()
    expect(manager.locator("#centre-belleme")).to_have_count(0)
    manager.goto("/fleet")
    expect(manager.locator("#units [data-unit=boitron-01]")).to_be_visible()
    expect(manager.locator("#units [data-unit=belleme-01]")).to_have_count(0)
    expect(manager.get_by_role("button", name="Acquitter").first).to_be_visible()
    answer = manager.goto("/journal")
    assert answer.status == 403
    expect(manager.locator("h1 + p")).to_contain_text("réservé aux administrateurs")

    viewer = new_page("viewer")
    expect(viewer.locator("#centre-belleme")).to_be_visible()
    viewer.goto("/fleet")
    expect(viewer.locator("#alarm-table [data-alarm]").first).to_be_visible()
    expect(viewer.locator("main button")).to_have_count(0)  # a viewer sees no button
    screenshot(viewer, "fleet-viewer")

    # Logging out ends the session: the pages send the browser back to the login form.
    viewer.get_by_role("button", name="Se déconnecter").click()
    viewer.wait_for_url("**/login")
    viewer.goto("/fleet")
    expect(viewer).to_have_url(live_server.url + "/login?next=/fleet")
    for page in (admin, manager, viewer):
        assert page.script_errors == []


def test_a_wrong_password_is_refused_and_the_right_one_goes_to_the_page_asked(
    new_page: Callable[..., Any], live_server: LiveServer
) -> None:
    page = new_page()
    page.goto("/events")
    expect(page).to_have_url(live_server.url + "/login?next=/events")
    page.locator("#username").fill(LOGINS["viewer"])
    page.locator("#password").fill("not the password")
    page.locator("form button[type=submit]").click()
    expect(page.locator("#error")).to_have_text("identifiant ou mot de passe incorrect")
    screenshot(page, "login")
    page.locator("#password").fill(TEST_PASSWORD)
    page.locator("form button[type=submit]").click()
    expect(page).to_have_url(live_server.url + "/events")


def test_acknowledge_an_alarm_and_find_it_in_the_audit_log(
    new_page: Callable[..., Any], live_server: LiveServer, unit: EdgeAgent
) -> None:
    alarm_id = force_door(live_server, unit)
    page = new_page("admin")
    page.goto("/fleet")
    row = page.locator(f"#alarm-table [data-alarm='{alarm_id}']")
    expect(row).to_contain_text("porte forcée (entree)")
    screenshot(page, "fleet")
    row.get_by_role("button", name="Acquitter").click()
    expect(page.locator("#alarm-notice")).to_have_text(f"Alarme n°{alarm_id} acquittée.")
    expect(page.locator(f"[data-alarm='{alarm_id}']")).to_have_count(0)  # closed and seen
    stored = live_server.store.alarm(alarm_id)
    assert stored["acknowledged_by"] == LOGINS["admin"]

    page.goto("/journal")
    page.locator("#j-action").fill("alarm.acknowledged")
    page.locator("form.filters button[type=submit]").click()
    expect(page.locator("#audit-table tbody tr").first).to_contain_text(f"alarm {alarm_id}")
    screenshot(page, "journal")


def test_filter_events_page_through_them_and_export_csv(
    new_page: Callable[..., Any], live_server: LiveServer, unit: EdgeAgent
) -> None:
    enrol(live_server, unit, "Bruno Lefèvre", BRUNO)
    total_before, _ = live_server.store.events(kind="access", granted=False)
    unit.badge("entree", STRANGER)
    unit.badge("entree", BRUNO)
    wait_until(
        lambda: live_server.store.events(kind="access", granted=False)[0] > total_before,
        what="the refusal stored",
    )
    wait_until(lambda: live_server.store.events(member_name="Bruno")[0] >= 1, what="Bruno's entry")
    page = new_page("manager")
    page.goto("/events")
    page.locator("#f-decision").select_option("denied")
    page.locator("#f-reason").select_option("unknown_card")
    page.locator("form.filters button[type=submit]").click()
    rows = page.locator("#events-table tbody tr")
    expect(rows.first).to_contain_text("refusé (carte inconnue)")
    for text in rows.all_inner_texts():
        assert "carte inconnue" in text
    screenshot(page, "events")
    with page.expect_download() as download:
        page.get_by_role("link", name="Exporter en CSV").click()
    with open(download.value.path(), encoding="utf-8") as f:
        exported = list(csv.DictReader(io.StringIO(f.read())))
    assert exported and {r["decision"] for r in exported} == {"denied"}
    assert {r["reason"] for r in exported} == {"unknown_card"}
    assert len(exported) == live_server.store.events(granted=False, reason="unknown_card")[0]

    page.locator("#f-decision").select_option("")
    page.locator("#f-reason").select_option("")
    page.locator("#f-member").fill("bruno")
    page.locator("form.filters button[type=submit]").click()
    expect(rows.first).to_contain_text("entrée — Bruno Lefèvre")

    page.locator("#f-since").fill("2026-12-31")
    page.locator("#f-until").fill("2026-01-01")
    page.locator("form.filters button[type=submit]").click()
    expect(page.get_by_role("alert").filter(has_text="avant la date")).to_be_visible()


def test_switch_language(new_page: Callable[..., Any], live_server: LiveServer) -> None:
    page = new_page("viewer")
    page.get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("h1")).to_have_text("Live")
    assert nav_labels(page)[:2] == ["Live", "Events"]
    expect(page.locator("#feed-title")).to_have_text("Latest events")
    page.goto("/fleet")
    expect(page.locator("h1")).to_have_text("Fleet")
    screenshot(page, "fleet-english")
    page.get_by_role("link", name="Français").click()
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.locator("h1")).to_have_text("Parc")


def tab_to(page: Any, selector: str, *, most: int = 80) -> None:
    """Press Tab until ``selector`` has the focus (and fail after ``most`` presses)."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate(f"document.activeElement.matches({selector!r})"):
            return
    raise AssertionError(f"{selector} was never reached with Tab")


def test_acknowledge_an_alarm_with_the_keyboard_alone(
    new_page: Callable[..., Any], live_server: LiveServer, unit: EdgeAgent
) -> None:
    alarm_id = force_door(live_server, unit)
    page = new_page()
    page.goto("/login")
    page.keyboard.type(LOGINS["manager"])  # the login field has the focus
    tab_to(page, "#password")
    page.keyboard.type(TEST_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(live_server.url + "/")
    tab_to(page, "header nav a[href='/fleet']")
    page.keyboard.press("Enter")
    page.wait_for_url(live_server.url + "/fleet")
    button = f"[data-alarm='{alarm_id}'] button"
    tab_to(page, button)
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), "the focused button shows no focus ring"
    page.keyboard.press("Enter")
    notice = page.locator("#alarm-notice")
    expect(notice).to_have_text(f"Alarme n°{alarm_id} acquittée.")
    expect(notice).to_be_focused()  # the keyboard user is told, and not left nowhere
    assert live_server.store.alarm(alarm_id)["acknowledged_by"] == LOGINS["manager"]


def test_change_ones_password(new_page: Callable[..., Any], live_server: LiveServer) -> None:
    service.create_operator(
        live_server.store,
        login="camille",
        name="Camille",
        role="viewer",
        centres=None,
        password=TEST_PASSWORD,
        actor="cli",
        address=None,
        now=time.time(),
    )
    page = new_page()
    log_in(page, "camille")
    page.get_by_role("link", name="Mot de passe").click()
    new_password = "un tout autre mot de passe"
    page.locator("#current").fill("pas le bon mot de passe")
    page.locator("#new").fill(new_password)
    page.locator("#confirm").fill(new_password)
    page.get_by_role("button", name="Changer le mot de passe").click()
    expect(page.locator("#password-result")).to_have_text("mot de passe actuel incorrect")
    page.locator("#current").fill(TEST_PASSWORD)
    page.locator("#confirm").fill(new_password + "!")
    page.get_by_role("button", name="Changer le mot de passe").click()
    expect(page.locator("#password-result")).to_contain_text("ne correspond pas")
    page.locator("#confirm").fill(new_password)
    page.get_by_role("button", name="Changer le mot de passe").click()
    expect(page.locator("#password-result")).to_contain_text("Mot de passe changé")
    screenshot(page, "password")

    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url("**/login")
    log_in(page, "camille", new_password)
    expect(page.locator("h1")).to_have_text("En direct")
