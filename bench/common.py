"""What every benchmark shares: MQTT clients on loopback, percentiles, a unit config, results.

Every figure is printed with a floor measured in the same run on the same machine, and
their ratio, so results from different machines compare; ``Results`` also writes them to
``bench/results.json``.
"""

from __future__ import annotations

import contextlib
import json
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge import config as edge_config
from server.broker import LocalBroker

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


class Results:
    """Figures of one run, each with its floor and ratio; written to bench/results.json."""

    def __init__(self) -> None:
        self.figures: dict[str, dict[str, Any]] = {}

    def add(self, name: str, **values: Any) -> None:
        self.figures[name] = {
            k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()
        }

    def write(self, path: Path = RESULTS_PATH) -> None:
        """Update the file: figures of groups not run this time are kept as they were."""
        figures: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            figures = json.loads(path.read_text()).get("figures", {})
        figures.update(self.figures)
        doc = {
            "machine": {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "processor": platform.processor() or None,
            },
            "ran_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "figures": figures,
        }
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        print(f"\nwrote {path}")
