"""The simulated units' side of MQTT v5: just what a unit sends and reads, over TLS.

The benchmarks load one server with thousands of units from one process on the server's
own machine, so every microsecond the units spend is taken from the server measured. paho
spends most of a unit's time on its own machinery (a message object, a lock, a reason code
and a properties object per packet: 130 µs of CPU an event at national scale, a third of
the machine). This client does only what the benchmark's units need: CONNECT with an
account, SUBSCRIBE QoS 1 to their ack topic, PUBLISH QoS 1 within the broker's Receive
Maximum, PUBACK read, QoS 0 and 1 PUBLISH received, PINGREQ, DISCONNECT (MQTT 5.0, OASIS
standard). The server, the broker and what goes over the wire are those of production:
real TLS sockets, real accounts under the real ACL, the same packets paho sends.

Nothing here is used outside ``bench``: units in the field run ``edge``, on paho.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections import deque
from collections.abc import Callable

CONNECT, CONNACK, PUBLISH, PUBACK = 0x10, 0x20, 0x30, 0x40
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 0x82, 0x90, 0xC0, 0xD0, 0xE0

# Property identifiers by the size of their value (MQTT 5.0, 2.2.2.2), to skip them.
_BYTE = frozenset((0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A))
_U16 = frozenset((0x13, 0x21, 0x22, 0x23))
_U32 = frozenset((0x02, 0x11, 0x18, 0x27))
_STRING = frozenset((0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F))
RECEIVE_MAXIMUM = 0x21
USER_PROPERTY = 0x26
SUBSCRIPTION_ID = 0x0B


class ProtocolError(RuntimeError):
    """The broker sent what a unit cannot take: a refusal, or a packet that does not parse."""


def varint(n: int) -> bytes:
    """MQTT's variable byte integer (1.5.5)."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(raw)) + raw


def _read_varint(buf: bytes | bytearray, at: int) -> tuple[int, int]:
    """(value, position after it), or (-1, at) when ``buf`` ends inside it."""
    value, shift = 0, 0
    for k in range(4):
        if at + k >= len(buf):
            return -1, at
        byte = buf[at + k]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at + k + 1
        shift += 7
    raise ProtocolError("a variable byte integer longer than four bytes")


def properties(buf: bytes, at: int) -> tuple[dict[int, int], int]:
    """The integer properties from ``at`` (the others skipped), and the position after."""
    length, at = _read_varint(buf, at)
    end, found = at + length, {}
    while at < end:
        pid = buf[at]
        at += 1
        if pid in _BYTE:
            found[pid], at = buf[at], at + 1
        elif pid in _U16:
            found[pid], at = int.from_bytes(buf[at : at + 2], "big"), at + 2
        elif pid in _U32:
            found[pid], at = int.from_bytes(buf[at : at + 4], "big"), at + 4
        elif pid == SUBSCRIPTION_ID:
            found[pid], at = _read_varint(buf, at)
        elif pid in _STRING:
            at += 2 + int.from_bytes(buf[at : at + 2], "big")
        elif pid == USER_PROPERTY:
            for _ in range(2):
                at += 2 + int.from_bytes(buf[at : at + 2], "big")
        else:
            raise ProtocolError(f"unknown property 0x{pid:02x}")
    return found, end


class Unit:
    """One unit's connection. Opened blocking (TLS handshake and CONNECT), then used
    non-blocking from one selector loop: ``publish`` and ``write`` send, ``read`` takes what
    the socket holds and calls ``on_message(topic, payload)`` for each PUBLISH received."""

    def __init__(
        self,
        context: ssl.SSLContext,
        port: int,
        user: str,
        password: str,
        *,
        keepalive_s: int = 120,
        on_message: Callable[[str, bytes], None] | None = None,
        on_writable: Callable[[Unit], None] | None = None,
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.sock.setblocking(False)
        self.on_message = on_message
        self.on_writable = on_writable  # called when ``out`` is left with bytes to send
        self.connected = False  # CONNACK received
        self.subscribed = False  # SUBACK received
        self.window = 65_535  # the broker's Receive Maximum, from its CONNACK
        self.inflight = 0  # QoS 1 PUBLISHes sent and not acknowledged
        self.waiting: deque[bytes] = deque()  # PUBLISHes beyond the window
        self.out = bytearray()
        self._in = bytearray()
        self._mid = 0
        body = (
            _string("MQTT")
            + bytes((5, 0x80 | 0x40 | 0x02))  # MQTT 5; user name, password, clean start
            + struct.pack("!H", keepalive_s)
            + b"\x00"  # no properties: the session ends with the connection
            + _string(user)  # the client id is the account, as the units' is
            + _string(user)
            + _string(password)
        )
        self._send(bytes((CONNECT,)) + varint(len(body)) + body)

    def fileno(self) -> int:
        return self.sock.fileno()

    def _next_mid(self) -> int:
        self._mid = self._mid % 65_535 + 1
        return self._mid

    def subscribe(self, topic: str, qos: int = 1) -> None:
        body = struct.pack("!H", self._next_mid()) + b"\x00" + _string(topic) + bytes((qos,))
        self._send(bytes((SUBSCRIBE,)) + varint(len(body)) + body)

    def publish(self, topic: bytes, payload: bytes) -> None:
        """QoS 1 on ``topic`` (its length prefix included: ``topic_field``)."""
        rest = struct.pack("!H", self._next_mid()) + b"\x00" + payload
        packet = b"\x32" + varint(len(topic) + len(rest)) + topic + rest
        if self.inflight >= self.window:
            self.waiting.append(packet)
            return
        self.inflight += 1
        self._send(packet)

    def ping(self) -> None:
        self._send(bytes((PINGREQ, 0)))

    def disconnect(self) -> None:
        self._send(bytes((DISCONNECT, 0)))

    def busy(self) -> bool:
        """Whether anything is still to be sent or acknowledged by the broker."""
        return bool(self.inflight or self.waiting or self.out)

    def _send(self, packet: bytes) -> None:
        if self.out:
            self.out += packet
            return
        try:
            sent = self.sock.send(packet)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            sent = 0
        if sent < len(packet):
            self.out += packet[sent:]
            if self.on_writable:
                self.on_writable(self)

    def write(self) -> bool:
        """Send what is left in ``out``; whether it is empty now."""
        while self.out:
            try:
                sent = self.sock.send(self.out)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                return False
            del self.out[:sent]
        return True

    def read(self) -> None:
        """Take everything the socket holds now and handle every whole packet in it."""
        while True:
            try:
                data = self.sock.recv(65_536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                break
            if not data:
                raise ProtocolError("the broker closed the connection")
            self._in += data
            if not self.sock.pending():
                break
        buf, at = self._in, 0
        while len(buf) - at >= 2:
            length, start = _read_varint(buf, at + 1)
            if length < 0 or start + length > len(buf):
                break
            self._handle(buf[at], bytes(buf[start : start + length]))
            at = start + length
        del buf[:at]

    def _handle(self, kind: int, body: bytes) -> None:
        kind_only = kind & 0xF0
        if kind_only == PUBLISH:
            qos = (kind >> 1) & 3
            at = 2 + int.from_bytes(body[:2], "big")
            topic = body[2:at].decode()
            if qos:
                mid = body[at : at + 2]
                self._send(bytes((PUBACK, 2)) + mid)
                at += 2
            _, at = properties(body, at)
            if self.on_message:
                self.on_message(topic, body[at:])
        elif kind_only == PUBACK:
            if len(body) > 2 and body[2] >= 0x80:
                raise ProtocolError(f"the broker refused a PUBLISH: reason 0x{body[2]:02x}")
            self.inflight -= 1
            while self.waiting and self.inflight < self.window:
                self.inflight += 1
                self._send(self.waiting.popleft())
        elif kind_only == CONNACK:
            if body[1] >= 0x80:
                raise ProtocolError(f"the broker refused the connection: reason 0x{body[1]:02x}")
            found, _ = properties(body, 2)
            self.window = found.get(RECEIVE_MAXIMUM, 65_535)
            self.connected = True
        elif kind_only == SUBACK:
            _, at = properties(body, 2)
            if any(code >= 0x80 for code in body[at:]):
                raise ProtocolError(f"the broker refused a subscription: {body[at:].hex()}")
            self.subscribed = True
        elif kind_only not in (PINGRESP,):
            raise ProtocolError(f"a packet a unit does not expect: 0x{kind:02x}")


def topic_field(topic: str) -> bytes:
    """A topic as ``Unit.publish`` takes it: length-prefixed UTF-8, built once per unit."""
    return _string(topic)


def tls_context(ca_file: str) -> ssl.SSLContext:
    """Verify the broker as the units do: its certificate under our CA, for 127.0.0.1."""
    return ssl.create_default_context(cafile=ca_file)
