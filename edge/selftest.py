"""``telecentre-edge selftest``: what a technician runs after wiring a unit.

Every check runs, whatever failed before it, and the result is one table: ``ok``,
``warn`` (works, but look: a door left open, nothing to compare the key with) or ``FAIL``.
The exit status is 1 when any check failed, 0 otherwise (warnings included).

The checks: the config; the badge key against the fingerprint the server publishes in
its status (or the config's ``badge_key_fingerprint``); the server's public keys against
the centre's signed list; each reader's chip (its version register); each relay
(``--pulse`` clicks it once); each input (``--inputs`` asks the technician to work each
one and waits for it, naming the one that did not change); the broker, really logged in
with the unit's account over TLS and subscribed; the clock's synchronisation.

Run it with the agent stopped (``systemctl stop telecentre-edge``): it needs the pins,
and it logs in to the broker with the unit's own account.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import paho.mqtt.client as mqtt

from edge.clock import clock_synced
from edge.config import ConfigError, EdgeConfig
from edge.hardware import HardwareError
from edge.hardware.build import Hardware, build
from edge.link import SESSION_EXPIRY_S, log_in
from protocol import topics
from protocol.badges import key_fingerprint, parse_key
from protocol.errors import ProtocolError
from protocol.messages import ListHead, ServerStatus, decode
from protocol.mqtt import (
    describe_connect_error,
    describe_refusal,
    make_client,
    record_connect_errors,
)
from protocol.signing import SigningKeyError, Verifier

Outcome = Literal["ok", "warn", "FAIL"]
PULSE_S = 0.3  # how long --pulse energises a relay: one audible click
BROKER_TIMEOUT_S = 10.0
RETAINED_WAIT_S = 2.0  # after the subscription: time for the retained messages to arrive
GPIO = "unit: GPIO"  # the error key when no pin factory could be made


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    detail: str


@dataclass
class BrokerAnswer:
    """What the broker check learnt: whether it logged in and subscribed, and the
    retained server status and list head it received."""

    error: str | None = None
    subscribed: bool = False
    server_status: bytes | None = None
    list_head: bytes | None = None
    done: threading.Event = field(default_factory=threading.Event)


class SelfTest:
    """The checks of one unit. ``prompt`` tells the technician what to do for an input
    (the test suite works the pin instead); ``sleep`` is how long a relay pulse lasts."""

    def __init__(
        self,
        config: EdgeConfig,
        *,
        hardware: Hardware | None = None,
        hardware_errors: dict[str, str] | None = None,
        pulse: bool = False,
        inputs: bool = False,
        input_timeout_s: float = 30.0,
        prompt: Callable[[str], None] = lambda text: print(f">>> {text}", flush=True),
        synced: Callable[[], bool] = clock_synced,
        broker_timeout_s: float = BROKER_TIMEOUT_S,
    ) -> None:
        self.config = config
        self.errors: dict[str, str] = dict(hardware_errors or {})
        self.hardware = hardware if hardware is not None else self._build()
        self.pulse = pulse
        self.inputs = inputs
        self.input_timeout_s = input_timeout_s
        self.prompt = prompt
        self.synced = synced
        self.broker_timeout_s = broker_timeout_s
        self.checks: list[Check] = []

    def _build(self) -> Hardware:
        try:
            return build(self.config, errors=self.errors)
        except HardwareError as exc:  # no pin factory at all: no device can be checked
            self.errors[GPIO] = str(exc)
            return Hardware()

    def add(self, name: str, outcome: Outcome, detail: str) -> None:
        self.checks.append(Check(name, outcome, detail))

    @property
    def failed(self) -> bool:
        return any(c.outcome == "FAIL" for c in self.checks)

    # -- the whole run -------------------------------------------------------------------------

    def run(self) -> list[Check]:
        cfg = self.config
        self.add("config", "ok", f"{cfg.device_id} at centre {cfg.centre} (hash {cfg.config_hash})")
        answer = self.ask_broker()
        self.check_badge_key(answer)
        self.check_server_keys(answer)
        self.check_hardware()
        self.check_broker(answer)
        self.add(
            "clock",
            "ok" if self.synced() else "FAIL",
            "synchronised"
            if self.synced()
            else "not synchronised: check NTP (timedatectl timesync-status); until it is, "
            "the unit decides on its own trusted clock",
        )
        return self.checks

    def close(self) -> None:
        hw = self.hardware
        for group in (hw.readers, hw.exit_readers, hw.locks, hw.contacts, hw.sensors):
            for device in group.values():
                device.close()
        hw.close()

    # -- keys ----------------------------------------------------------------------------------

    def check_badge_key(self, answer: BrokerAnswer) -> None:
        cfg = self.config
        try:
            key = parse_key(cfg.badge_key_file.read_text())
        except OSError as exc:
            self.add("badge key", "FAIL", f"cannot read {cfg.badge_key_file} ({exc.strerror})")
            return
        except ValueError as exc:
            self.add("badge key", "FAIL", f"{cfg.badge_key_file}: {exc}")
            return
        ours = key_fingerprint(key)
        expected: list[tuple[str, str]] = []
        if cfg.badge_key_fingerprint:
            expected.append(("the config's badge_key_fingerprint", cfg.badge_key_fingerprint))
        server = self._server_status(answer)
        if server is not None and server.badge_key_fp:
            expected.append(("the server's", server.badge_key_fp))
        wrong = [(who, fp) for who, fp in expected if fp != ours]
        if wrong:
            who, fp = wrong[0]
            self.add(
                "badge key",
                "FAIL",
                f"{cfg.badge_key_file} has fingerprint {ours}, {who} is {fp}: this is not the "
                "network's key, every card would read as unknown",
            )
        elif expected:
            names = " and ".join(who for who, _ in expected)
            self.add("badge key", "ok", f"fingerprint {ours} matches {names}")
        else:
            self.add(
                "badge key",
                "warn",
                f"fingerprint {ours}; nothing to compare it with (no server status from the "
                "broker, no badge_key_fingerprint in the config)",
            )

    def _server_status(self, answer: BrokerAnswer) -> ServerStatus | None:
        if answer.server_status is None:
            return None
        try:
            return decode(ServerStatus, answer.server_status)
        except ProtocolError:
            return None

    def check_server_keys(self, answer: BrokerAnswer) -> None:
        try:
            verifier = Verifier(self.config.server_public_keys)
        except SigningKeyError as exc:
            self.add("server keys", "FAIL", f"server_public_keys: {exc}")
            return
        ids = ", ".join(verifier.key_ids)
        if answer.list_head is None:
            self.add(
                "server keys",
                "warn",
                f"key ids {ids}; no list of centre {self.config.centre} on the broker to "
                "check them against (none published yet, or the broker was not reached)",
            )
            return
        try:
            head = verifier.open(ListHead, answer.list_head)
        except ProtocolError as exc:
            self.add(
                "server keys",
                "FAIL",
                f"the centre's list does not verify with key ids {ids} ({exc.reason}: {exc}): "
                "server_public_keys is not the server's",
            )
            return
        self.add("server keys", "ok", f"key ids {ids} verify the centre's list (v{head.version})")

    # -- hardware ------------------------------------------------------------------------------

    def check_hardware(self) -> None:
        hw = self.hardware
        if GPIO in self.errors:
            self.add("GPIO", "FAIL", f"{self.errors[GPIO]}: no input or output can be checked")
            return
        if self.errors.get("unit: tamper switch"):
            self.add("unit tamper switch", "FAIL", self.errors["unit: tamper switch"])
        elif None in hw.tampers:
            pin = self.config.tamper_pin
            self.check_switch("unit tamper switch", hw.tampers[None], "open and close the lid", pin)
        for door in self.config.doors:
            where = f"door {door.id}"
            readers = [("card reader", hw.readers)]
            if door.exit_reader is not None:
                readers.append(("exit reader", hw.exit_readers))
            for what, group in readers:
                name = f"{where} {what}"
                if f"{where}: {what}" in self.errors:
                    self.add(name, "FAIL", self.errors[f"{where}: {what}"])
                    continue
                try:
                    self.add(name, "ok", group[door.id].describe())
                except HardwareError as exc:
                    self.add(name, "FAIL", str(exc))
            self.check_relay(door.id, door.relay_pin)
            if door.contact_pin is not None:
                self.check_contact(door.id, door.contact_pin)
            if door.exit_button_pin is not None:
                self.check_button(door.id, door.exit_button_pin)
            if door.tamper_pin is not None:
                name = f"{where} tamper switch"
                if f"{where}: tamper switch" in self.errors:
                    self.add(name, "FAIL", self.errors[f"{where}: tamper switch"])
                else:
                    action = "open and close the reader's housing"
                    self.check_switch(name, hw.tampers[door.id], action, door.tamper_pin)
            for what in door.feedback.pins:
                if f"{where}: {what}" in self.errors:
                    self.add(f"{where} {what}", "FAIL", self.errors[f"{where}: {what}"])
        for room in self.config.rooms:
            self.check_motion(room.id, room.motion_pin)

    def check_relay(self, door_id: str, pin: int) -> None:
        name = f"door {door_id} relay"
        if f"door {door_id}: relay" in self.errors:
            self.add(name, "FAIL", self.errors[f"door {door_id}: relay"])
            return
        lock = self.hardware.locks[door_id]
        if lock.is_unlocked:
            self.add(name, "FAIL", f"GPIO {pin} is energised at start: check relay_active_high")
            return
        if not self.pulse:
            self.add(name, "ok", f"GPIO {pin} locked (--pulse clicks it once)")
            return
        lock.unlock()
        threading.Event().wait(PULSE_S)
        lock.lock()
        if lock.is_unlocked:
            self.add(name, "FAIL", f"GPIO {pin} did not go back to locked after the pulse")
        else:
            self.add(name, "ok", f"GPIO {pin} pulsed {PULSE_S:g} s and locked again: did it click?")

    def check_contact(self, door_id: str, pin: int) -> None:
        name = f"door {door_id} contact"
        if f"door {door_id}: door contact" in self.errors:
            self.add(name, "FAIL", self.errors[f"door {door_id}: door contact"])
            return
        contact = self.hardware.contacts[door_id]
        if self.inputs:
            changed = self._wait_for(contact.on_change, f"open door {door_id}, then close it")
            self._input_result(name, pin, changed, "opened")
        if not contact.is_closed:
            self.add(name, "warn", f"GPIO {pin}: the door is open")
        elif not self.inputs:
            self.add(name, "ok", f"GPIO {pin}: closed")

    def check_button(self, door_id: str, pin: int) -> None:
        name = f"door {door_id} exit button"
        if f"door {door_id}: exit button" in self.errors:
            self.add(name, "FAIL", self.errors[f"door {door_id}: exit button"])
            return
        if not self.inputs:
            self.add(name, "ok", f"GPIO {pin} set up (--inputs asks to press it)")
            return
        button = self.hardware.exit_buttons[door_id]
        pressed = self._wait_for(
            lambda cb: button.on_press(lambda: cb(True)), f"press door {door_id}'s exit button"
        )
        self._input_result(name, pin, pressed, "pressed")

    def check_switch(self, name: str, switch: Any, action: str, pin: int | None) -> None:
        if self.inputs:
            changed = self._wait_for(switch.on_change, f"{name}: {action}")
            self._input_result(name, pin, changed, "changed")
        if not switch.is_closed:
            self.add(name, "warn", f"GPIO {pin}: open, the enclosure is not shut")
        elif not self.inputs:
            self.add(name, "ok", f"GPIO {pin}: closed")

    def check_motion(self, room_id: str, pin: int) -> None:
        name = f"room {room_id} motion sensor"
        if f"room {room_id}: motion sensor" in self.errors:
            self.add(name, "FAIL", self.errors[f"room {room_id}: motion sensor"])
            return
        sensor = self.hardware.sensors[room_id]
        if not self.inputs:
            state = "motion" if sensor.motion_detected else "quiet"
            self.add(name, "ok", f"GPIO {pin}: {state} (--inputs asks to walk past it)")
            return
        moved = self._wait_for(sensor.on_change, f"walk in front of room {room_id}'s sensor")
        self._input_result(name, pin, moved, "saw motion")

    def _wait_for(self, subscribe: Callable[[Callable[[bool], None]], None], what: str) -> bool:
        """Ask the technician to work an input; True when it changed in time."""
        changed = threading.Event()
        subscribe(lambda *_: changed.set())
        self.prompt(f"{what} (within {self.input_timeout_s:g} s)")
        return changed.wait(self.input_timeout_s)

    def _input_result(self, name: str, pin: int | None, changed: bool, verb: str) -> None:
        where = f"GPIO {pin}"
        if changed:
            self.add(name, "ok", f"{where}: {verb}")
        else:
            self.add(
                name,
                "FAIL",
                f"{where}: did not change within {self.input_timeout_s:g} s: check its wiring",
            )

    # -- broker --------------------------------------------------------------------------------

    def ask_broker(self) -> BrokerAnswer:
        """Log in with the unit's account, subscribe to the server's status and the centre's
        list head, and keep the retained copies that come."""
        cfg = self.config
        answer = BrokerAnswer()
        try:
            client, props = make_client(f"edge-{cfg.device_id}", session_expiry_s=SESSION_EXPIRY_S)
            log_in(client, cfg.mqtt)
        except ConfigError as exc:
            answer.error = str(exc)
            return answer
        wanted = [topics.topic(topics.SERVER_STATUS), topics.topic(topics.LIST_HEAD, cfg.centre)]
        got_all = threading.Event()

        def failed(message: str) -> None:
            if answer.error is None:
                answer.error = message
            answer.done.set()

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                failed(describe_refusal(reason, "mqtt.username", "mqtt.password_file"))
                return
            c.subscribe([(name, 1) for name in wanted])

        def on_subscribe(_c: mqtt.Client, _u: Any, _m: Any, codes: Any, _p: Any) -> None:
            refused = [name for name, code in zip(wanted, codes, strict=False) if code.is_failure]
            if refused:
                failed(f"logged in, but the broker refused the subscription to {refused[0]}")
                return
            answer.subscribed = True
            answer.done.set()

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            if msg.topic == wanted[0]:
                answer.server_status = msg.payload
            elif msg.topic == wanted[1]:
                answer.list_head = msg.payload
            if answer.server_status is not None and answer.list_head is not None:
                got_all.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        record_connect_errors(
            client, lambda exc: failed(describe_connect_error(exc, cfg.mqtt.host, cfg.mqtt.port))
        )
        try:
            client.connect_async(
                cfg.mqtt.host,
                cfg.mqtt.port,
                keepalive=cfg.mqtt.keepalive_s,
                properties=props,
                clean_start=False,
            )
            client.loop_start()
            if not answer.done.wait(self.broker_timeout_s):
                failed(
                    f"no answer from {cfg.mqtt.host}:{cfg.mqtt.port} within "
                    f"{self.broker_timeout_s:g} s"
                )
            elif answer.subscribed:
                got_all.wait(RETAINED_WAIT_S)
        finally:
            client.disconnect()
            client.loop_stop()
        return answer

    def check_broker(self, answer: BrokerAnswer) -> None:
        mq = self.config.mqtt
        where = f"{mq.host}:{mq.port}"
        if answer.error is not None:
            self.add("broker", "FAIL", answer.error)
            return
        how = "over TLS" if mq.tls else "WITHOUT TLS"
        who = f"as {mq.username}" if mq.username else "anonymously"
        outcome: Outcome = "ok" if mq.tls and mq.username else "warn"
        self.add("broker", outcome, f"{where}: logged in {who} {how}, subscribed")


def print_table(checks: list[Check], out: Callable[[str], None] = print) -> None:
    width = max(len(c.name) for c in checks)
    out(f"{'check':<{width}}  result  detail")
    for c in checks:
        out(f"{c.name:<{width}}  {c.outcome:<6}  {c.detail}")
    failed = sum(c.outcome == "FAIL" for c in checks)
    warned = sum(c.outcome == "warn" for c in checks)
    out(f"{len(checks)} checks: {failed} failed, {warned} warnings")
