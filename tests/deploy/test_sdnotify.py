"""The sd_notify client and the watchdog rule: fed only while every worker is alive."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from edge import config as edge_config
from edge.agent import EdgeAgent
from edge.hardware.build import build
from protocol import sdnotify
from protocol.signing import Signer
from server.broker import free_port
from tests.deploy.support import notify_socket
from tests.edge.support import unit_toml


@dataclass
class FakeWorker:
    name: str
    alive: bool = True

    def is_alive(self) -> bool:
        return self.alive


def test_notify_sends_one_datagram_to_the_socket_systemd_names() -> None:
    with notify_socket() as systemd:
        env = {"NOTIFY_SOCKET": str(systemd.path)}
        assert sdnotify.notify("READY=1\nSTATUS=running", env)
        assert systemd.next() == "READY=1\nSTATUS=running"


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"telecentre-test-{os.getpid()}-{threading.get_ident()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(10)
        assert sdnotify.notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert listener.recv(100) == b"WATCHDOG=1"


def test_without_a_socket_nothing_is_sent_and_nothing_fails() -> None:
    assert sdnotify.notify("READY=1", {}) is False
    assert sdnotify.notify("READY=1", {"NOTIFY_SOCKET": "/nonexistent/notify"}) is False
    assert sdnotify.notify("READY=1", {"NOTIFY_SOCKET": "vsock:2:1234"}) is False


def test_the_watchdog_interval_is_half_of_watchdogsec_and_only_for_this_process() -> None:
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    mine = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert sdnotify.watchdog_interval(mine) == 15.0
    other = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert sdnotify.watchdog_interval(other) is None
    assert sdnotify.watchdog_interval({}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_a_beat_pings_only_while_every_worker_is_alive() -> None:
    sent: list[str] = []
    workers = [FakeWorker("publisher"), FakeWorker("inbox"), FakeWorker("reader-entree")]
    dog = sdnotify.Watchdog(lambda: workers, env={"WATCHDOG_USEC": "1000000"}, send=sent.append)
    assert dog.beat() and sent == ["WATCHDOG=1"]

    workers[1].alive = False
    assert not dog.beat()
    assert not dog.beat()  # still dead: no ping, and said once
    assert sent == ["WATCHDOG=1", "STATUS=worker(s) dead: inbox"]
    assert dog.dead == ["inbox"]


def test_the_main_loop_says_ready_then_stopping() -> None:
    sent: list[str] = []
    stop = threading.Event()
    stop.set()
    sdnotify.Watchdog(lambda: [], env={}, send=sent.append).run_until(stop)
    assert sent == ["READY=1\nSTATUS=running", "STOPPING=1"]


def test_a_thread_feeds_the_watchdog_of_a_process_whose_main_loop_is_not_its_own() -> None:
    workers = [FakeWorker("store-writer"), FakeWorker("retention")]
    with notify_socket() as systemd:
        env = {"NOTIFY_SOCKET": str(systemd.path), "WATCHDOG_USEC": "20000"}  # a ping / 10 ms
        feeder = sdnotify.feed_from_thread(lambda: workers, env=env)
        assert feeder is not None
        try:
            assert systemd.next().startswith("READY=1")
            assert systemd.next() == "WATCHDOG=1"
            workers[1].alive = False
            systemd.wait_for("STATUS=worker(s) dead: retention")
            workers[1].alive = True
            systemd.wait_for("STATUS=running")
            assert systemd.next() == "WATCHDOG=1"
        finally:
            feeder.stop()
        systemd.wait_for("STOPPING=1")
    assert sdnotify.feed_from_thread(lambda: workers, env={}) is None


def test_the_agents_own_workers_decide(tmp_path: Path, key_file: Path) -> None:
    """An agent's worker that is no longer running stops the pings: systemd then kills
    the agent (WatchdogSec), relocks (ExecStopPost) and starts it again."""
    conf = tmp_path / "unit.toml"
    conf.write_text(
        unit_toml(
            key_file=key_file,
            data_dir=tmp_path / "data",
            server_keys=(Signer.generate().public_hex,),
            port=free_port(),
        )
    )
    cfg = edge_config.load(conf)
    agent = EdgeAgent(cfg, build(cfg, pin_factory=MockFactory()), synced=lambda: True)
    sent: list[str] = []
    dog = sdnotify.Watchdog(lambda: agent.workers, env={"WATCHDOG_USEC": "1"}, send=sent.append)
    agent.start()
    try:
        assert dog.beat()
        agent.inbox.stop()
        assert not dog.beat()
        assert sent == ["WATCHDOG=1", "STATUS=worker(s) dead: inbox"]
    finally:
        agent.stop()
