"""The systemd units: `systemd-analyze verify` clean, and the keys the design requires."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edge import config as edge_config
from server import envfile
from tests.deploy.support import CENTRES, ROOT, SYSTEMD

UNITS = sorted(p for p in SYSTEMD.iterdir() if p.is_file())
DROP_IN = SYSTEMD / "mosquitto.service.d" / "telecentre.conf"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value in order (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {raw!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {raw!r} is not key=value"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict[str, dict[str, list[str]]], key: str, section: str = "Service") -> str:
    values = unit[section][key]
    assert len(values) == 1, f"{key} given {len(values)} times"
    return values[0]


HARDENED = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
}


def assert_hardened(unit: dict[str, dict[str, list[str]]]) -> None:
    for key, value in HARDENED.items():
        assert one(unit, key) == value, key


def test_the_agent_restarts_always_feeds_a_watchdog_and_relocks_after_any_stop() -> None:
    unit = parse_unit(SYSTEMD / "telecentre-edge.service")
    assert one(unit, "Type") == "notify"
    assert one(unit, "Restart") == "always"
    assert int(one(unit, "WatchdogSec")) > 0
    assert one(unit, "StartLimitIntervalSec", "Unit") == "0"
    start, stop_post = one(unit, "ExecStart").split(), one(unit, "ExecStopPost").split()
    assert start[0] == stop_post[0]  # the same installed program
    assert start[1:] == ["run", "--config", "/etc/telecentre/unit.toml"]
    assert stop_post[1:] == ["relock", "--config", "/etc/telecentre/unit.toml"]
    assert one(unit, "User") == one(unit, "Group") == "telecentre"
    assert one(unit, "SupplementaryGroups").split() == ["gpio", "spi"]
    # lgpio creates its notification pipes in the working directory: a writable one.
    assert one(unit, "WorkingDirectory") == "/run/" + one(unit, "RuntimeDirectory")
    assert_hardened(unit)
    assert "PrivateDevices" not in unit["Service"]  # it needs /dev/gpiochip* and spidev
    writable = one(unit, "ReadWritePaths").split()
    for path in CENTRES:  # every pilot unit's outbox is writable, nothing else
        assert str(edge_config.load(path).data_dir) in writable


def test_the_server_runs_alone_with_its_settings_file_and_a_watchdog() -> None:
    unit = parse_unit(SYSTEMD / "telecentre-server.service")
    assert one(unit, "Type") == "notify"
    assert one(unit, "Restart") == "always"
    assert int(one(unit, "WatchdogSec")) > 0
    assert one(unit, "EnvironmentFile") == "/etc/telecentre/server.env"
    assert one(unit, "ExecStart").split()[1:] == [
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
    ]
    assert one(unit, "User") == one(unit, "Group") == "telecentre-server"
    assert "SupplementaryGroups" not in unit["Service"]
    assert one(unit, "UMask") == "0077"  # the database is not world-readable
    assert_hardened(unit)
    settings = envfile.parse((ROOT / "deploy" / "server.env.example").read_text())
    assert settings["TELECENTRE_DATA_DIR"] in one(unit, "ReadWritePaths").split()
    assert one(unit, "StateDirectoryMode") == "0700"


def test_the_broker_drop_in_restarts_mosquitto_as_its_own_user_hardened() -> None:
    unit = parse_unit(DROP_IN)
    # Telecentre's rendered config alone: Debian's would give pid_file etc. twice.
    assert unit["Service"]["ExecStart"] == [
        "",
        "/usr/sbin/mosquitto -c /etc/mosquitto/telecentre.conf",
    ]
    assert one(unit, "Restart") == "always"
    assert one(unit, "User") == "mosquitto"
    assert one(unit, "ExecStartPre") == ""  # Debian's chown steps need root: reset
    assert "WatchdogSec" not in unit["Service"]  # mosquitto 2.0 never pings a watchdog
    assert_hardened(unit)


def test_each_service_has_its_own_user() -> None:
    users = {
        path.name: one(parse_unit(path), "User")
        for path in (SYSTEMD / "telecentre-edge.service", SYSTEMD / "telecentre-server.service")
    }
    users["mosquitto"] = one(parse_unit(DROP_IN), "User")
    assert len(set(users.values())) == len(users), users


def verify_root(tmp_path: Path) -> Path:
    """A root holding systemd's own units, ours where provisioning puts them, and a stub
    at every program path the units name (verify checks that they are executable)."""
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(unit, etc / unit.name)
    (etc / "mosquitto.service.d").mkdir()
    shutil.copy(DROP_IN, etc / "mosquitto.service.d" / DROP_IN.name)
    mosquitto = root / "usr/lib/systemd/system/mosquitto.service"
    if not mosquitto.exists():  # Debian's unit, when mosquitto's package is not installed
        mosquitto.write_text(
            "[Service]\nType=notify\nExecStart=/usr/sbin/mosquitto -c /etc/mosquitto/"
            "mosquitto.conf\nExecStartPre=/bin/mkdir -m 740 -p /run/mosquitto\n"
        )
    units = [*UNITS, mosquitto]
    for unit in units:
        for key, lines in parse_unit(unit).get("Service", {}).items():
            if not key.startswith("Exec"):
                continue
            for line in lines:
                program = line.lstrip("-+!@:").split()[0] if line else ""
                if program.startswith("/"):
                    stub = root / program.lstrip("/")
                    stub.parent.mkdir(parents=True, exist_ok=True)
                    stub.write_text("#!/bin/sh\n")
                    stub.chmod(0o755)
    return root


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not SYSTEM_UNITS.is_dir(),
    reason="systemd-analyze is not installed (`make setup` installs it as root: apt systemd)",
)
def test_every_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    root = verify_root(tmp_path)
    names = [u.name for u in UNITS] + ["mosquitto.service"]  # with the drop-in
    for name in names:
        done = subprocess.run(
            ["systemd-analyze", "verify", f"--root={root}", "--man=no", name],
            cwd=root / "etc/systemd/system",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and not done.stderr.strip(), f"{name}:\n{done.stderr}"
        assert not done.stdout.strip(), f"{name}:\n{done.stdout}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    root = verify_root(tmp_path)
    broken = root / "etc/systemd/system/telecentre-edge.service"
    broken.write_text(broken.read_text().replace("Restart=always", "Restart=sometimes"))
    done = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--man=no", broken.name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "sometimes" in done.stderr
