"""The units' events, received in a process of their own.

One interpreter runs one thread at a time: with paho's network thread receiving the units'
events beside the writer that stores them, the server's process stopped at about one core
while the machine had more (docs/performance.md). With ``ingest_process`` (the default) a
child process, ``python -m server.mqtt.receiver``, holds a second MQTT connection that
subscribes to the units' events alone (``telecentre/+/event``, or ``$share/<group>/…`` for
a worker of a share group) and hands them, a batch per turn of its network loop, to the
server through a pipe; the server decodes, stores and commits them as before. The acks go
back the other way: after the durable commit the server hands the child what to
acknowledge (``AckOrder``s), and the child signs and publishes them on its connection, so
signing and paho's publishing leave the server's interpreter for this one. The child only
parses MQTT and signs: a crash loses nothing (a unit sends again what is not acked).

Its broker account is the server's user name followed by ``.ingest``
(``broker_access.ingest_username``), with the server's password: the events leaf, to read,
and the acks leaf, to write. A broker whose files predate it refuses that account; the
server then receives the events on its own connection, as without the child, and says what
gives the broker the account (``telecentre-server broker sync``). A broker whose files
gave the account the events alone refuses its acks: the child learns it at each subscribe
from one QoS 1 probe on the acks leaf of no unit (``PROBE_TOPIC``: the broker answers
"not authorised"), and the server then publishes the acks itself and says the same.

The pipes carry frames: four bytes of length, then a pickle (our own processes, over our
own pipes). The child writes ``("events", [(topic, payload, retain), …])`` and
``("state", {…})``; the server writes ``("acks", [AckOrder, …])``. The child reads its
settings (with the server's signing key, never on a command line) as one JSON line on its
standard input, then the server's frames, and leaves when that input closes: the server
stopped, or died.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import select
import signal
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import paho.mqtt.client as mqtt

from protocol import topics
from protocol.mqtt import (
    NetworkLoop,
    describe_connect_error,
    describe_refusal,
    make_client,
    record_connect_errors,
    refused_account,
)
from protocol.signing import Signer
from protocol.workers import Worker, freeze_startup_objects
from server.mqtt.acks import AckOrder, signed_acks

log = logging.getLogger(__name__)

HEADER = struct.Struct(">I")
RESTART_MIN_S = 1.0  # a child that died is started again after this, doubling
RESTART_MAX_S = 15.0
STOP_WAIT_S = 5.0
# The acks leaf of no unit (unit ids are a-z, 0-9 and '-'): under the ACL's ``telecentre/+/ack``
# and read by nobody, so a QoS 1 publish there tells whether the broker takes our acks.
PROBE_TOPIC = f"{topics.BASE}/_probe/{topics.ACK.leaf}"
ACKS_WRITE_WAIT_S = 1.0  # a child that takes no acks this long is stuck: it is replaced

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
    signing_key: str | None = None  # the server's Ed25519 key (hex): the child signs acks


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
        self.acking = threading.Event()  # the child publishes acks (``forward_acks``)
        self.acks_refused: str | None = None  # why the broker refuses the child's acks
        self.refused: str | None = None
        self.error: str | None = "not started"
        self.starts = 0
        self.received = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdin_lock = threading.Lock()  # the acker writes, the pump and ``stop`` close
        self._stdin_fd: int | None = None
        self._delay_s = 0.0
        self.worker = Worker("events-receiver", self._step)

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stopping.set()
        proc = self._proc
        if proc is not None:
            self._close_stdin(proc)  # the child disconnects and leaves
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
            "acks": self.acking.is_set(),
            "acks_error": self.acks_refused,
        }

    def forward_acks(self, orders: list[AckOrder]) -> bool:
        """Hand ``orders`` to the child, which signs and publishes them. False when it cannot
        take them (none running, its broker refuses its acks, it died, or it took nothing
        for ``ACKS_WRITE_WAIT_S``: it is then replaced): the caller publishes them itself.
        A frame is written whole or the child that holds part of it is killed, so an order
        is either the child's alone or the caller's (twice is harmless: acks repeat)."""
        if not self.acking.is_set():
            return False
        data = pickle.dumps(("acks", orders), protocol=pickle.HIGHEST_PROTOCOL)
        frame = memoryview(HEADER.pack(len(data)) + data)
        with self._stdin_lock:
            fd, proc = self._stdin_fd, self._proc
            if fd is None or proc is None:
                return False
            deadline = time.monotonic() + ACKS_WRITE_WAIT_S
            while frame:
                try:
                    frame = frame[os.write(fd, frame) :]
                    continue
                except BlockingIOError:
                    pass
                except OSError:  # the child left
                    return False
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [fd], [], left)[1]:
                    log.error(
                        "the events receiver took no acks for %.0f s: started again",
                        ACKS_WRITE_WAIT_S,
                    )
                    self.acking.clear()
                    proc.kill()
                    return False
        return True

    def _close_stdin(self, proc: subprocess.Popen[bytes]) -> None:
        with self._stdin_lock:
            if proc is self._proc:
                self._stdin_fd = None
            _close_quietly(proc.stdin)

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
            self.acking.clear()
            self._close_stdin(proc)
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
        os.set_blocking(proc.stdin.fileno(), False)  # acks never block (``forward_acks``)
        with self._stdin_lock:
            self._proc = proc
            self._stdin_fd = proc.stdin.fileno()
        self.starts += 1
        if self.worker.stopping.is_set():  # ``stop()`` came before it could see this child
            self._close_stdin(proc)
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
        if "acks" in state:
            self._acks_state(state["acks"])
            return
        self.error = state.get("error")
        if state.get("refused"):
            self.refused = state["refused"]
            if self._proc is not None:
                self._close_stdin(self._proc)
            self._on_refused(self.refused)
        elif state.get("listening"):
            self._delay_s = 0.0
            self.listening.set()
            self._on_listening()
        else:
            self.acking.clear()  # the child's publishes would be lost until it is back
            self.listening.clear()

    def _acks_state(self, refused: str | None) -> None:
        """The child's probe: None when the broker takes its acks, else why not."""
        if refused is None:
            self.acks_refused = None
            self.acking.set()
            return
        self.acking.clear()
        if refused != self.acks_refused:
            log.error(
                "the broker refuses the acks of the events receiver's account %s (%s): this "
                "process publishes them instead; `telecentre-server broker sync` gives that "
                "account the acks (then restart the server)",
                self.config.username,
                refused,
            )
        self.acks_refused = refused


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
        key = config.signing_key
        self._signer = Signer.from_private_bytes(bytes.fromhex(key)) if key else None
        self._probe_mid: int | None = None
        client, props = make_client(config.username, session_expiry_s=config.session_expiry_s)
        client.username_pw_set(config.username, config.password)
        if config.tls:
            client.tls_set(ca_certs=config.ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        record_connect_errors(client, self._on_connect_error)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
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
        while (frame := _read_frame(stdin)) is not None:  # until the server closes it
            kind, body = frame
            if kind == "acks":
                self._publish_acks(body)
        self._loop.stop()

    def _publish_acks(self, orders: list[AckOrder]) -> None:
        if self._signer is None:
            return  # never forwarded: the server publishes them when we say nothing
        for order in orders:
            where = topics.topic(topics.ACK, order[0])
            for payload in signed_acks(self._signer, order):
                self._client.publish(where, payload, qos=topics.ACK.qos)

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
            if self._signer is not None:  # does the broker take our acks? (``PROBE_TOPIC``)
                self._probe_mid = client.publish(PROBE_TOPIC, b"", qos=1).mid

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        if mid == self._probe_mid:
            self._probe_mid = None
            self._send("state", {"acks": str(reason) if reason.is_failure else None})

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._flush()
        self._probe_mid = None  # its answer is not coming; the next subscribe asks again
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
    child = _Child(config, stdout)
    freeze_startup_objects()
    child.run(stdin)


if __name__ == "__main__":
    main()
