"""En direct in a real browser: live updates over SSE, the broker banner, the map."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from edge.agent import EdgeAgent
from tests.conftest import wait_until
from tests.web.conftest import LiveServer, enrol, screenshot

ALICE = bytes.fromhex("04a1b2c3")


def test_a_badge_shows_on_the_live_page_without_reloading(
    new_page: Callable[..., Any], live_server: LiveServer, unit: EdgeAgent
) -> None:
    enrol(live_server, unit, "Alice Martin", ALICE)
    page = new_page("viewer")
    page.goto("/")
    card = page.locator("#centre-boitron")
    expect(card.locator("[data-present]")).to_have_text("0")
    expect(card.locator("[data-unit=boitron-01]")).to_contain_text("en ligne")
    page.evaluate("window.notReloaded = true")

    unit.badge("entree", ALICE)

    expect(card.locator("[data-present]")).to_have_text("1")
    expect(card).to_contain_text("Alice Martin")
    expect(page.locator("#feed")).to_contain_text("entrée — Alice Martin (entree)")
    expect(page.locator("#announce")).to_contain_text("Alice Martin")
    assert page.evaluate("window.notReloaded") is True, "the page was reloaded"
    # The map places both centres by their coordinates, inside the Orne's outline.
    sites = page.locator(".map .site-group")
    expect(sites).to_have_count(2)
    assert page.locator(".map path.outline").get_attribute("d").startswith("M")
    screenshot(page, "live", readme=True)
    page.set_viewport_size({"width": 768, "height": 1024})  # a tablet, upright
    expect(card).to_be_visible()
    screenshot(page, "live-tablet")
    assert page.script_errors == []

    unit.badge("entree", ALICE)  # toggle: on the way out
    expect(card.locator("[data-present]")).to_have_text("0")


def test_broker_lost_shows_a_banner_and_units_unknown(
    new_page: Callable[..., Any], live_server: LiveServer, unit: EdgeAgent
) -> None:
    page = new_page("admin")
    page.goto("/")
    unit_line = page.locator("#centre-boitron [data-unit=boitron-01]")
    expect(unit_line).to_contain_text("en ligne")
    expect(page.locator("[data-broker=lost]")).to_have_count(0)
    broker = live_server.broker
    broker.stop()
    try:
        banner = page.locator("[data-broker=lost]")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("perdu le courtier")
        expect(unit_line).to_contain_text("inconnu")
        expect(unit_line).not_to_contain_text("en ligne")
        screenshot(page, "live-broker-lost")
    finally:
        broker.start()
    wait_until(live_server.runtime.bridge.connected.is_set, what="the server back on the broker")
    expect(page.locator("[data-broker=lost]")).to_have_count(0)
    expect(unit_line).to_contain_text("en ligne", timeout=20_000)
