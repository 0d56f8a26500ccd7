"""The units' events, received in a process of their own.

One interpreter runs one thread at a time: with paho's network thread receiving the units'
events beside the writer that stores them, the server's process stopped at about one core
while the machine had more (docs/performance.md). With ``ingest_process`` (the default) a
child process, ``python -m server.mqtt.receiver``, holds a second MQTT connection that
subscribes to the units' events alone (``telecentre/+/event``, or ``$share/<group>/…`` for
a worker of a share group) and hands them, a batch per turn of its network loop, to the
server through a pipe; the server decodes, stores and acknowledges them as before, acks
still published by its own connection after the durable commit. The child only parses
MQTT: a crash loses nothing (a unit sends again what is not acked).

Its broker account is the server's user name followed by ``.ingest``
(``broker_access.ingest_username``), with the server's password: only the events leaf, to
read. A broker whose files predate it refuses that account; the server then receives the
events on its own connection, as without the child, and says what gives the broker the
account (``telecentre-server broker sync``).

The pipe carries frames: four bytes of length, then a pickle (from our own child, over our
own pipe) of ``("events", [(topic, payload, retain), …])`` or ``("state", {…})``. The child
reads its settings as one JSON line on its standard input, and leaves when that input
closes: the server stopped, or died.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import signal
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import paho.mqtt.client as mqtt

from protocol.mqtt import (
    NetworkLoop,
    describe_connect_error,
    describe_refusal,
    make_client,
    record_connect_errors,
    refused_account,
)
from protocol.workers import Worker

log = logging.getLogger(__name__)

HEADER = struct.Struct(">I")
RESTART_MIN_S = 1.0  # a child that died is started again after this, doubling
RESTART_MAX_S = 15.0
STOP_WAIT_S = 5.0

Deliver = Callable[[list[tuple[str, bytes, bool]]], None]


@dataclass(frozen=True)
class ReceiverConfig:
    """What the child needs to connect (sent on its standard input, never on its command
    line, where any local user could read the password)."""

    host: str
    port: int
    username: str
    password: str
    tls: bool
    ca_file: str | None
    subscription: str  # the events' topic filter, shared or not
    session_expiry_s: int  # 0 for a worker of a share group: it keeps no session


class EventReceiver:
    """The server's side: starts the child, reads its frames, starts it again if it dies.

    ``deliver`` gets each batch of events (topic, payload, retain) on the pump's thread;
    ``listening`` is set while the child is subscribed; ``on_refused(message)`` is called
    once if the broker refuses the child's account, and the child is not started again.
    """

    def __init__(
        self,
        config: ReceiverConfig,
        deliver: Deliver,
        on_refused: Callable[[str], None],
        on_listening: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self._deliver = deliver
        self._on_refused = on_refused
        self._on_listening = on_listening
        self.listening = threading.Event()
        self.refused: str | None = None
        self.error: str | None = "not started"
        self.starts = 0
        self.received = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._delay_s = 0.0
        self.worker = Worker("events-receiver", self._step)

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stopping.set()
        proc = self._proc
        if proc is not None:
            _close_quietly(proc.stdin)  # the child disconnects and leaves
            try:
                proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                log.warning("the events receiver did not leave within %.0f s: killed", STOP_WAIT_S)
                proc.kill()
                proc.wait()
        self.worker.stop()
        self.listening.clear()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """The last child's exit status once it has left (negative: killed by that signal)."""
        return self._proc.returncode if self._proc is not None else None

    def stats(self) -> dict[str, Any]:
        return {
            "process": self.refused is None,
            "pid": self.pid,
            "listening": self.listening.is_set(),
            "error": self.refused or self.error,
            "starts": self.starts,
            "received": self.received,
        }

    # -- the pump (a worker thread) ---------------------------------------------------------

    def _step(self) -> None:
        if self.refused is not None:
            self.worker.stopping.wait(1.0)
            return
        if self._delay_s and self.worker.stopping.wait(self._delay_s):
            return
        proc = self._spawn()
        try:
            self._pump(proc)
        finally:
            _close_quietly(proc.stdin)
            _close_quietly(proc.stdout)
            self.listening.clear()
            try:
                code = proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        if self.worker.stopping.is_set() or self.refused is not None:
            return
        self.error = f"the events receiver exited (code {code})"
        self._delay_s = min(max(self._delay_s * 2, RESTART_MIN_S), RESTART_MAX_S)
        log.error("%s; started again in %.0f s", self.error, self._delay_s)

    def _spawn(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.mqtt.receiver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died at once: the pump reads why
            proc.stdin.write(json.dumps(self.config.__dict__).encode() + b"\n")
            proc.stdin.flush()
        self._proc = proc
        self.starts += 1
        if self.worker.stopping.is_set():  # ``stop()`` came before it could see this child
            _close_quietly(proc.stdin)
        return proc

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        stream = proc.stdout
        assert stream is not None
        while True:
            frame = _read_frame(stream)
            if frame is None:
                return  # the child left
            kind, body = frame
            if kind == "events":
                self.received += len(body)
                self._deliver(body)
            elif kind == "state":
                self._state(body)

    def _state(self, state: dict[str, Any]) -> None:
        self.error = state.get("error")
        if state.get("refused"):
            self.refused = state["refused"]
            _close_quietly(self._proc.stdin if self._proc else None)
            self._on_refused(self.refused)
        elif state.get("listening"):
            self._delay_s = 0.0
            self.listening.set()
            self._on_listening()
        else:
            self.listening.clear()


def _close_quietly(stream: IO[bytes] | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError, ValueError):
            stream.close()


def _read_frame(stream: IO[bytes]) -> tuple[str, Any] | None:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)  # noqa: S301 - our own child, over our own pipe


# -- the child ------------------------------------------------------------------------------


class _Child:
    """The child's MQTT connection; writes its frames to ``out`` from the loop's thread."""

    def __init__(self, config: ReceiverConfig, out: IO[bytes]) -> None:
        self.config = config
        self._out = out
        self._batch: list[tuple[str, bytes, bool]] = []
        client, props = make_client(config.username, session_expiry_s=config.session_expiry_s)
        client.username_pw_set(config.username, config.password)
        if config.tls:
            client.tls_set(ca_certs=config.ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        record_connect_errors(client, self._on_connect_error)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        self._props = props
        self._loop = NetworkLoop(
            client, "events-receiver", min_delay_s=1, max_delay_s=15, after_turn=self._flush
        )

    def run(self, stdin: IO[bytes]) -> None:
        self._client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=30,
            clean_start=self.config.session_expiry_s == 0,
            properties=self._props,
        )
        self._loop.start()
        stdin.read()  # until the server closes it (or dies)
        self._loop.stop()

    def _send(self, kind: str, body: Any) -> None:
        data = pickle.dumps((kind, body), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._out.write(HEADER.pack(len(data)) + data)
            self._out.flush()
        except (BrokenPipeError, ValueError):
            os._exit(0)  # the server is gone: nothing left to hand the events to

    def _flush(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            self._send("events", batch)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._batch.append((msg.topic, msg.payload, bool(msg.retain)))

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            message = describe_refusal(reason, "the events receiver's account", "its password")
            if refused_account(reason):
                self._send("state", {"refused": message})
                return
            self._send("state", {"listening": False, "error": message})
            return
        client.subscribe(self.config.subscription, qos=1)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        refused = [r for r in reasons if r.is_failure]
        if refused:
            self._send(
                "state", {"listening": False, "error": f"subscription refused: {refused[0]}"}
            )
        else:
            self._send("state", {"listening": True})

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._flush()
        self._send("state", {"listening": False, "error": f"lost the broker: {reason}"})

    def _on_connect_error(self, exc: OSError) -> None:
        error = describe_connect_error(exc, self.config.host, self.config.port)
        self._send("state", {"listening": False, "error": error})


def main() -> None:
    # Ctrl-C at a terminal reaches the whole process group: the server stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s events-receiver %(levelname)s %(message)s"
    )
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the pipe
    line = stdin.readline()
    if not line:
        return
    config = ReceiverConfig(**json.loads(line))
    _Child(config, stdout).run(stdin)


if __name__ == "__main__":
    main()
