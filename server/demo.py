"""``telecentre-server demo``: broker, server and three simulated centres on this machine.

Everything lives in a temporary directory and listens on 127.0.0.1 only. Ctrl-C stops
the centres, the server and the broker, in that order, and removes the directory.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from protocol.badges import badge_hash
from protocol.signing import Signer
from server.broker import LocalBroker
from server.domain.audit import CLI_ACTOR
from server.settings import Settings
from server.store import Store

log = logging.getLogger(__name__)

CENTRES = [
    ("boitron", "Télécentre de Boitron", "Boitron", ["visio", "open-space"]),
    ("camembert", "Télécentre du Pays de Camembert", "Vimoutiers", ["visio", "bureau"]),
    ("belleme", "Télécentre de Bellême", "Bellême", ["visio", "salle-reunion"]),
]
ROOM_NAMES = {
    "visio": "Salle visio",
    "open-space": "Open space",
    "bureau": "Bureau partagé",
    "salle-reunion": "Salle de réunion",
}
FIRST = [
    "Camille",
    "Louis",
    "Manon",
    "Hugo",
    "Léa",
    "Jules",
    "Chloé",
    "Arthur",
    "Inès",
    "Gabriel",
    "Zoé",
    "Raphaël",
    "Louise",
    "Adam",
    "Jade",
    "Paul",
    "Alice",
    "Noé",
]
LAST = [
    "Lefèvre",
    "Martin",
    "Bernard",
    "Durand",
    "Moreau",
    "Lemoine",
    "Girard",
    "Fournier",
    "Leroy",
    "Roussel",
    "Marie",
    "Hébert",
    "Lecomte",
    "Duval",
    "Lebrun",
    "Vasseur",
]
MEMBERS_PER_CENTRE = 8


def unit_config(
    centre_id: str,
    rooms: list[str],
    *,
    mqtt: str,
    key_file: Path,
    data_dir: Path,
    server_key: str,
) -> str:
    lines = [
        "schema = 1",
        f'device_id = "{centre_id}-01"',
        f'centre = "{centre_id}"',
        f'badge_key_file = "{key_file}"',
        f'data_dir = "{data_dir}"',
        'pin_factory = "mock"',
        f'server_public_keys = ["{server_key}"]',
        "",
        "[mqtt]",
        mqtt,
        "",
        "[[doors]]",
        'id = "entree"',
        "relay_pin = 17",
        "contact_pin = 27",
        "unlock_seconds = 3",
        'direction = "toggle"',
        "[doors.reader]",
        'kind = "fake"',
        "",
    ]
    for i, room in enumerate(rooms):
        lines += [
            "[[rooms]]",
            f'id = "{room}"',
            f'name = "{ROOM_NAMES[room]}"',
            f"motion_pin = {22 + i}",
            "hold_seconds = 8",
            "",
        ]
    return "\n".join(lines)


def seed(settings: Settings, key: bytes, rng: random.Random) -> dict[str, list[str]]:
    """Centres, units and members with badges; returns each centre's member card UIDs."""
    store = Store(settings.store_location)
    uids: dict[str, list[str]] = {}
    try:
        for centre_id, name, commune, _ in CENTRES:
            store.create_centre(centre_id, name, commune)
            store.assign_device(f"{centre_id}-01", centre_id)
            uids[centre_id] = []
            for _ in range(MEMBERS_PER_CENTRE):
                member = store.create_member(
                    {"name": f"{rng.choice(FIRST)} {rng.choice(LAST)}", "centres": [centre_id]}
                )
                uid = bytes(rng.randrange(256) for _ in range(4))
                store.enrol_badge(member["id"], badge_hash(key, uid), "badge")
                uids[centre_id].append(uid.hex())
    finally:
        store.close()
    return uids


def demo_admin(settings: Settings) -> tuple[str, str, str]:
    """An admin for this demo only: (login, random password, API token), made as the
    command line makes them (there is no default password, not even here)."""
    from server.auth import service

    login, password = "demo", secrets.token_urlsafe(12)
    store = Store(settings.store_location)
    try:
        now = time.time()
        operator = service.create_operator(
            store,
            login=login,
            name="Démo",
            role="admin",
            centres=None,
            password=password,
            actor=CLI_ACTOR,
            address=None,
            now=now,
        )
        token, _ = service.create_token(
            store, settings, operator, name="demo", days=1, actor=CLI_ACTOR, address=None, now=now
        )
    finally:
        store.close()
    return login, password, token


def register_units(settings: Settings, workdir: Path) -> dict[str, Path]:
    """Each centre's unit gets its broker account as `device add` gives it (the password
    in a 0600 file for the unit); then the broker files are generated and mosquitto
    reloaded. Returns each centre's unit password file."""
    from server.broker import registry

    store = Store(settings.store_location)
    files: dict[str, Path] = {}
    try:
        for centre_id, *_ in CENTRES:
            new = registry.add_device(store, settings, f"{centre_id}-01", centre_id)
            files[centre_id] = workdir / centre_id / "mqtt.password"
            registry.write_secret(files[centre_id], new.password + "\n")
        log.info("broker: %s", registry.regenerate(store, settings))
    finally:
        store.close()
    return files


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run(*, http_port: int = 8000, day_seconds: float = 240.0) -> int:
    import uvicorn

    from server.app import create_app

    if not port_free(http_port):
        print(f"port {http_port} is in use: stop what runs there, or pass --port", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="telecentre-demo-"))
    rng = random.Random(2026)
    # The broker's password file and ACL come from the registry, as `device add` makes them.
    broker = LocalBroker(workdir=workdir / "broker", observers=0, manage_files=False)
    (workdir / "broker").mkdir(exist_ok=True)
    units: list[subprocess.Popen[bytes]] = []
    try:
        broker.start()
        key_file = workdir / "badge.key"
        key_file.write_text(secrets.token_hex(32))
        signer = Signer.generate()
        signer.write(workdir / "signing.key")
        settings = Settings(
            data_dir=workdir / "server",
            badge_key_file=key_file,
            signing_key_file=workdir / "signing.key",
            broker_password_file=broker.paths().password_file,
            broker_acl_file=broker.paths().acl_file,
            broker_pid_file=broker.paths().pid_file,
            **broker.server_settings(),  # type: ignore[arg-type]
        )
        members = seed(settings, bytes.fromhex(key_file.read_text()), rng)
        login, password, token = demo_admin(settings)
        unit_passwords = register_units(settings, workdir)
        for centre_id, _, _, rooms in CENTRES:
            unit_dir = workdir / centre_id
            conf = unit_dir / "unit.toml"
            conf.write_text(
                unit_config(
                    centre_id,
                    rooms,
                    mqtt=broker.unit_mqtt(
                        f"{centre_id}-01", password_file=unit_passwords[centre_id]
                    ),
                    key_file=key_file,
                    data_dir=unit_dir,
                    server_key=signer.public_hex,
                )
            )
            (unit_dir / "members.json").write_text(json.dumps(members[centre_id]))
            units.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "edge.cli",
                        "simulate",
                        "--config",
                        str(conf),
                        "--members",
                        str(unit_dir / "members.json"),
                        "--day-seconds",
                        str(day_seconds),
                        "--seed",
                        str(rng.randrange(1 << 30)),
                    ],
                )
            )
        print(
            f"\n  Telecentre demo: http://127.0.0.1:{http_port}/  (API: /docs)"
            f"\n  login: {login}   password: {password}"
            f"\n  API token: {token}"
            f"\n  (use it as the header  Authorization: Bearer <token>)"
            f"\n  broker 127.0.0.1:{broker.port}, files in {workdir}"
            f"\n  one simulated day lasts {day_seconds:.0f} s; Ctrl-C stops everything\n",
            flush=True,
        )
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=http_port, log_level="warning"
        )
        uvicorn.Server(config).run()
        return 0
    finally:
        for unit in units:
            if unit.poll() is None:
                unit.terminate()
        for unit in units:
            try:
                unit.wait(timeout=10)
            except subprocess.TimeoutExpired:
                unit.kill()
                unit.wait()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        print("demo stopped", flush=True)
