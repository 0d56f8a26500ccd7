"""firmware-config/provision.py in a throwaway root: what it writes, twice, and after a
failure. System packages and the venv are skipped (--skip-packages): no network here."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from edge import config as edge_config
from protocol.signing import Signer
from tests.deploy.support import CENTRES, FIRMWARE, SYSTEMD

SCRIPT = FIRMWARE / "provision.py"
AS_ROOT = os.geteuid() == 0


@pytest.fixture
def card(tmp_path: Path) -> Path:
    """What a freshly flashed Raspberry Pi OS Lite has that provisioning touches."""
    root = tmp_path / "card"
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n"
    )
    (etc / "group").write_text("root:x:0:\ngpio:x:997:pi\nspi:x:999:pi\npi:x:1000:\n")
    (etc / "shadow").write_text("")
    (etc / "gshadow").write_text("")
    (etc / "fstab").write_text(
        "proc /proc proc defaults 0 0\nPARTUUID=1-01 /boot/firmware vfat defaults 0 2\n"
    )
    boot = root / "boot" / "firmware"
    boot.mkdir(parents=True)
    (boot / "config.txt").write_text(
        "# For more options and information see ...\ndtparam=audio=on\n\n[pi4]\narm_boost=1\n"
    )
    (boot / "cmdline.txt").write_text(
        "console=serial0,115200 console=tty1 root=PARTUUID=1-02 rootfstype=ext4 "
        "fsck.repair=yes rootwait\n"
    )
    return root


@pytest.fixture
def bundle(tmp_path: Path) -> dict[str, Path | str]:
    """What the central team hands the technician for boitron-01."""
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "badge.key").write_text(secrets.token_hex(32) + "\n")
    (out / "boitron-01.json").write_text(
        json.dumps(
            {
                "device_id": "boitron-01",
                "centre": "boitron",
                "mqtt_username": "boitron-01",
                "mqtt_password": "s3cret-broker-password",
            }
        )
    )
    (out / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n")
    return {
        "dir": out,
        "key": Signer.generate().public_hex,
    }


def provision(
    root: Path, bundle: dict, *extra: str, config: Path | None = None
) -> subprocess.CompletedProcess[str]:
    d = bundle["dir"]
    argv = [
        sys.executable,
        str(SCRIPT),
        "--root",
        str(root),
        "--skip-packages",
        "--config",
        str(config or FIRMWARE / "centres" / "boitron-01.toml"),
        "--credentials",
        str(d / "boitron-01.json"),
        "--badge-key",
        str(d / "badge.key"),
        "--ca",
        str(d / "ca.crt"),
        "--server-public-key",
        bundle["key"],
        *extra,
    ]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def snapshot(root: Path) -> dict[str, tuple[int, int, int, int, bytes]]:
    """Every file and directory: (mode, uid, gid, mtime_ns, content)."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        content = path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(root))] = (
            st.st_mode,
            st.st_uid,
            st.st_gid,
            st.st_mtime_ns,
            content,
        )
    return found


def ids(root: Path, name: str) -> tuple[int, int]:
    user = next(
        line
        for line in (root / "etc/passwd").read_text().splitlines()
        if line.startswith(name + ":")
    )
    uid = int(user.split(":")[2])
    group = next(
        line
        for line in (root / "etc/group").read_text().splitlines()
        if line.startswith(name + ":")
    )
    return uid, int(group.split(":")[2])


def test_a_second_run_changes_nothing_and_says_so(card: Path, bundle: dict) -> None:
    first = provision(card, bundle)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed" in first.stdout
    before = snapshot(card)

    second = provision(card, bundle)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing changed, the unit was already provisioned" in second.stdout
    assert "  changed " not in second.stdout
    assert snapshot(card) == before  # not even a file rewritten with the same bytes


def test_what_it_writes_where_the_unit_config_says_with_modes_and_owners(
    card: Path, bundle: dict
) -> None:
    done = provision(card, bundle)
    assert done.returncode == 0, done.stdout + done.stderr
    etc = card / "etc/telecentre"
    installed = etc / "unit.toml"
    cfg = edge_config.load(installed)
    assert cfg.server_public_keys == (bundle["key"],)  # the example key replaced
    assert (etc / "badge.key").read_text() == (bundle["dir"] / "badge.key").read_text()
    assert (etc / "mqtt-password").read_text() == "s3cret-broker-password\n"
    assert (etc / "ca.pem").read_text() == (bundle["dir"] / "ca.crt").read_text()
    service = card / "etc/systemd/system/telecentre-edge.service"
    assert service.read_bytes() == (SYSTEMD / "telecentre-edge.service").read_bytes()
    for name, dest in (
        ("timesyncd.conf", "etc/systemd/timesyncd.conf.d/telecentre.conf"),
        ("journald.conf", "etc/systemd/journald.conf.d/telecentre.conf"),
        ("watchdog.conf", "etc/systemd/system.conf.d/telecentre-watchdog.conf"),
    ):
        assert (card / dest).read_bytes() == (FIRMWARE / "os" / name).read_bytes()

    modes = {
        "etc/telecentre": 0o750,
        "etc/telecentre/unit.toml": 0o640,
        "etc/telecentre/badge.key": 0o600,
        "etc/telecentre/mqtt-password": 0o600,
        "etc/telecentre/ca.pem": 0o644,
        "var/lib/telecentre": 0o750,
        "etc/systemd/system/telecentre-edge.service": 0o644,
    }
    for rel, mode in modes.items():
        assert (card / rel).stat().st_mode & 0o7777 == mode, rel
    if AS_ROOT:  # the user was made in the card's own /etc/passwd, with gpio and spi
        unit = ids(card, "telecentre")
        owners = {
            "etc/telecentre": (0, unit[1]),
            "etc/telecentre/unit.toml": (0, unit[1]),
            "etc/telecentre/badge.key": unit,
            "etc/telecentre/mqtt-password": unit,
            "etc/telecentre/ca.pem": (0, 0),
            "var/lib/telecentre": unit,
        }
        for rel, owner in owners.items():
            st = (card / rel).stat()
            assert (st.st_uid, st.st_gid) == owner, rel
        groups = (card / "etc/group").read_text()
        assert "gpio:x:997:pi,telecentre" in groups and "spi:x:999:pi,telecentre" in groups

    config_txt = (card / "boot/firmware/config.txt").read_text()
    assert config_txt.startswith("# For more options")  # the card's own lines kept
    block = config_txt[config_txt.index("# >>> telecentre") :]
    assert block.splitlines()[1] == "[all]"
    for line in ("dtparam=spi=on", "dtparam=watchdog=on", "gpio=17=op,dh"):
        assert line in block.splitlines()
    assert "overlayroot" not in (card / "boot/firmware/cmdline.txt").read_text()


def test_an_active_high_relay_is_held_low_from_power_on(card: Path, bundle: dict) -> None:
    belleme = FIRMWARE / "centres" / "belleme-01.toml"
    creds = json.loads((bundle["dir"] / "boitron-01.json").read_text())
    creds.update(device_id="belleme-01", mqtt_username="belleme-01", centre="belleme")
    (bundle["dir"] / "boitron-01.json").write_text(json.dumps(creds))
    done = provision(card, bundle, "--rtc", "ds3231", config=belleme)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = (card / "boot/firmware/config.txt").read_text().splitlines()
    assert "gpio=17=op,dh" in lines and "gpio=26=op,dl" in lines
    assert "dtoverlay=i2c-rtc,ds3231" in lines and "dtparam=i2c_arm=on" in lines


def test_the_read_only_root_keeps_the_outbox_on_its_own_partition(card: Path, bundle: dict) -> None:
    refused = provision(card, bundle, "--read-only-root")
    assert refused.returncode == 1
    assert "--read-only-root needs --data-label" in refused.stderr

    done = provision(card, bundle, "--read-only-root", "--data-label", "TCDATA")
    assert done.returncode == 0, done.stdout + done.stderr
    cmdline = (card / "boot/firmware/cmdline.txt").read_text()
    assert cmdline.count("\n") == 1 and cmdline.endswith("rootwait overlayroot=tmpfs:recurse=0\n")
    fstab = (card / "etc/fstab").read_text().splitlines()
    assert "LABEL=TCDATA /var/lib/telecentre ext4 defaults,noatime,nofail 0 2" in fstab
    assert fstab[0].startswith("proc ")  # the card's own lines kept
    again = provision(card, bundle, "--read-only-root", "--data-label", "TCDATA")
    assert "nothing changed" in again.stdout
    assert (card / "etc/fstab").read_text().count("TCDATA") == 1


def test_a_run_that_failed_half_way_is_finished_by_the_next(card: Path, bundle: dict) -> None:
    bad_ca = bundle["dir"] / "ca.crt"
    bad_ca.rename(bundle["dir"] / "elsewhere.crt")  # the technician mistyped the CA's name
    failed = provision(card, bundle)
    assert failed.returncode == 1
    assert "ca.crt" in failed.stderr and "run it again" in failed.stderr
    assert not list(card.rglob(".*.provision"))  # nothing half-written

    (bundle["dir"] / "elsewhere.crt").rename(bad_ca)
    done = provision(card, bundle)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (card / "etc/telecentre/ca.pem").exists()
    assert "nothing changed" in provision(card, bundle).stdout


def test_it_refuses_the_example_server_key_and_someone_elses_credentials(
    card: Path, bundle: dict, tmp_path: Path
) -> None:
    d = bundle["dir"]
    base = [sys.executable, str(SCRIPT), "--root", str(card), "--skip-packages"]
    example = subprocess.run(
        [*base, "--config", str(CENTRES[1]), "--badge-key", str(d / "badge.key")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert example.returncode == 1 and "example server key" in example.stderr
    assert not (card / "etc/telecentre").exists()

    creds = json.loads((d / "boitron-01.json").read_text())
    creds.update(device_id="belleme-01", mqtt_username="belleme-01")
    (d / "boitron-01.json").write_text(json.dumps(creds))
    wrong = provision(card, bundle)
    assert wrong.returncode == 1 and "credentials are for 'belleme-01'" in wrong.stderr


def test_a_config_the_agent_would_refuse_is_refused_before_anything_is_written(
    card: Path, bundle: dict, tmp_path: Path
) -> None:
    bad = tmp_path / "boitron-01.toml"
    bad.write_text(
        (FIRMWARE / "centres" / "boitron-01.toml")
        .read_text()
        .replace("motion_pin = 13", "motion_pin = 17")
    )
    done = provision(card, bundle, config=bad)
    assert done.returncode == 1
    assert "GPIO 17 is already used by doors[entree].relay_pin" in done.stderr
    assert not (card / "etc/telecentre").exists()
