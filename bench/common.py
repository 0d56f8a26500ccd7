"""What every benchmark shares: MQTT clients on loopback, percentiles, a unit config, results.

Every figure is printed with a floor measured in the same run on the same machine, and
their ratio, so results from different machines compare; ``Results`` also writes them to
``bench/results.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import paho.mqtt.client as mqtt

from edge import config as edge_config
from protocol import topics
from protocol.mqtt import make_client
from protocol.signing import Signer
from server.broker import LocalBroker, free_port
from server.domain import broker_access

RESULTS_PATH = Path(__file__).resolve().parent / "results.json"


def subscribed_client(
    broker: LocalBroker, name: str, topic: str, on_message: Callable[..., object]
) -> mqtt.Client:
    """A TCP_NODELAY TLS client with its own observer account, returned once its
    subscription to ``topic`` is acknowledged (``name`` is for messages only)."""
    client, props = broker.client(), None
    ready = threading.Event()
    client.on_message = on_message
    client.on_connect = lambda c, *a: c.subscribe(topic, 1)
    client.on_subscribe = lambda *a: ready.set()
    client.connect("127.0.0.1", broker.port, clean_start=True, properties=props)
    client.loop_start()
    if not ready.wait(10):
        raise RuntimeError(f"{name} could not subscribe to {topic}")
    return client


def connected_client(broker: LocalBroker, name: str) -> mqtt.Client:
    client, props = broker.client(), None
    ready = threading.Event()
    client.on_connect = lambda *a: ready.set()
    client.connect("127.0.0.1", broker.port, clean_start=True, properties=props)
    client.loop_start()
    if not ready.wait(10):
        raise RuntimeError(f"{name} could not connect")
    return client


def forget_server_session(broker: LocalBroker) -> None:
    """End the persistent sessions of the server account and of its events receiver, so
    that what is published while no server runs (a floor) is not queued for the next
    server of the run."""
    server = broker.server_username
    for username in (server, broker_access.ingest_username(server)):
        client, _ = make_client(username, session_expiry_s=0)
        client.username_pw_set(username, broker.passwords[server])  # the receiver's too
        client.tls_set(ca_certs=str(broker.ca_file))
        ready = threading.Event()
        client.on_connect = lambda *a, ready=ready: ready.set()
        client.connect("127.0.0.1", broker.port, clean_start=True)
        client.loop_start()
        ready.wait(10)
        close(client)


def forget_unit(broker: LocalBroker, device_id: str) -> None:
    """Clear a unit's retained status and health once its benchmark is over: the later
    servers of the run do not register it, and would log each as from an unknown unit."""
    client = connected_client(broker, f"clearing {device_id}")
    for spec in (topics.STATUS, topics.HEALTH):
        client.publish(topics.topic(spec, device_id), b"", qos=1, retain=True).wait_for_publish(5)
    close(client)


def close(*clients: mqtt.Client) -> None:
    for client in clients:
        client.loop_stop()
        client.disconnect()


def percentile(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * p))]


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        pause.wait(0.005)


def unit_config(
    workdir: Path,
    broker: LocalBroker,
    key_file: Path,
    server_key: str,
    *,
    device_id: str = "bench-01",
    centre: str = "bench",
) -> edge_config.EdgeConfig:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "unit.toml"
    path.write_text(f"""
schema = 1
device_id = "{device_id}"
centre = "{centre}"
badge_key_file = "{key_file}"
data_dir = "{workdir / "unit"}"
pin_factory = "mock"
server_public_keys = ["{server_key}"]
[mqtt]
{broker.unit_mqtt(device_id, centre)}
[[doors]]
id = "entree"
relay_pin = 17
unlock_seconds = 0.5
[doors.reader]
kind = "fake"
""")
    return edge_config.load(path)


def load_average() -> float:
    """The machine's 1-minute load average (other work on a shared machine)."""
    return round(os.getloadavg()[0], 2)


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``: every core,
    every process, the kernel's interrupts and what the hypervisor took)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return float("nan")  # not Linux: the figure says "nan", the others stand
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU time spent from its creation to ``read(n)``, per item: by this process (the
    server under measure, when it runs in the bench process) with its ``helpers`` (the
    server's events receiver), and by the whole machine (the server, the units' process,
    the broker and anything else running). Tells a server that is slow from a machine that
    is full."""

    def __init__(self, helpers: tuple[int, ...] = ()) -> None:
        self._helpers = helpers
        self._wall = time.monotonic()
        self._process = time.process_time() + _processes_cpu_s(helpers)
        self._machine = _machine_busy_s()

    def read(self, n: int) -> dict[str, float]:
        wall = time.monotonic() - self._wall
        machine = _machine_busy_s() - self._machine
        process = time.process_time() + _processes_cpu_s(self._helpers) - self._process
        return {
            "process_cpu_us": process / n * 1e6,
            "machine_cpu_us": machine / n * 1e6,
            "cores_busy": machine / wall,
        }


def _processes_cpu_s(pids: tuple[int, ...]) -> float:
    """User and system CPU seconds of these processes (0 for one that is gone)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class Results:
    """Figures of one run, each with its floor, its ratio and the load average when it was
    measured; written to bench/results.json.

    Every figure should name its ``floor`` (the same measure of the thing no design can
    avoid, taken in the same run) and its ``ratio`` to it; ``target`` says what the ratio
    should be at most (or at least, for rates: ``higher_is_better``).
    """

    def __init__(self, *, quick: bool = False) -> None:
        self.quick = quick
        self.figures: dict[str, dict[str, Any]] = {}

    def add(self, name: str, **values: Any) -> None:
        if "floor" not in values or "ratio" not in values:
            print(f"  (figure {name} has no floor or no ratio)")
        values.setdefault("load_avg", load_average())
        values["quick"] = self.quick
        self.figures[name] = {
            k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()
        }

    def write(self, path: Path = RESULTS_PATH) -> None:
        """Update the file: figures of benchmarks not run this time are kept as they were."""
        figures: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            figures = json.loads(path.read_text()).get("figures", {})
        figures.update(self.figures)
        doc = {
            "machine": {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "processor": platform.processor() or None,
                "cpus": os.cpu_count(),
            },
            "ran_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "figures": figures,
        }
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        print(f"\nwrote {path}")


def unit_id(i: int) -> str:
    return f"bench-u{i:04d}"


def centre_of(i: int) -> str:
    return f"bench-c{i % Context.CENTRES:03d}"


def register_units(store: Any, n: int) -> None:
    """Centres and the first ``n`` simulated units in the store's registry, in one commit."""
    from server.store.sqlite import devices

    now = time.time()

    def write(db: Any) -> None:
        db["centres"].insert_all(
            ({"id": centre_of(i), "name": f"Centre {i}", "created_at": now} for i in range(n)),
            ignore=True,
        )
        for i in range(n):
            devices.assign(db, unit_id(i), centre_of(i))

    store.write(write)


class Context:
    """What every benchmark module's ``run(ctx)`` gets: the results, a scratch directory,
    whether this is a quick run, a badge key and a server signing key, and a broker
    started on first use (``ctx.broker``) and stopped at the end of the run."""

    OBSERVERS = 2_100  # one account per benchmark client (the client id is the user name)
    UNITS = 3_500  # unit accounts (the real ACL: each unit its own topics), ``unit_id(i)``
    CENTRES = 350  # the units' centres, ``centre_of(i)``

    def __init__(self, results: Results, workdir: Path, *, quick: bool = False) -> None:
        self.results = results
        self.workdir = workdir
        self.quick = quick
        self.key_file = workdir / "badge.key"
        self.key_file.write_text(secrets.token_hex(32))
        self.signer = Signer.generate()
        self._broker: LocalBroker | None = None

    def scale(self, full: int, quick: int) -> int:
        """``full`` in a full run, ``quick`` in a quick one."""
        return quick if self.quick else full

    @property
    def broker(self) -> LocalBroker:
        if self._broker is None:
            units = {unit_id(i): centre_of(i) for i in range(self.scale(self.UNITS, 600))}
            self._broker = LocalBroker(observers=self.OBSERVERS, units=units).start()
        return self._broker

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._broker is not None:
            self._broker.close()
            self._broker = None


class ServerProcess:
    """``telecentre-server serve`` in its own process, as in production: the unit measured
    in this process then shares no interpreter lock with the server's list compiler."""

    def __init__(
        self,
        workdir: Path,
        broker: LocalBroker,
        key_file: Path,
        signing: Path,
        token: str,
        *,
        name: str = "lists",
    ) -> None:
        self.port = free_port()
        self.data_dir = workdir / f"{name}-server"
        env = dict(
            os.environ,
            TELECENTRE_DATA_DIR=str(self.data_dir),
            TELECENTRE_BADGE_KEY_FILE=str(key_file),
            TELECENTRE_SIGNING_KEY_FILE=str(signing),
            **{f"TELECENTRE_{k.upper()}": str(v) for k, v in broker.server_settings().items()},
            TELECENTRE_MQTT_CLIENT_ID=f"bench-{name}",
        )
        self.log = (workdir / f"{name}-server.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited; see {self.log.name}")
            try:
                return self.http.get("/healthz").json().get("ok") is True
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, "the server process")

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def bench_admin_token(store: Any) -> str:
    """An admin's API token for the benchmark's calls, made as the command line makes it."""
    from server.auth import service
    from server.settings import Settings

    now = time.time()
    admin = service.create_operator(
        store,
        login="bench",
        name="Bench",
        role="admin",
        centres=None,
        password=secrets.token_urlsafe(16),
        actor="cli",
        address=None,
        now=now,
    )
    token, _ = service.create_token(
        store, Settings(), admin, name="bench", days=1, actor="cli", address=None, now=now
    )
    return token
