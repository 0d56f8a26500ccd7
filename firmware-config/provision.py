#!/usr/bin/env python3
"""Turn a fresh Raspberry Pi OS Lite (Bookworm) into a Telecentre unit.

    sudo python3 firmware-config/provision.py \\
        --config firmware-config/centres/boitron-01.toml \\
        --credentials boitron-01.json --badge-key badge.key --ca ca.crt \\
        --server-public-key 3f0c...e1

Run from a copy of the project's source tree on the Pi (docs/deploy.md has the whole
procedure). It installs the system packages, makes the ``telecentre`` user (groups ``gpio``
and ``spi``), a venv in /opt/telecentre/venv with the project's ``edge`` extra, writes the
unit's TOML, the badge key, the MQTT password and CA where the TOML says, the systemd unit,
time synchronisation, journald limits, the hardware watchdog and the firmware settings
(SPI on, each relay pin held at its locked level from power-on, an optional RTC), and
optionally the data partition and the read-only root.

Idempotent: each file is compared with what it should be (content, mode, owner) and
written only when it differs, in one rename, so a run interrupted half-way is finished by
the next one; a second run says that nothing changed. ``--root DIR`` works on a mounted
card or a throwaway directory instead of ``/`` (the tests run it there, with
``--skip-packages``); system commands (apt, systemctl, raspi-config) run only on ``/``.

Standard library only: it runs with the Pi's own python3 before the venv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
USER = "telecentre"
GROUPS = ("gpio", "spi")
VENV = Path("/opt/telecentre/venv")
UNIT_TOML = Path("/etc/telecentre/unit.toml")
ETC = Path("/etc/telecentre")
SERVICE = "telecentre-edge.service"
# The key in firmware-config's examples: it belongs to no server.
EXAMPLE_SERVER_KEY = "a0d10b3189fec5b33dd22f42fde87c7c82a6ad6fa20ce7e743486a6d70cc7e25"
APT_PACKAGES = ("python3-venv", "python3-dev", "build-essential", "swig", "systemd-timesyncd")
BLOCK_START = "# >>> telecentre: written by firmware-config/provision.py, edit the unit's TOML"
BLOCK_END = "# <<< telecentre"
OS_FILES = {  # firmware-config/os/<name> -> where it goes
    "timesyncd.conf": Path("/etc/systemd/timesyncd.conf.d/telecentre.conf"),
    "journald.conf": Path("/etc/systemd/journald.conf.d/telecentre.conf"),
    "watchdog.conf": Path("/etc/systemd/system.conf.d/telecentre-watchdog.conf"),
}
RTC_CHIPS = ("ds3231", "ds1307", "pcf8523", "pcf85063")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ProvisionError(Exception):
    """Provisioning cannot go on; the message says what to fix."""


@dataclass
class Report:
    changed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def change(self, line: str) -> None:
        self.changed.append(line)
        print(f"  changed  {line}", flush=True)

    def keep(self, line: str) -> None:
        self.kept.append(line)
        print(f"  ok       {line}", flush=True)

    def note(self, line: str) -> None:
        self.notes.append(line)
        print(f"  note     {line}", flush=True)


class Target:
    """The system being provisioned: ``/`` or a directory standing for it."""

    def __init__(self, root: Path, report: Report) -> None:
        self.root = root.resolve()
        self.live = self.root == Path("/")
        self.report = report
        self.is_root = os.geteuid() == 0

    def path(self, absolute: Path) -> Path:
        return self.root / absolute.relative_to("/")

    # -- accounts, read from the target's own files ----------------------------------------

    def _ids(self, name: str, file: str) -> int | None:
        try:
            lines = self.path(Path("/etc") / file).read_text().splitlines()
        except FileNotFoundError:
            return None
        for line in lines:
            parts = line.split(":")
            if len(parts) > 2 and parts[0] == name:
                return int(parts[2])
        return None

    def uid(self, name: str) -> int | None:
        return self._ids(name, "passwd")

    def gid(self, name: str) -> int | None:
        return self._ids(name, "group")

    def members(self, group: str) -> set[str]:
        try:
            lines = self.path(Path("/etc/group")).read_text().splitlines()
        except FileNotFoundError:
            return set()
        for line in lines:
            parts = line.split(":")
            if len(parts) > 3 and parts[0] == group:
                return {m for m in parts[3].split(",") if m}
        return set()

    # -- files ----------------------------------------------------------------------------

    def owner_ids(self, owner: str, group: str) -> tuple[int, int] | None:
        uid, gid = self.uid(owner), self.gid(group)
        if uid is None or gid is None:
            return None
        return uid, gid

    def ensure_dir(self, absolute: Path, mode: int, owner: str = "root", group: str = "root"):
        path = self.path(absolute)
        created = not path.is_dir()
        path.mkdir(parents=True, exist_ok=True)
        self._settle(absolute, path, mode, owner, group, "created" if created else None)

    def ensure_file(
        self,
        absolute: Path,
        content: bytes,
        mode: int | None,
        owner: str = "root",
        group: str = "root",
    ) -> bool:
        """Write ``content`` unless it is there already; then mode and owner (``mode``
        None: a FAT boot partition, whose modes are the mount's). True if it changed."""
        path = self.path(absolute)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            same = path.read_bytes() == content
        except FileNotFoundError:
            same = False
        if not same:
            tmp = path.with_name(f".{path.name}.provision")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            if mode is not None:
                self._own(tmp, mode, owner, group)
            os.replace(tmp, path)
        if mode is None:
            (self.report.keep if same else self.report.change)(
                f"{absolute}" + ("" if same else " written")
            )
        else:
            self._settle(absolute, path, mode, owner, group, None if same else "written")
        return not same

    def _own(self, path: Path, mode: int, owner: str, group: str) -> str | None:
        """Set mode and owner; returns why the owner was not set, or None."""
        os.chmod(path, mode)
        ids = self.owner_ids(owner, group)
        if ids is None:
            return f"owner {owner}:{group} not set (no such user or group in the target)"
        if (path.stat().st_uid, path.stat().st_gid) != ids:
            if not self.is_root:
                return f"owner {owner}:{group} not set (run as root)"
            os.chown(path, *ids)
        return None

    def _settle(
        self, absolute: Path, path: Path, mode: int, owner: str, group: str, done: str | None
    ) -> None:
        st = path.stat()
        ids = self.owner_ids(owner, group)
        fixes = []
        if st.st_mode & 0o7777 != mode:
            fixes.append(f"mode {mode:04o}")
        if ids is not None and (st.st_uid, st.st_gid) != ids and self.is_root:
            fixes.append(f"owner {owner}:{group}")
        problem = self._own(path, mode, owner, group)
        what = f"{absolute} ({mode:04o} {owner}:{group})"
        if done is not None:
            self.report.change(f"{what} {done}")
        elif fixes:
            self.report.change(f"{what} fixed: {', '.join(fixes)}")
        else:
            self.report.keep(what)
        if problem:
            self.report.note(f"{absolute}: {problem}")


# -- what a unit is made of ------------------------------------------------------------------


@dataclass(frozen=True)
class UnitFiles:
    """The paths the unit's TOML names, and its relays (for the firmware settings)."""

    device_id: str
    username: str | None
    badge_key_file: Path
    data_dir: Path
    password_file: Path | None
    ca_file: Path | None
    relays: tuple[tuple[int, bool], ...]  # (pin, active_high)


def read_unit(text: str) -> UnitFiles:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProvisionError(f"--config: not valid TOML ({exc})") from None
    mqtt = data.get("mqtt", {})

    def absolute(key: str, value: object) -> Path:
        if not isinstance(value, str) or not value.startswith("/"):
            raise ProvisionError(f"--config: {key} must be an absolute path, got {value!r}")
        return Path(value)

    relays = tuple(
        (d["relay_pin"], bool(d.get("relay_active_high", False)))
        for d in data.get("doors", [])
        if isinstance(d, dict) and isinstance(d.get("relay_pin"), int)
    )
    return UnitFiles(
        device_id=str(data.get("device_id", "")),
        username=mqtt.get("username"),
        badge_key_file=absolute("badge_key_file", data.get("badge_key_file")),
        data_dir=absolute("data_dir", data.get("data_dir")),
        password_file=(
            absolute("mqtt.password_file", mqtt["password_file"])
            if "password_file" in mqtt
            else None
        ),
        ca_file=absolute("mqtt.ca_file", mqtt["ca_file"]) if "ca_file" in mqtt else None,
        relays=relays,
    )


def with_server_key(text: str, key: str | None) -> str:
    """The TOML with ``server_public_keys`` set to ``key`` (the line replaced in place)."""
    if key is None:
        return text
    key = key.strip().lower()
    if not HEX64.match(key):
        raise ProvisionError("--server-public-key: expected 64 hexadecimal characters")
    line = f'server_public_keys = ["{key}"]'
    pattern = re.compile(r"^server_public_keys\s*=.*$", re.MULTILINE)
    if pattern.search(text):
        return pattern.sub(line, text, count=1)
    head, sep, rest = text.partition("\n[")
    return head.rstrip("\n") + "\n" + line + "\n" + sep + rest


CHECK = """
import sys, tomllib
from pathlib import Path
from edge import config
try:
    config.parse(tomllib.loads(sys.stdin.read()), base_dir=Path("/etc/telecentre"))
except config.ConfigError as exc:
    print(exc)
    sys.exit(1)
"""


def check_config(target: Target, text: str, report: Report) -> None:
    """Check the TOML with the agent's own loader: the venv's, or this interpreter's when
    it can import the project (no venv yet, or --skip-packages)."""
    python = target.path(VENV / "bin" / "python")
    cmd = [str(python) if python.exists() else sys.executable, "-c", CHECK]
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run(cmd, input=text, capture_output=True, text=True, env=env, check=False)
    if done.returncode == 1 and done.stdout.strip():
        raise ProvisionError(f"--config: {done.stdout.strip()}")
    if done.returncode != 0:
        report.note("config not checked (the agent's loader cannot run here yet)")
        return
    report.keep("unit config passes the agent's checks")


def firmware_block(unit: UnitFiles, rtc: str | None) -> str:
    lines = [
        BLOCK_START,
        "[all]",
        "# The MFRC522 card reader(s) on SPI0.",
        "dtparam=spi=on",
        "# The SoC's watchdog, fed by systemd (RuntimeWatchdogSec): a hung Pi reboots.",
        "dtparam=watchdog=on",
        "# Each door's relay held at its locked level from power-on, before Linux starts.",
    ]
    for pin, active_high in unit.relays:
        level = "dl" if active_high else "dh"
        lines.append(f"gpio={pin}=op,{level}")
    if rtc is not None:
        lines += ["# The real-time clock module on I2C.", "dtparam=i2c_arm=on"]
        lines.append(f"dtoverlay=i2c-rtc,{rtc}")
    lines.append(BLOCK_END)
    return "\n".join(lines) + "\n"


def with_block(text: str, block: str) -> str:
    start = text.find(BLOCK_START)
    if start == -1:
        return text.rstrip("\n") + ("\n\n" if text.strip() else "") + block
    end = text.find(BLOCK_END, start)
    end = text.find("\n", end) + 1 if end != -1 else len(text)
    return text[:start] + block + text[end or len(text) :]


def with_overlay(cmdline: str) -> str:
    """cmdline.txt with the overlay root on, other mounts (the data partition) left out."""
    words = [w for w in cmdline.split() if not w.startswith("overlayroot=")]
    return " ".join([*words, "overlayroot=tmpfs:recurse=0"]) + "\n"


def fstab_with_data(text: str, label: str, data_dir: Path) -> str:
    line = f"LABEL={label} {data_dir} ext4 defaults,noatime,nofail 0 2"
    kept = [
        raw
        for raw in text.splitlines()
        if raw.startswith("#") or raw.split()[1:2] != [str(data_dir)]
    ]
    return "\n".join([*kept, line]) + "\n"


# -- the steps -------------------------------------------------------------------------------


def run(cmd: list[str], report: Report, what: str) -> None:
    print(f"  running  {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise ProvisionError(f"{what}: `{' '.join(cmd)}` failed (exit {done.returncode})")


def packages(target: Target, args: argparse.Namespace, report: Report) -> None:
    if args.skip_packages:
        report.note("system packages and the venv skipped (--skip-packages)")
        return
    if not target.live:
        report.note("system packages and the venv skipped (--root is not /)")
        return
    wanted = list(APT_PACKAGES) + (["overlayroot"] if args.read_only_root else [])
    missing = [
        p
        for p in wanted
        if subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True, check=False
        ).stdout.strip()
        != "install ok installed"
    ]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        print(f"  running  apt-get install {' '.join(missing)}", flush=True)
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, stdin=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            env=env,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        report.change(f"system packages installed: {' '.join(missing)}")
    else:
        report.keep(f"system packages: {' '.join(wanted)}")
    venv(target, args, report)


def _source_stamp(source: Path) -> str:
    """What identifies the software to install: the wheel's bytes or the tree's files."""
    digest = hashlib.sha256()
    if source.is_file():
        digest.update(source.read_bytes())
        return digest.hexdigest()
    for sub in ("pyproject.toml", "protocol", "edge"):
        top = source / sub
        for path in sorted(top.rglob("*") if top.is_dir() else [top]):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(source)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def venv(target: Target, args: argparse.Namespace, report: Report) -> None:
    source = (args.package or PROJECT).resolve()
    stamp_file = VENV / ".telecentre-installed"
    stamp = _source_stamp(source)
    python = VENV / "bin" / "python"
    if python.exists() and stamp_file.exists() and stamp_file.read_text().strip() == stamp:
        report.keep(f"{VENV} has the edge extra of {source}")
        return
    if not python.exists():
        run([sys.executable, "-m", "venv", str(VENV)], report, "the venv")
    spec = f"{source}[edge]"
    run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", spec], report, "pip")
    stamp_file.write_text(stamp + "\n")
    report.change(f"{VENV}: telecentre[edge] installed from {source}")


def account(target: Target, report: Report) -> None:
    groups = [g for g in GROUPS if target.gid(g) is not None]
    absent = sorted(set(GROUPS) - set(groups))
    if absent:
        report.note(f"no group {', '.join(absent)} in the target (Raspberry Pi OS has them)")
    if target.uid(USER) is None:
        if not target.is_root or shutil.which("useradd") is None:
            report.note(f"user {USER} not created (run as root)")
            return
        cmd = ["useradd", "--system", "--user-group", "--home-dir", "/var/lib/telecentre"]
        cmd += ["--no-create-home", "--shell", "/usr/sbin/nologin"]
        if groups:
            cmd += ["--groups", ",".join(groups)]
        if not target.live:
            cmd += ["--root", str(target.root)]
        run([*cmd, USER], report, "the user")
        report.change(f"user {USER} created (groups {', '.join(groups) or 'none'})")
        return
    missing = [g for g in groups if USER not in target.members(g)]
    if missing and target.is_root:
        cmd = ["usermod", "--append", "--groups", ",".join(missing)]
        if not target.live:
            cmd += ["--root", str(target.root)]
        run([*cmd, USER], report, "the user's groups")
        report.change(f"user {USER} added to {', '.join(missing)}")
    else:
        report.keep(f"user {USER} (groups {', '.join(groups)})")


def unit_files(target: Target, args: argparse.Namespace, report: Report) -> UnitFiles:
    text = with_server_key(args.config.read_text(encoding="utf-8"), args.server_public_key)
    if EXAMPLE_SERVER_KEY in text:
        raise ProvisionError(
            "--config lists the example server key, which belongs to no server: give "
            "--server-public-key (printed by `telecentre-server init-signing-key`)"
        )
    unit = read_unit(text)
    check_config(target, text, report)
    creds = json.loads(args.credentials.read_text()) if args.credentials else None
    if creds is not None:
        for key in ("device_id", "mqtt_username"):
            if creds.get(key) not in (unit.device_id, unit.username):
                raise ProvisionError(
                    f"--credentials are for {creds.get(key)!r}, the config is unit "
                    f"{unit.device_id!r} (user {unit.username!r})"
                )
    badge_key = args.badge_key.read_text().strip() if args.badge_key else None
    if badge_key is not None and not HEX64.match(badge_key.lower()):
        raise ProvisionError("--badge-key: the file must hold 64 hexadecimal characters")

    target.ensure_dir(ETC, 0o750, "root", USER)
    target.ensure_dir(unit.data_dir, 0o750, USER, USER)
    target.ensure_file(UNIT_TOML, text.encode(), 0o640, "root", USER)
    secrets = [
        ("badge_key_file", unit.badge_key_file, badge_key, "--badge-key"),
        (
            "mqtt.password_file",
            unit.password_file,
            creds and creds.get("mqtt_password"),
            "--credentials",
        ),
    ]
    for key, path, value, flag in secrets:
        if path is None:
            continue
        if value is not None:
            target.ensure_file(path, (value + "\n").encode(), 0o600, USER, USER)
        elif target.path(path).exists():
            target.ensure_file(path, target.path(path).read_bytes(), 0o600, USER, USER)
        else:
            raise ProvisionError(f"{key} {path} does not exist yet: give {flag}")
    if unit.ca_file is not None:
        if args.ca is not None:
            target.ensure_file(unit.ca_file, args.ca.read_bytes(), 0o644)
        elif not target.path(unit.ca_file).exists():
            raise ProvisionError(f"mqtt.ca_file {unit.ca_file} does not exist yet: give --ca")
    return unit


def system_files(target: Target, unit: UnitFiles, args: argparse.Namespace) -> bool:
    """The service and the OS settings; True if the service file changed."""
    changed = target.ensure_file(
        Path("/etc/systemd/system") / SERVICE,
        (PROJECT / "systemd" / SERVICE).read_bytes(),
        0o644,
    )
    for name, dest in OS_FILES.items():
        target.ensure_file(dest, (HERE / "os" / name).read_bytes(), 0o644)
    return changed


def firmware(target: Target, unit: UnitFiles, args: argparse.Namespace, report: Report) -> None:
    config_txt = Path("/boot/firmware/config.txt")
    if not target.path(config_txt).exists():
        report.note(f"{config_txt} not found: not a Raspberry Pi OS card, firmware skipped")
        return
    text = target.path(config_txt).read_text()
    block = firmware_block(unit, args.rtc)
    target.ensure_file(config_txt, with_block(text, block).encode(), None)
    if args.data_label:
        if target.live and not Path("/dev/disk/by-label", args.data_label).exists():
            raise ProvisionError(
                f"--data-label: no partition labelled {args.data_label} on this Pi; make it "
                "first (docs/deploy.md, the data partition)"
            )
        fstab = Path("/etc/fstab")
        current = target.path(fstab).read_text() if target.path(fstab).exists() else ""
        target.ensure_file(
            fstab, fstab_with_data(current, args.data_label, unit.data_dir).encode(), 0o644
        )
    if args.read_only_root:
        if not args.data_label:
            raise ProvisionError(
                "--read-only-root needs --data-label: on a read-only root the outbox must "
                "be on its own partition, or every event not yet sent is lost at a reboot"
            )
        cmdline = Path("/boot/firmware/cmdline.txt")
        text = target.path(cmdline).read_text()
        if target.live and "overlayroot=" not in text and not args.skip_packages:
            run(["raspi-config", "nonint", "do_overlayfs", "0"], report, "the overlay root")
            text = target.path(cmdline).read_text()
        target.ensure_file(cmdline, with_overlay(text).encode(), None)


def overlay_active() -> bool:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[1:3] == ["/", "overlay"] for line in mounts if line.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="the unit's TOML")
    parser.add_argument(
        "--credentials", type=Path, help="the JSON written by `device add --credentials-file`"
    )
    parser.add_argument("--badge-key", type=Path, help="the badge key file (64 hex)")
    parser.add_argument("--ca", type=Path, help="the broker's CA certificate (PEM)")
    parser.add_argument(
        "--server-public-key", help="the server's signing public key (64 hex), into the TOML"
    )
    parser.add_argument("--rtc", choices=RTC_CHIPS, help="an RTC module on I2C")
    parser.add_argument(
        "--data-label", help="mount the ext4 partition with this label on the data_dir"
    )
    parser.add_argument(
        "--read-only-root",
        action="store_true",
        help="overlay root (Raspberry Pi OS's overlayfs), the data partition left writable",
    )
    parser.add_argument("--root", type=Path, default=Path("/"), help="the system to provision")
    parser.add_argument(
        "--skip-packages", action="store_true", help="no apt, no venv (tests, offline reruns)"
    )
    parser.add_argument(
        "--package", type=Path, help="a wheel or source tree to install (default: this tree)"
    )
    args = parser.parse_args(argv)
    report = Report()
    target = Target(args.root, report)
    print(f"provisioning {target.root} as a Telecentre unit", flush=True)
    try:
        if target.live and overlay_active():
            raise ProvisionError(
                "the root is a read-only overlay: changes would be lost at the next boot. "
                "Turn it off (sudo raspi-config nonint do_overlayfs 1), reboot, run again"
            )
        if target.live and not target.is_root:
            raise ProvisionError("run it as root (sudo)")
        packages(target, args, report)
        account(target, report)
        unit = unit_files(target, args, report)
        service_changed = system_files(target, unit, args)
        firmware(target, unit, args, report)
        if target.live and shutil.which("systemctl"):
            if service_changed:
                run(["systemctl", "daemon-reload"], report, "systemd")
            enabled = subprocess.run(
                ["systemctl", "is-enabled", "--quiet", SERVICE], check=False
            ).returncode
            if enabled != 0:
                run(["systemctl", "enable", SERVICE], report, "systemd")
                report.change(f"{SERVICE} enabled")
    except (ProvisionError, OSError, subprocess.CalledProcessError, json.JSONDecodeError) as exc:
        print(f"provision: {exc}", file=sys.stderr)
        print("provision: nothing is half-written; fix the cause and run it again", file=sys.stderr)
        return 1
    if report.changed:
        print(f"done: {len(report.changed)} change(s). Reboot to apply the firmware settings.")
    else:
        print("done: nothing changed, the unit was already provisioned")
    return 0


if __name__ == "__main__":
    sys.exit(main())
