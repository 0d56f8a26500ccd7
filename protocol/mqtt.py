"""paho-mqtt settings both sides must share: MQTT v5, callback API 2, no Nagle delay.

Neither mosquitto nor paho sets TCP_NODELAY by default; Nagle's algorithm meeting delayed
ACKs turned a 0.4 ms loopback round trip into 88 ms. Every client we ship sets it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def make_client(client_id: str, *, session_expiry_s: int) -> tuple[mqtt.Client, Properties]:
    """A v5 client with a persistent session; returns it with its CONNECT properties."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    client.on_socket_open = _set_nodelay
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    return client, props


def _set_nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    # A websocket or TLS wrapper may not have the option.
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def describe_connect_error(exc: BaseException, host: str, port: int) -> str:
    """One sentence for a connection that did not open (socket or TLS), naming the fix."""
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS to {where} refused: the broker's certificate did not verify "
            f"({exc.verify_message}): check the CA file and the host name"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS to {where} failed ({exc.reason or exc}): is the port a TLS listener?"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot reach {where}: connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"cannot reach {where}: timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot reach {where}: unknown host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot reach {where}: {exc.strerror.lower()}"
    return f"cannot reach {where}: {exc}"


def describe_refusal(reason: Any, user_setting: str, password_setting: str) -> str:
    """One sentence for a CONNACK that refused us, naming the settings to check."""
    code = getattr(reason, "value", reason)
    if code in (134, 135, 4, 5):  # bad user name or password / not authorised (v5, v3)
        return (
            f"not authorised ({reason}): check {user_setting} / {password_setting}"
            " and that the account exists on the broker"
        )
    return f"broker refused the connection: {reason}"


def record_connect_errors(client: mqtt.Client, on_error: Any) -> None:
    """Call ``on_error(exc)`` with the exception of every failed (re)connection attempt.

    paho's loop swallows it (it calls ``on_connect_fail`` without it): wrap ``reconnect``.
    """
    original = client.reconnect

    def reconnect() -> Any:
        try:
            return original()
        except OSError as exc:
            on_error(exc)
            raise

    client.reconnect = reconnect  # type: ignore[method-assign]
