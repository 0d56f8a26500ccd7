"""Fail secure when the agent dies (issue 8, item 5).

A released GPIO output keeps its last level, so an agent killed while a door is open
would leave the strike energised. The test runs the real agent (``telecentre-edge run``)
as a subprocess on mock pins that live in files (``TELECENTRE_MOCK_PIN_DIR``: the level a
killed process left on a line is what the next process finds, as on a Pi), opens the door
with a signed remote unlock through a real broker, kills the agent with SIGKILL while the
relay is energised, then runs the unit file's own ``ExecStopPost=`` command line, as
systemd would, and reads the relay pin: locked.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from edge import relock
from edge.hardware.filepins import MOCK_PIN_DIR_ENV, read_pin, write_pin
from protocol import topics
from protocol.messages import Command, CommandResult, decode
from protocol.signing import Signer
from server.broker import LocalBroker
from tests.conftest import wait_until
from tests.deploy.support import SYSTEMD, executable, notify_socket
from tests.server.mqtt.support import Listener

DEVICE = "boitron-01"
RELAY = 17  # active-low board: energised when low, locked when high
UNIT_TOML = "/etc/telecentre/unit.toml"
AGENT_BIN = "/opt/telecentre/venv/bin/telecentre-edge"


def service_line(key: str) -> str:
    """The value of ``key`` in systemd/telecentre-edge.service's [Service] section."""
    text = (SYSTEMD / "telecentre-edge.service").read_text()
    values = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]
    assert len(values) == 1, f"{key} appears {len(values)} times"
    return values[0]


def as_installed_here(command: str, config: Path) -> list[str]:
    """The unit file's command line with this checkout's script and the test's config."""
    argv = shlex.split(command)
    assert argv[0] == AGENT_BIN and UNIT_TOML in argv
    args = [str(config) if a == UNIT_TOML else a for a in argv[1:]]
    return [executable("telecentre-edge"), *args]


def unit_config(tmp_path: Path, broker: LocalBroker, key_file: Path, signer: Signer) -> Path:
    conf = tmp_path / "unit.toml"
    conf.write_text(
        f"""
schema = 1
device_id = "{DEVICE}"
centre = "boitron"
badge_key_file = "{key_file}"
data_dir = "{tmp_path / "data"}"
pin_factory = "mock"
server_public_keys = ["{signer.public_hex}"]

[mqtt]
{broker.unit_mqtt(DEVICE)}
keepalive_s = 5

[[doors]]
id = "entree"
relay_pin = {RELAY}
relay_active_high = false
unlock_seconds = 60
[doors.reader]
kind = "fake"
"""
    )
    return conf


def unlock(listener: Listener, signer: Signer) -> CommandResult:
    """Send signed unlocks until one is executed (a unit whose clock is not synchronised
    refuses the first: it has no signed time yet, and takes it from that command)."""
    results = topics.topic(topics.COMMAND_RESULT, DEVICE)
    for _ in range(3):
        now = time.time()
        command = Command(
            command_id=str(uuid.uuid4()),
            device_id=DEVICE,
            action="unlock",
            door="entree",
            issued_at=now,
            expires_at=now + 30,
            requested_by="test",
        )
        listener.publish(topics.topic(topics.COMMAND, DEVICE), signer.sign(command))

        def answer(command_id: str = command.command_id) -> CommandResult | None:
            for message in listener.on(results):
                result = decode(CommandResult, message.payload)
                if result.command_id == command_id:
                    return result
            return None

        try:
            result = wait_until(answer, timeout=10, what="the unit's answer")
        except AssertionError:
            continue  # sent before the unit had subscribed: send another
        if result.result == "executed":
            return result
        assert result.reason == "clock_unsynced", result
    raise AssertionError("no unlock was executed")


def test_sigkill_while_energised_then_the_stop_step_relocks(
    tmp_path: Path, broker: LocalBroker, key_file: Path
) -> None:
    signer = Signer.generate()
    conf = unit_config(tmp_path, broker, key_file, signer)
    pins = tmp_path / "pins"
    listener = Listener(broker, topics.topic(topics.COMMAND_RESULT, DEVICE))
    with notify_socket() as systemd:
        env = {
            **os.environ,
            MOCK_PIN_DIR_ENV: str(pins),
            "NOTIFY_SOCKET": str(systemd.path),
            "WATCHDOG_USEC": "2000000",
        }
        agent = subprocess.Popen(
            as_installed_here(service_line("ExecStart"), conf),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "agent.log").open("w"),
        )
        try:
            assert systemd.wait_for("READY=1").startswith("READY=1")
            systemd.wait_for("WATCHDOG=1")  # its main loop feeds the watchdog
            assert read_pin(pins, RELAY) == ("output", 1.0)  # locked from the start

            unlock(listener, signer)
            assert read_pin(pins, RELAY) == ("output", 0.0)  # energised: the door is open

            agent.send_signal(signal.SIGKILL)
            assert agent.wait(timeout=10) == -signal.SIGKILL
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
            listener.close()
    # What the kernel does with a killed process's line: it stays as it was, energised.
    assert read_pin(pins, RELAY) == ("output", 0.0)

    stop_post = subprocess.run(
        as_installed_here(service_line("ExecStopPost"), conf),
        env={**os.environ, MOCK_PIN_DIR_ENV: str(pins)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stop_post.returncode == 0, stop_post.stderr
    assert "door entree: relay on GPIO 17 driven high (locked, active-low board)" in (
        stop_post.stdout
    )
    assert read_pin(pins, RELAY) == ("output", 1.0)  # locked


@pytest.fixture
def pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "pins"
    monkeypatch.setenv(MOCK_PIN_DIR_ENV, str(directory))
    return directory


TWO_DOORS = """
schema = 1
device_id = "belleme-01"
centre = "belleme"
badge_key_file = "badge.key"
data_dir = "data"
pin_factory = "mock"
server_public_keys = ["a0d10b3189fec5b33dd22f42fde87c7c82a6ad6fa20ce7e743486a6d70cc7e25"]
[[doors]]
id = "entree"
relay_pin = 17
[doors.reader]
kind = "fake"
[[doors]]
id = "reunion"
relay_pin = 26
relay_active_high = true
[doors.reader]
kind = "fake"
spi_device = 1
"""


def test_relock_drives_each_board_to_its_own_locked_level(
    pins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "unit.toml"
    conf.write_text(TWO_DOORS)
    write_pin(pins, 17, "output", 0)  # active-low, energised
    write_pin(pins, 26, "output", 1)  # active-high, energised
    assert relock.run(conf) == 0
    assert read_pin(pins, 17) == ("output", 1.0)
    assert read_pin(pins, 26) == ("output", 0.0)
    out = capsys.readouterr().out
    assert "door reunion: relay on GPIO 26 driven low (locked, active-high board)" in out


def test_a_config_broken_while_the_agent_ran_still_names_its_relays(
    pins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "unit.toml"
    conf.write_text(TWO_DOORS.replace('id = "reunion"', 'id = "reunion"\nunlock_secs = 5'))
    write_pin(pins, 26, "output", 1)
    assert relock.run(conf) == 0
    assert read_pin(pins, 26) == ("output", 0.0)
    assert read_pin(pins, 17) == ("output", 1.0)
    assert "doors[1].unlock_secs: unknown key; relocking the relays" in capsys.readouterr().err


def test_relock_says_so_when_no_relay_can_be_found(tmp_path: Path) -> None:
    conf = tmp_path / "unit.toml"
    conf.write_text("this is not toml [")
    assert relock.run(conf) == 2
    assert relock.run(tmp_path / "missing.toml") == 2
