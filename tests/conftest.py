"""Shared fixtures: a private mosquitto, the real server app, real edge units."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from gpiozero.pins.mock import MockFactory

from edge import config as edge_config
from edge.agent import EdgeAgent
from edge.hardware.build import build
from protocol.signing import Signer
from server.app import create_app
from server.auth import service
from server.broker import LocalBroker
from server.settings import Settings
from tests.edge.support import CONTACT_PIN, door_and_room


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        pause.wait(0.01)


# Units the tests use, with a broker account each (others: ``broker.add_unit``).
TEST_UNITS = {"boitron-01": "boitron", "boitron-02": "boitron", "belleme-01": "belleme"}


@pytest.fixture
def broker() -> Iterator[LocalBroker]:
    """mosquitto from the production config: TLS, accounts, the generated ACL."""
    with LocalBroker(units=TEST_UNITS) as running:
        yield running


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "badge.key"
    path.write_text(secrets.token_hex(32))
    return path


@pytest.fixture
def badge_key(key_file: Path) -> bytes:
    return bytes.fromhex(key_file.read_text())


@pytest.fixture
def signing_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "signing.key"
    Signer.generate().write(path)
    return path


@pytest.fixture
def server_key(signing_key_file: Path) -> str:
    """The server's public key, as a unit's config lists it."""
    return Signer.from_file(signing_key_file).public_hex


@pytest.fixture
def database_url() -> str | None:
    """The ``server`` fixture's database: None is the SQLite file in its data_dir (a test
    module overrides this fixture to run on PostgreSQL too)."""
    return None


@pytest.fixture
def server(
    broker: LocalBroker,
    tmp_path: Path,
    key_file: Path,
    signing_key_file: Path,
    database_url: str | None,
) -> Iterator[TestClient]:
    """The real app (lifespan, bridge, store) with centre ``boitron`` and unit ``boitron-01``.

    The client is logged in as the admin ``admin`` by an API token (``Authorization:
    Bearer``); ``login_client`` gives clients of other roles on the same app.
    """
    settings = Settings(
        data_dir=tmp_path / "server",
        badge_key_file=key_file,
        signing_key_file=signing_key_file,
        database_url=database_url,
        **broker.server_settings(),
    )
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        wait_until(runtime.bridge.receiving, what="server receiving from the broker")
        as_admin(client)
        assert (
            client.post("/api/centres", json={"id": "boitron", "name": "Boitron"}).status_code
            == 201
        )
        assert (
            client.put("/api/devices/boitron-01", json={"centre_id": "boitron"}).status_code == 200
        )
        yield client


TEST_PASSWORD = "correct horse battery staple"


def operator_token(runtime: Any, login: str, *, role: str, centres: list[str] | None = None) -> str:
    """Create an operator (password ``TEST_PASSWORD``) and return an API token of theirs."""
    operator = service.create_operator(
        runtime.store,
        login=login,
        name=login.title(),
        role=role,
        centres=centres,
        password=TEST_PASSWORD,
        actor="cli",
        address=None,
        now=time.time(),
    )
    token, _ = service.create_token(
        runtime.store,
        runtime.settings,
        operator,
        name="tests",
        days=1,
        actor="cli",
        address=None,
        now=time.time(),
    )
    return token


def as_admin(client: TestClient) -> TestClient:
    """Log a client of a freshly started app in as the admin ``admin`` (made on first use
    of its database) with a new API token; returns the client."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    try:
        operator = runtime.store.operator_by_login("admin")
    except LookupError:
        client.headers["Authorization"] = "Bearer " + operator_token(runtime, "admin", role="admin")
        return client
    token, _ = service.create_token(
        runtime.store,
        runtime.settings,
        operator,
        name="tests",
        days=1,
        actor="cli",
        address=None,
        now=time.time(),
    )
    client.headers["Authorization"] = f"Bearer {token}"
    return client


@pytest.fixture
def login_client(server: TestClient) -> Callable[..., TestClient]:
    """``login_client(login, role=…, centres=…)``: a client of the same running app,
    authenticated as a new operator by an API token; ``login_client(None)``: anonymous."""

    def make(login: str | None, *, role: str = "viewer", centres: list[str] | None = None):
        client = TestClient(server.app, raise_server_exceptions=False)
        if login is not None:
            runtime = server.app.state.runtime  # type: ignore[attr-defined]
            token = operator_token(runtime, login, role=role, centres=centres)
            client.headers["Authorization"] = f"Bearer {token}"
        return client

    return make


def unit_toml(
    *,
    broker: LocalBroker,
    key_file: Path,
    data_dir: Path,
    server_key: str,
    reader: str = "fake",
    device_id: str = "boitron-01",
    centre: str = "boitron",
    extra: str = "",
) -> str:
    return f"""
schema = 1
device_id = "{device_id}"
centre = "{centre}"
badge_key_file = "{key_file}"
data_dir = "{data_dir}"
pin_factory = "mock"
online_deadline_ms = 800
ack_timeout_s = 2
server_public_keys = ["{server_key}"]

[mqtt]
{broker.unit_mqtt(device_id, centre)}
keepalive_s = 5

{door_and_room(reader)}{extra}"""


@pytest.fixture
def make_unit(
    tmp_path: Path, broker: LocalBroker, key_file: Path, server_key: str
) -> Iterator[Callable[..., EdgeAgent]]:
    """Builds and starts a real edge agent on MockFactory pins; stops it after the test.

    ``port``: the broker's port it connects to, when not the broker's own (a relay's).
    Its clock counts as NTP-synchronised (as on a unit in the field) unless
    ``clock_synced=False``: the server never moves presence on an unsynchronised event,
    and whether the test machine runs NTP must not decide a test.
    """
    agents: list[EdgeAgent] = []

    def make(
        reader: str = "fake",
        *,
        start: bool = True,
        clock_synced: bool = True,
        port: int | None = None,
    ) -> EdgeAgent:
        conf = tmp_path / f"unit-{len(agents)}.toml"
        text = unit_toml(
            broker=broker,
            key_file=key_file,
            server_key=server_key,
            data_dir=tmp_path / f"unit-{len(agents)}",
            reader=reader,
        )
        if port is not None:  # through a relay (``tests.reliability.harness.Proxy``)
            text = text.replace(f"port = {broker.port}", f"port = {port}")
        conf.write_text(text)
        cfg = edge_config.load(conf)
        factory = MockFactory()
        hardware = build(cfg, pin_factory=factory)
        factory.pin(CONTACT_PIN).drive_low()  # the door is shut (after the pull-up is set)
        agent = EdgeAgent(cfg, hardware, synced=lambda: clock_synced)
        agents.append(agent)
        if start:
            agent.start()
        return agent

    yield make
    for agent in agents:
        agent.stop()


# -- the store's two engines ---------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Any]:
    """A private PostgreSQL (initdb in a temporary directory, 127.0.0.1, a free port) for
    the whole session; the tests that need it skip, saying why, when it is not installed."""
    from server.store.postgres.cluster import LocalPostgres, PostgresMissing, find_bindir

    try:
        find_bindir()
        import psycopg  # noqa: F401
    except (PostgresMissing, ImportError) as exc:
        pytest.skip(f"PostgreSQL tests need PostgreSQL and psycopg (make setup): {exc}")
    with LocalPostgres() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def store_at(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a store opens, once per engine: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "t.db"
    return request.getfixturevalue("postgres_cluster").database()


def database_errors() -> tuple[type[Exception], ...]:
    """What a constraint or trigger refusing a write raises, on either engine."""
    import sqlite3

    try:
        import psycopg
    except ImportError:
        return (sqlite3.DatabaseError,)
    return (sqlite3.DatabaseError, psycopg.DatabaseError)


def sqlite_file(store: Any) -> Path:
    """The store's SQLite file, for a test that reads the file itself; on PostgreSQL, which
    keeps no such file, that test skips."""
    if store.engine != "sqlite":
        pytest.skip("reads the SQLite file itself: PostgreSQL keeps no such file")
    return store.path
