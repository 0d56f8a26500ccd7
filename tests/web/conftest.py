"""Browser tests: Debian's Chromium, driven by Playwright, against the real server.

One of each for the whole session (they are slow to start and safe to share): a private
mosquitto, the real app served by uvicorn on a free 127.0.0.1 port with its SQLite file,
a simulated unit (the real edge agent on MockFactory pins, its fake card reader) for
centre ``boitron``, and one Chromium. Each test gets a new browser context (its own
cookies) logged in through the login form.

Playwright comes from PyPI and never downloads a browser: it starts ``/usr/bin/chromium``
(``make setup`` installs Debian's package when it is missing and we are root). Without it
these tests skip and say why. Screenshots go to ``tests/web/artefacts/``.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gpiozero.pins.mock import MockFactory

from edge import config as edge_config
from edge.agent import EdgeAgent
from edge.hardware.build import build
from protocol.badges import badge_hash
from protocol.messages import ACTIVE
from protocol.signing import Signer
from server.app import create_app
from server.auth import service
from server.broker import LocalBroker
from server.runtime import Runtime
from server.settings import Settings
from tests.conftest import TEST_PASSWORD, TEST_UNITS, unit_toml, wait_until
from tests.edge.support import CONTACT_PIN

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTEFACTS = Path(__file__).parent / "artefacts"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Where the centres are (their town's coordinates, WGS84): the map places them.
CENTRES = {
    "boitron": ("Télécentre de Boitron", 48.5667, 0.2333, 12),
    "belleme": ("Télécentre de Bellême", 48.3753, 0.5592, 8),
}
LOGINS = {"admin": "admin", "manager": "gerante", "viewer": "lecteur"}


def playwright_or_skip() -> Any:
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: `make setup` installs Debian's chromium as root "
            "(apt-get install chromium)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (`make setup` installs it from PyPI)")
    return sync_playwright


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    """The real app under uvicorn, in a thread of this process; ``api`` calls the same
    app's JSON API as the admin (for a test's preparations)."""

    url: str
    runtime: Runtime
    broker: LocalBroker
    key: bytes
    api: TestClient
    app: FastAPI

    @property
    def store(self) -> Any:
        return self.runtime.store


@pytest.fixture(scope="session")
def web_broker() -> Iterator[LocalBroker]:
    with LocalBroker(units=TEST_UNITS) as running:
        yield running


@pytest.fixture(scope="session")
def web_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("web")


@pytest.fixture(scope="session")
def live_server(web_broker: LocalBroker, web_dir: Path) -> Iterator[LiveServer]:
    import uvicorn

    key_file = web_dir / "badge.key"
    key_file.write_text(secrets.token_hex(32))
    Signer.generate().write(web_dir / "signing.key")
    settings = Settings(
        data_dir=web_dir / "server",
        badge_key_file=key_file,
        signing_key_file=web_dir / "signing.key",
        **web_broker.server_settings(),
    )
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, name="web-test-server", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30, what="uvicorn to start")
    runtime: Runtime = app.state.runtime
    wait_until(runtime.bridge.receiving, what="server receiving from the broker")
    seed(runtime)
    try:
        # Without ``with``: no second lifespan, the routes run on the running app's runtime.
        api = TestClient(app, headers={"Authorization": f"Bearer {admin_token(runtime)}"})
        yield LiveServer(
            f"http://127.0.0.1:{port}",
            runtime,
            web_broker,
            bytes.fromhex(key_file.read_text()),
            api,
            app,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def seed(runtime: Runtime) -> None:
    """Two centres placed on the map, their units, and one operator of each role."""
    store, now = runtime.store, time.time()
    for centre_id, (name, lat, lon, capacity) in CENTRES.items():
        store.create_centre(centre_id, name)
        store.update_centre(centre_id, {"lat": lat, "lon": lon, "capacity": capacity})
    for device_id, centre_id in TEST_UNITS.items():
        store.assign_device(device_id, centre_id)
    for role, login in LOGINS.items():
        service.create_operator(
            store,
            login=login,
            name={"admin": "Anne Admin", "manager": "Gérard Gérant", "viewer": "Valérie Vue"}[role],
            role=role,
            centres=["boitron"] if role == "manager" else None,
            password=TEST_PASSWORD,
            actor="cli",
            address=None,
            now=now,
        )


@pytest.fixture(scope="session")
def unit(live_server: LiveServer, web_broker: LocalBroker, web_dir: Path) -> Iterator[EdgeAgent]:
    """The simulated unit ``boitron-01``: the real agent, fake reader, MockFactory pins."""
    conf = web_dir / "unit.toml"
    conf.write_text(
        unit_toml(
            broker=web_broker,
            key_file=live_server.runtime.settings.badge_key_file,
            data_dir=web_dir / "unit",
            server_key=live_server.runtime.signer.public_hex,
        )
    )
    cfg = edge_config.load(conf)
    factory = MockFactory()
    agent = EdgeAgent(cfg, build(cfg, pin_factory=factory), synced=lambda: True)
    agent.start()
    factory.pin(CONTACT_PIN).drive_low()  # the door is shut
    wait_until(
        lambda: (
            (live_server.store.fleet(device_id="boitron-01") or [({},)])[0][0].get("state")
            == "online"
        ),
        what="the unit online",
    )
    try:
        yield agent
    finally:
        agent.stop()


def admin_token(runtime: Runtime) -> str:
    operator = runtime.store.operator_by_login(LOGINS["admin"])
    token, _ = service.create_token(
        runtime.store,
        runtime.settings,
        operator,
        name="browser tests",
        days=1,
        actor="cli",
        address=None,
        now=time.time(),
    )
    return token


def enrol(live_server: LiveServer, unit: EdgeAgent, name: str, uid: bytes) -> int:
    """A member of boitron with a badge (through the API), once the unit's list holds it;
    the member's id."""
    api = live_server.api
    member = api.post("/api/members", json={"name": name, "centres": ["boitron"]})
    assert member.status_code == 201, member.text
    member_id = member.json()["id"]
    badge = api.post(f"/api/members/{member_id}/badges", json={"uid": uid.hex()})
    assert badge.status_code == 201, badge.text
    hashed = badge_hash(live_server.key, uid)

    def listed() -> bool:
        entry = unit.access.entry(hashed)
        return entry is not None and entry.state == ACTIVE

    wait_until(listed, what="the unit's list with the new badge")
    return member_id


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One Chromium for the session (a new empty profile: Playwright makes a fresh
    user-data-dir for every launch)."""
    sync_playwright = playwright_or_skip()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def new_page(browser: Any, live_server: LiveServer) -> Iterator[Callable[..., Any]]:
    """``new_page(role=None, lang="fr")``: a page in a new context (its own cookies),
    logged in through the login form as that role's operator (None: not logged in)."""
    contexts: list[Any] = []

    def make(role: str | None = None, *, lang: str = "fr") -> Any:
        context = browser.new_context(
            base_url=live_server.url,
            viewport={"width": 1280, "height": 900},
            locale="fr-FR",
            timezone_id="Europe/Paris",
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.script_errors = errors  # read by tests: no page may throw
        if lang != "fr":
            page.goto(f"/lang/{lang}?next=/login")
        if role is not None:
            log_in(page, LOGINS[role])
        return page

    yield make
    for context in contexts:
        context.close()


def log_in(page: Any, login: str, password: str = TEST_PASSWORD) -> None:
    page.goto("/login")
    page.locator("#username").fill(login)
    page.locator("#password").fill(password)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(lambda url: "/login" not in url)


def screenshot(page: Any, name: str, *, readme: bool = False) -> Path:
    """Save the page as a test artefact (and for the README when ``readme``)."""
    ARTEFACTS.mkdir(exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if readme:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
    return path


def force_door(live_server: LiveServer, unit: EdgeAgent) -> int:
    """Open the unit's door without a badge, then shut it: a real ``door_forced`` alarm
    (closed by the door shutting, still to acknowledge). Its id."""
    from edge.door import RELOCK_GRACE_S

    door = unit.doors["entree"]
    pin = unit.hardware.pin_factory.pin(CONTACT_PIN)
    pin.drive_low()  # shut (the contact's pull-up reads it open until driven)
    # A door opened within a second of a granted passage's relock is that passage.
    wait_until(
        lambda: not door.lock.is_unlocked and door._now() - door._locked_at >= RELOCK_GRACE_S,
        what="the door relocked for good",
    )
    store = live_server.store
    _, before = store.alarms(view="all", kind="door_forced", limit=500)
    known = {a["id"] for a in before}
    pin.drive_high()

    def new_alarm() -> int | None:
        _, found = store.alarms(view="all", kind="door_forced", limit=500)
        fresh = [a["id"] for a in found if a["id"] not in known]
        return fresh[0] if fresh else None

    alarm_id = wait_until(new_alarm, what="a door_forced alarm")
    pin.drive_low()
    wait_until(lambda: store.alarm(alarm_id)["closed_at"] is not None, what="the door shut")
    return alarm_id
