"""A centre network of real processes for each test, and the figures the suite reports.

``cluster`` gives a ``Cluster``: a ``FaultBroker`` (mosquitto), a server prepared with
centres, units and an admin token, then run as ``telecentre-server serve``, and edge units
run as ``telecentre-edge simulate``. Each test adds a line of figures (``report``); they
are printed in a "reliability" section at the end of the run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from protocol.signing import Signer
from server.app import create_app
from server.settings import Settings
from tests.conftest import as_admin, wait_until
from tests.reliability.checker import Verdict, check, delivered
from tests.reliability.harness import (
    FaultBroker,
    ServerProcess,
    Stopwatch,
    UnitProcess,
    unit_config,
)

UNITS = {"boitron-01": "boitron", "boitron-02": "boitron", "belleme-01": "belleme"}
CENTRES = {"boitron": "Boitron", "belleme": "Bellême"}

FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("reliability")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``report("...")``: one line of figures for this test, printed at the end of the run."""

    def add(text: str) -> None:
        line = f"{request.node.name}: {text}"
        FIGURES.append(line)
        print(line)

    return add


class Cluster:
    """Broker, server and units of one test, all real processes on loopback."""

    def __init__(
        self, tmp_path: Path, broker: FaultBroker, database_url: str | None = None
    ) -> None:
        self.tmp = tmp_path
        self.broker = broker
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.key_file = tmp_path / "badge.key"
        self.key_file.write_text(os.urandom(32).hex())
        self.signing_key_file = tmp_path / "signing.key"
        signer = Signer.generate()
        signer.write(self.signing_key_file)
        self.server_key = signer.public_hex
        self.settings = Settings(
            data_dir=tmp_path / "server",
            badge_key_file=self.key_file,
            signing_key_file=self.signing_key_file,
            database_url=database_url,
            **broker.server_settings(),
        )
        self.token = ""
        self.badges: dict[str, int] = {}  # uid hex -> badge id
        self.server = ServerProcess(tmp_path, self.env())
        self.units: list[UnitProcess] = []

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            "TELECENTRE_DATA_DIR": str(s.data_dir),
            "TELECENTRE_BADGE_KEY_FILE": str(s.badge_key_file),
            "TELECENTRE_SIGNING_KEY_FILE": str(s.signing_key_file),
            "TELECENTRE_MQTT_HOST": s.mqtt_host,
            "TELECENTRE_MQTT_PORT": str(s.mqtt_port),
            "TELECENTRE_MQTT_TLS": "true",
            "TELECENTRE_MQTT_CA_FILE": str(s.mqtt_ca_file),
            "TELECENTRE_MQTT_USERNAME": str(s.mqtt_username),
            "TELECENTRE_MQTT_PASSWORD_FILE": str(s.mqtt_password_file),
            **({"TELECENTRE_DATABASE_URL": s.database_url} if s.database_url else {}),
        }

    def prepare(self, members: dict[str, str] | None = None) -> None:
        """Centres, units, members (uid hex -> name) and an admin token, through the real
        app in this process; then its files belong to the server process."""
        with TestClient(create_app(self.settings)) as client:
            as_admin(client)
            self.token = client.headers["Authorization"].split(" ", 1)[1]
            for centre, name in CENTRES.items():
                assert client.post("/api/centres", json={"id": centre, "name": name}).is_success
            for device, centre in UNITS.items():
                assert client.put(f"/api/devices/{device}", json={"centre_id": centre}).is_success
            for uid, name in (members or {}).items():
                member = client.post("/api/members", json={"name": name}).json()
                answer = client.post(f"/api/members/{member['id']}/badges", json={"uid": uid})
                assert answer.is_success, answer.text
                self.badges[uid] = answer.json()["id"]

    def unit(self, device_id: str, **options: object) -> UnitProcess:
        unit = UnitProcess(
            self.tmp / device_id,
            device_id,
            unit_config(
                device_id=device_id,
                centre=UNITS[device_id],
                broker=self.broker,
                key_file=self.key_file,
                server_key=self.server_key,
                data_dir=self.tmp / device_id / "data",
                **options,  # type: ignore[arg-type]
            ),
        )
        self.units.append(unit)
        return unit

    def converge(self, units: list[UnitProcess] | None = None, timeout: float = 120) -> float:
        """Wait until every decided event is stored and acked; seconds it took."""
        watch = Stopwatch()
        wait_until(
            lambda: delivered(self.server.db, units or self.units),
            timeout=timeout,
            what="every decided event stored and acknowledged",
        )
        return watch()

    def verdict(self, units: list[UnitProcess] | None = None) -> Verdict:
        return check(self.server.db, units or self.units)

    def close(self) -> None:
        for unit in self.units:
            unit.stop()
        self.server.stop()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[tuple[Cluster, FaultBroker]] = []

    def make(
        *, persistence: bool = False, queue: int | None = None, database_url: str | None = None
    ) -> Cluster:
        broker = FaultBroker(units=UNITS, persistence=persistence, queue=queue)
        broker.start()
        cluster = Cluster(tmp_path / f"c{len(made)}", broker, database_url)
        made.append((cluster, broker))
        return cluster

    yield make
    for cluster, broker in made:
        cluster.close()
        broker.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[Path, int], Path]]:
    """``small_disk(dir, kib)``: a tmpfs of that size mounted on ``dir`` (root only)."""
    mounted: list[Path] = []

    def mount(directory: Path, kib: int) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(directory)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"a full disk needs a small tmpfs, and mount failed: {done.stderr}")
        mounted.append(directory)
        return directory

    if os.geteuid() != 0:
        pytest.skip("a full disk needs a small tmpfs: mounting one needs root")
    yield mount
    for directory in mounted:
        subprocess.run(["umount", "-l", str(directory)], check=False)
