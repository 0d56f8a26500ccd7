"""Centres in a real browser: a door opened remotely shows what the unit answered, and
the same button on a unit gone offline says so; the hours saved reach the unit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory
from playwright.sync_api import expect

from edge import config as edge_config
from edge.agent import EdgeAgent
from edge.hardware.build import build
from tests.conftest import unit_toml, wait_until
from tests.edge.support import CONTACT_PIN
from tests.web.conftest import LiveServer, screenshot


def state_of(live_server: LiveServer, device_id: str) -> str | None:
    return live_server.store.device(device_id).get("state")


@pytest.fixture
def belleme_unit(live_server: LiveServer, tmp_path: Path) -> Iterator[EdgeAgent]:
    """A second simulated unit, ``belleme-01``, that the test may switch off."""
    conf = tmp_path / "belleme.toml"
    conf.write_text(
        unit_toml(
            broker=live_server.broker,
            key_file=live_server.runtime.settings.badge_key_file,
            data_dir=tmp_path / "unit",
            server_key=live_server.runtime.signer.public_hex,
            device_id="belleme-01",
            centre="belleme",
        )
    )
    cfg = edge_config.load(conf)
    factory = MockFactory()
    factory.pin(CONTACT_PIN).drive_low()
    agent = EdgeAgent(cfg, build(cfg, pin_factory=factory), synced=lambda: True)
    agent.start()
    wait_until(lambda: state_of(live_server, "belleme-01") == "online", what="belleme-01 online")
    try:
        yield agent
    finally:
        agent.stop()


def test_remote_unlock_shows_the_units_answer_then_unit_offline(
    new_page: Callable[..., Any], live_server: LiveServer, belleme_unit: EdgeAgent
) -> None:
    page = new_page("admin")
    page.goto("/centres/belleme")
    row = page.locator("tr", has_text="belleme-01").filter(has=page.locator("form")).first
    expect(row).to_contain_text("en ligne")
    row.get_by_label("Motif").fill("livraison de ramettes")
    row.get_by_role("button", name="Ouvrir « entree »").click()
    result = row.locator(".result")
    expect(result).to_contain_text("Porte ouverte : le boîtier l'a confirmé.")
    command = live_server.api.get("/api/audit", params={"action": "door.unlock"}).json()
    assert any(
        e["after"]["device_id"] == "belleme-01" and e["after"]["result"] == "executed"
        for e in command["items"]
    )
    screenshot(page, "centres")

    belleme_unit.stop()
    wait_until(lambda: state_of(live_server, "belleme-01") == "offline", what="belleme-01 off")
    row.get_by_label("Motif").fill("livraison, encore")
    row.get_by_role("button", name="Ouvrir « entree »").click()
    expect(result).to_contain_text("Unité hors ligne")
    expect(result).not_to_contain_text("Porte ouverte")
    assert page.script_errors == []


def test_hours_saved_on_the_page_reach_the_centre(
    new_page: Callable[..., Any], live_server: LiveServer
) -> None:
    before = live_server.api.get("/api/centres/boitron").json().get("hours")
    page = new_page("manager")  # boitron's manager
    page.goto("/centres/boitron")
    try:
        page.get_by_label("Ouvert 24 h/24, 7 j/7").uncheck()
        page.get_by_label("Samedi, ouverture 1").fill("09:00")
        page.locator("#d5s0_end").fill("12:30")
        page.get_by_role("button", name="Enregistrer les horaires").click()
        expect(page.locator("#outcome")).to_contain_text("Horaires enregistrés")
        hours = live_server.api.get("/api/centres/boitron").json()["hours"]
        assert hours[5] == [[540, 750]] and hours[0] == []
    finally:  # the other browser tests badge at boitron at any hour
        live_server.api.patch("/api/centres/boitron", json={"hours": before})
    page.goto("/centres")
    expect(page.locator("main")).not_to_contain_text("Bellême")  # not this manager's
    screenshot(page, "centres-list")
    assert page.script_errors == []
