"""systemd's notify protocol, for the unit's agent and the server alike.

Both run as ``Type=notify`` services with ``WatchdogSec=`` (``systemd/``). The protocol is
one datagram per message on the unix socket named by ``NOTIFY_SOCKET`` (a leading ``@``
means the abstract namespace): ``READY=1`` once started, ``WATCHDOG=1`` at least every
``WatchdogSec``, ``STOPPING=1`` on the way out, ``STATUS=...`` for ``systemctl status``.
``WATCHDOG_USEC`` carries WatchdogSec; when ``WATCHDOG_PID`` names another process the
watchdog is not this one's. Without ``NOTIFY_SOCKET`` (a terminal, a test) nothing is sent.

The watchdog is fed only while every worker thread is alive. A worker survives its own
errors (``protocol.workers``), so a dead one is a bug or a thread killed from outside;
the pings then stop, systemd kills the process after WatchdogSec (SIGABRT), runs the
service's ``ExecStopPost`` (on a unit: the relays relocked) and starts it again. A process
hung as a whole stops pinging too.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from protocol.workers import Worker

log = logging.getLogger(__name__)


class Living(Protocol):
    """What the watchdog asks of a worker (``protocol.workers.Worker`` is one)."""

    name: str

    def is_alive(self) -> bool: ...


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` to systemd; False when there is no socket or it cannot be reached."""
    env = os.environ if env is None else env
    address = env.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # unset, or a vsock address (virtual machines only)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot tell systemd %r: %s", message.split("\n")[0], exc)
        return False
    return True


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between two pings (half of WatchdogSec), or None when no watchdog is set."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", "0"))
    except ValueError:
        return None
    if usec <= 0 or (pid and pid != os.getpid()):
        return None
    return usec / 1_000_000 / 2


class Watchdog:
    """Feeds systemd's watchdog while every worker named by ``workers()`` is alive."""

    def __init__(
        self,
        workers: Callable[[], Iterable[Living]],
        *,
        env: Mapping[str, str] | None = None,
        send: Callable[[str], object] | None = None,
    ) -> None:
        self._workers = workers
        self._env = os.environ if env is None else env
        self._send = send or (lambda message: notify(message, self._env))
        self.interval = watchdog_interval(self._env)
        self.dead: list[str] = []  # the workers found dead at the last beat

    def ready(self, status: str = "running") -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def beat(self) -> bool:
        """One ping if every worker is alive; otherwise none, and say which are dead."""
        dead = sorted(w.name for w in self._workers() if not w.is_alive())
        if dead:
            if dead != self.dead:
                log.error(
                    "worker(s) %s no longer running: the systemd watchdog is not fed any more "
                    "and will restart the service",
                    ", ".join(dead),
                )
                self._send("STATUS=worker(s) dead: " + ", ".join(dead))
            self.dead = dead
            return False
        if self.dead:
            self._send("STATUS=running")
            self.dead = []
        self._send("WATCHDOG=1")
        return True

    def run_until(self, stop: threading.Event) -> None:
        """A main loop: READY=1, then a beat every ``interval`` until ``stop`` is set."""
        self.ready()
        if self.interval is None:
            stop.wait()
        else:
            while not stop.wait(self.interval):
                self.beat()
        self.stopping()


class WatchdogWorker(Worker):
    """For a process whose main loop is not its own (the server under uvicorn): READY=1
    at once, then a worker thread beating every ``interval`` while the others live."""

    def __init__(self, dog: Watchdog) -> None:
        super().__init__("watchdog", self._beat)
        self.dog = dog

    def _beat(self) -> None:
        self.dog.beat()
        self.stopping.wait(self.dog.interval)

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        self.dog.stopping()


def feed_from_thread(
    workers: Callable[[], Iterable[Living]], *, env: Mapping[str, str] | None = None
) -> WatchdogWorker | None:
    """Tell systemd the process is ready; when it set a watchdog, start feeding it from a
    thread of its own (returned, to stop with the process). None without a watchdog."""
    dog = Watchdog(workers, env=env)
    dog.ready()
    if dog.interval is None:
        return None
    worker = WatchdogWorker(dog)
    worker.start()
    return worker
