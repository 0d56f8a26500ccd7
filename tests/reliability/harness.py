"""Real processes for the reliability suite: mosquitto, the server and edge units.

Every part runs as it does in the field, as its own process: mosquitto from the production
config (``LocalBroker``), ``telecentre-server serve`` (uvicorn, the bridge, the SQLite
writer) and ``telecentre-edge simulate --script`` (the real agent on mock pins kept in
files, so a killed unit leaves its relay where it was, as on a Pi). The tests kill them with
real signals (SIGKILL, SIGSTOP) and look at what is left on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge.hardware.filepins import MOCK_PIN_DIR_ENV, read_pin
from server.broker import LocalBroker, free_port
from server.broker.files import BrokerPaths
from tests.conftest import wait_until

BIN = Path(sys.executable).parent
RELAY_PIN = 17  # an active-low board (the default): energised at 0
CONTACT_PIN = 27
MOTION_PIN = 22
EXIT_PIN = 23


def executable(name: str) -> str:
    return str(BIN / name)


class FaultBroker(LocalBroker):
    """mosquitto that a test can kill, freeze and restart on the same port and files.

    ``persistence``: mosquitto keeps sessions and queued messages in ``mosquitto.db``
    (written at a clean stop and every ``autosave_interval`` seconds). ``queue``: the most
    QoS 1 messages it holds for an absent persistent session (more are dropped).
    """

    def __init__(
        self, *, persistence: bool = False, queue: int | None = None, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.persistence = persistence
        self.queue = queue

    def paths(self) -> BrokerPaths:
        return replace(super().paths(), persistence=self.persistence)

    def config(self) -> str:
        text = super().config()
        if self.queue is not None:
            text = text.replace("max_queued_messages 100000", f"max_queued_messages {self.queue}")
        if self.persistence:
            text += "autosave_interval 1\n"
        return text + "log_type notice\n"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, nothing saved since the last autosave."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen broker cannot hear SIGTERM
        super().stop()


def sqlite_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection to a database another process writes (WAL)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def read_rows(db: Path | str, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of one query on the server's database, read while the server writes it: a
    SQLite file (``?`` placeholders), or a ``postgresql://`` URL."""
    if isinstance(db, str):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            return [tuple(row) for row in conn.execute(sql.replace("?", "%s"), args).fetchall()]
    with contextlib.closing(sqlite_ro(db)) as conn:
        return conn.execute(sql, args).fetchall()


class ServerProcess:
    """``telecentre-server serve`` on a free loopback port, with its settings in the env."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"
        self.starts = 0

    @property
    def db_path(self) -> Path:
        return Path(self.env["TELECENTRE_DATA_DIR"]) / "telecentre.db"

    @property
    def db(self) -> Path | str:
        """Where its store is: the SQLite file, or the PostgreSQL URL it was given."""
        return self.env.get("TELECENTRE_DATABASE_URL") or self.db_path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> ServerProcess:
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [executable("telecentre-server"), "serve", "--port", str(self.port)],
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait:
            wait_until(self.healthy, timeout=60, what="the server to answer /healthz")
        return self

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the server exited ({self.proc.returncode}): {self.tail()}")
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as answer:
                return answer.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def receiving(self) -> bool:
        """Whether ``/healthz`` says the units' events reach the server (its events
        receiver subscribed): a message published earlier, on a first start, reaches nobody
        and only a unit's resend brings it."""
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as answer:
                return bool(json.loads(answer.read())["mqtt"]["receiving"])
        except (OSError, urllib.error.URLError, KeyError, ValueError):
            return False

    def api(self, method: str, path: str, token: str, body: object = None) -> tuple[int, object]:
        """(status, JSON body) of one API call with an operator's token."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass(frozen=True)
class OutboxState:
    """What a unit's outbox file says once its process is gone (or while it runs)."""

    epoch: str
    last_seq: int
    pending: int
    integrity: str


class UnitProcess:
    """An edge unit run by ``telecentre-edge simulate --script``: its own process, its own
    outbox, pins in files. Each ``start`` plays a script (``exit entree`` presses, card taps)
    then waits up to ``drain_s`` for every event to be acknowledged and exits."""

    def __init__(self, workdir: Path, device_id: str, config_text: str) -> None:
        self.workdir = workdir
        self.device_id = device_id
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "unit.toml"
        self.config.write_text(config_text)
        self.pins = workdir / "pins"
        self.data_dir = workdir / "data"
        self.log_path = workdir / "unit.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / "outbox.db"

    @property
    def env(self) -> dict[str, str]:
        # A crash of the unit's process (a signal) leaves its threads' tracebacks in its log.
        return {**os.environ, MOCK_PIN_DIR_ENV: str(self.pins), "PYTHONFAULTHANDLER": "1"}

    def start(self, steps: list[str], *, drain_s: float = 60.0) -> UnitProcess:
        self.runs += 1
        script = self.workdir / f"script-{self.runs}.txt"
        script.write_text("\n".join(steps) + "\n")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                executable("telecentre-edge"),
                "simulate",
                "--config",
                str(self.config),
                "--script",
                str(script),
                "--drain-s",
                str(drain_s),
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.proc.wait(timeout=30)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def relock(self) -> subprocess.CompletedProcess[str]:
        """What systemd runs after the agent stops (``ExecStopPost``)."""
        return subprocess.run(
            [executable("telecentre-edge"), "relock", "--config", str(self.config)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def relay(self) -> tuple[str, float] | None:
        """(mode, level) of the relay line as the last process left it; None if never set."""
        return read_pin(self.pins, RELAY_PIN)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def printed_seqs(self) -> list[int]:
        """Seqs the unit said it recorded (``event #N`` lines), in the order it said them."""
        out = []
        for line in self.log().splitlines():
            if line.startswith("event #"):
                out.append(int(line.split()[1][1:]))
        return out

    def outbox(self) -> OutboxState:
        with contextlib.closing(sqlite_ro(self.outbox_path)) as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            pending = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        return OutboxState(meta["epoch"], int(meta.get("last_seq", 0)), pending, integrity)

    def pending(self) -> int:
        if not self.outbox_path.exists():
            return -1
        with contextlib.closing(sqlite_ro(self.outbox_path)) as db:
            return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]


def unit_config(
    *,
    device_id: str,
    centre: str,
    broker: LocalBroker,
    key_file: Path,
    server_key: str,
    data_dir: Path,
    ack_timeout_s: float = 1.0,
    mqtt_port: int | None = None,
    extra: str = "",
) -> str:
    mqtt = broker.unit_mqtt(device_id, centre)
    if mqtt_port is not None:
        mqtt = mqtt.replace(f"port = {broker.port}", f"port = {mqtt_port}")
    return f"""
schema = 1
device_id = "{device_id}"
centre = "{centre}"
badge_key_file = "{key_file}"
data_dir = "{data_dir}"
pin_factory = "mock"
online_deadline_ms = 800
ack_timeout_s = {ack_timeout_s}
server_public_keys = ["{server_key}"]
{extra}
[mqtt]
{mqtt}
keepalive_s = 5

[[doors]]
id = "entree"
relay_pin = {RELAY_PIN}
contact_pin = {CONTACT_PIN}
exit_button_pin = {EXIT_PIN}
unlock_seconds = 30
direction = "toggle"
[doors.reader]
kind = "fake"
poll_interval_ms = 10
repeat_ms = 200
"""


def exits(count: int, *, pause_s: float = 0.0) -> list[str]:
    """Script steps: ``count`` presses of the entrance's exit button."""
    steps = []
    for _ in range(count):
        steps.append("exit entree")
        if pause_s:
            steps.append(f"wait {pause_s:g}")
    return steps


class Stopwatch:
    """Seconds since it was made (what the suite reports as time to converge)."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.started


@dataclass(frozen=True)
class Size:
    """How big a run is: the short variant runs in ``make test``, the long one in
    ``make soak``."""

    events: int  # per unit
    pause_s: float  # between two events of a unit
    fault_s: float  # how long a fault lasts (a frozen broker, a cut link)
    repeats: int = 1  # kills of the agent


def variants(short: Size, soak: Size) -> list[object]:
    import pytest

    return [
        pytest.param(short, id="short"),
        pytest.param(soak, id="soak", marks=[pytest.mark.soak, pytest.mark.timeout(7200)]),
    ]


class Proxy:
    """A TCP relay between units and the broker that the test controls (loopback only).

    ``mode``: ``"pass"`` relays both ways; ``"drop"`` keeps every connection open and
    silently discards what goes either way (a cable cut the TCP stacks do not see; new
    connections hang); ``"reset"`` closes every connection with a TCP reset (SO_LINGER 0)
    and resets new ones at once. ``delay_s``: each chunk is delivered that long after it
    came, each way (a slow rural line).
    """

    def __init__(self, target_port: int, *, delay_s: float = 0.0) -> None:
        import socket
        import threading

        self.target_port = target_port
        self.delay_s = delay_s
        self.mode = "pass"
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="proxy")
        self._thread.start()

    def _accept(self) -> None:
        import socket
        import threading

        self._listener.settimeout(0.2)
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "reset":
                self._reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                self._reset(client)
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: object, sink: object) -> None:
        import queue
        import socket
        import threading
        import time

        assert isinstance(source, socket.socket) and isinstance(sink, socket.socket)
        held: queue.Queue[tuple[float, bytes] | None] = queue.Queue()
        if self.delay_s:
            threading.Thread(target=self._deliver, args=(held, sink), daemon=True).start()
        source.settimeout(0.2)
        while not self._stopping.is_set():
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if self.mode == "drop":
                continue  # swallowed: the sender believes it went
            if self.delay_s:
                held.put((time.monotonic() + self.delay_s, data))
                continue
            try:
                sink.sendall(data)
            except OSError:
                break
        if self.delay_s:
            held.put(None)  # the delivery shuts both down once what is held has gone
            return
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _deliver(self, held: object, sink: object) -> None:
        """Send each chunk ``held`` at its time (``delay_s`` after it came)."""
        import queue
        import socket
        import time

        assert isinstance(held, queue.Queue) and isinstance(sink, socket.socket)
        while (item := held.get()) is not None:
            due, data = item
            if self._stopping.wait(max(0.0, due - time.monotonic())):
                break  # the proxy is closing: nothing more is delivered
            try:
                sink.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _reset(sock: object) -> None:
        import socket
        import struct

        assert isinstance(sock, socket.socket)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

    def cut(self, mode: str) -> None:
        assert mode in ("drop", "reset")
        self.mode = mode
        if mode == "reset":
            with self._lock:
                conns, self._conns = self._conns, []
            for sock in conns:
                self._reset(sock)

    def heal(self) -> None:
        """Relay again; connections that were dropped stay dead (as after a real cut)."""
        with self._lock:
            conns, self._conns = self._conns, []
        if self.mode == "drop":
            for sock in conns:
                self._reset(sock)
        self.mode = "pass"

    def close(self) -> None:
        self._stopping.set()
        self._listener.close()
        self.heal()


def fill(directory: Path) -> Path:
    """Write a file until the disk is full; returns it (delete it to make room)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
    finally:
        os.close(fd)
    return filler
