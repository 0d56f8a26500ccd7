"""A private mosquitto on loopback, for the demo, the tests and the benchmarks.

It runs the production config (``server/broker/mosquitto.conf``: no anonymous access,
TLS only, generated password file and ACL, client id bound to the user name) rendered
into a temporary directory with a fresh CA and certificate, listening on 127.0.0.1 only.
It keeps its own small registry: the server's account, the units it is told about
(``add_unit``) and, for tests and benchmarks only, observer accounts that may read and
write the whole tree (``observer()``), each with its own name since the client id is the
user name.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from protocol.errors import TelecentreError
from protocol.mqtt import make_client
from server.broker.files import BrokerPaths, render_config, write_access_files
from server.broker.tls import TlsFiles, make_tls
from server.domain import broker_access
from server.domain.broker_access import Grant

# A broker busy with thousands of clients (the benchmarks') takes seconds to reload.
RELOAD_S = 30.0


class BrokerError(TelecentreError, RuntimeError):
    """mosquitto is missing or would not start."""


def find_mosquitto() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
    )
    if found is None:
        raise BrokerError("mosquitto is not installed: run `sudo apt-get install mosquitto`")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_USERNAME = "telecentre-server"
OBSERVER_POOL = 16
HOST = "127.0.0.1"


class LocalBroker:
    """``with LocalBroker(units={"boitron-01": "boitron"}) as broker:`` — mosquitto on
    127.0.0.1:``broker.port`` over TLS, checked against ``broker.ca_file``."""

    def __init__(
        self,
        port: int | None = None,
        *,
        workdir: Path | None = None,
        units: dict[str, str] | None = None,
        observers: int = OBSERVER_POOL,
        manage_files: bool = True,
    ) -> None:
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="telecentre-broker-"))
        self.proc: subprocess.Popen[bytes] | None = None
        # False: the password file and ACL come from elsewhere (the demo's registry).
        self.manage_files = manage_files
        self.log_path = self.workdir / "mosquitto.log"
        self.tls = TlsFiles.in_dir(self.workdir / "tls")
        self.server_username = SERVER_USERNAME
        self.passwords: dict[str, str] = {}
        self._units: dict[str, str] = {}  # device id -> centre
        self._observers: list[str] = []
        self._workers: list[str] = []  # more server workers' accounts (server.mqtt.scaleout)
        self._next_observer = itertools.count()
        self._add_account(SERVER_USERNAME)
        for device_id, centre in (units or {}).items():
            self._units[device_id] = centre
            self._add_account(device_id)
        for i in range(observers):
            self._observers.append(self._add_account(f"observer-{i}"))

    # -- accounts -----------------------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        return self.tls.ca_cert

    def _add_account(self, username: str) -> str:
        password = broker_access.new_password()
        self.passwords[username] = password
        path = self.password_file(username)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(password + "\n")
        path.chmod(0o600)
        return username

    def password_file(self, username: str) -> Path:
        """The file holding ``username``'s password (for mqtt_password_file / password_file)."""
        return self.workdir / "accounts" / f"{username}.password"

    def add_server_worker(self, name: str) -> dict[str, object]:
        """Another server worker's own account (the client id is the user name); returns
        its settings overrides, as ``server_settings`` does for the first."""
        if name not in self._workers:
            self._workers.append(name)
            self._add_account(name)
            self.reload()
        return {
            **self.server_settings(),
            "mqtt_username": name,
            "mqtt_password_file": self.password_file(name),
            "mqtt_client_id": name,
        }

    def grants(self) -> list[Grant]:
        everything = "#"  # observers are for tests and benchmarks only
        out = [
            grant
            for name in (self.server_username, *self._workers)
            for grant in broker_access.server_grants(
                name, broker_access.hash_password(self.passwords[name])
            )
        ]
        for device_id, centre in self._units.items():
            if device_id in self.passwords:
                out.append(
                    broker_access.unit_grant(
                        device_id, centre, broker_access.hash_password(self.passwords[device_id])
                    )
                )
        for name in self._observers:
            if name in self.passwords:
                out.append(
                    Grant(
                        name,
                        broker_access.hash_password(self.passwords[name]),
                        read=(everything,),
                        write=(everything,),
                    )
                )
        return out

    def add_unit(self, device_id: str, centre: str) -> str:
        """Give a unit an account (reloading a running broker); returns its password."""
        if self._units.get(device_id) == centre and device_id in self.passwords:
            return self.passwords[device_id]
        self._units[device_id] = centre
        self._add_account(device_id)
        self.reload()
        return self.passwords[device_id]

    def remove(self, username: str) -> None:
        """Take an account away (as ``device revoke`` does) and reload."""
        self.passwords.pop(username, None)
        self._units.pop(username, None)
        self.reload()

    def observer(self) -> str:
        """A user name no other test client holds, allowed on the whole tree (tests only)."""
        i = next(self._next_observer)
        if i < len(self._observers):
            return self._observers[i]
        name = self._add_account(f"observer-{i}")
        self._observers.append(name)
        self.reload()
        return name

    def configure(self, client: mqtt.Client, username: str) -> None:
        """Give a paho client ``username``'s password and this broker's CA."""
        client.username_pw_set(username, self.passwords[username])
        client.tls_set(ca_certs=str(self.ca_file))

    def client(self, name: str = "", *, username: str | None = None) -> mqtt.Client:
        """An MQTT v5 client (TCP_NODELAY, clean session) ready to connect to this broker,
        as ``username`` (default: a fresh observer account). Its client id is its user name."""
        username = username or self.observer()
        client, _ = make_client(username, session_expiry_s=0)
        self.configure(client, username)
        return client

    def server_settings(self) -> dict[str, object]:
        """Settings overrides that make the server connect here with its own account."""
        return {
            "mqtt_host": HOST,
            "mqtt_port": self.port,
            "mqtt_tls": True,
            "mqtt_ca_file": self.ca_file,
            "mqtt_username": self.server_username,
            "mqtt_password_file": self.password_file(self.server_username),
        }

    def unit_mqtt(
        self, device_id: str, centre: str | None = None, *, password_file: Path | None = None
    ) -> str:
        """The ``[mqtt]`` lines of a unit's TOML (registering it first when ``centre``)."""
        if centre is not None:
            self.add_unit(device_id, centre)
        password_file = password_file or self.password_file(device_id)
        return "\n".join(
            [
                f'host = "{HOST}"',
                f"port = {self.port}",
                f'username = "{device_id}"',
                f'password_file = "{password_file}"',
                "tls = true",
                f'ca_file = "{self.ca_file}"',
            ]
        )

    # -- process ------------------------------------------------------------------------------

    def paths(self) -> BrokerPaths:
        return BrokerPaths(
            password_file=self.workdir / "passwd",
            acl_file=self.workdir / "acl",
            ca_file=self.tls.ca_cert,
            cert_file=self.tls.cert,
            key_file=self.tls.key,
            pid_file=self.workdir / "mosquitto.pid",
            persistence_dir=self.workdir,
            port=self.port,
            bind_address=HOST,
            persistence=False,
            log_dest=f"file {self.log_path}",
        )

    def config(self) -> str:
        extra = "user root\n" if os.geteuid() == 0 else ""  # else it cannot read our files
        return render_config(self.paths(), extra=extra)

    def write_files(self) -> None:
        if not self.tls.ca_cert.exists():
            make_tls(self.tls.ca_cert.parent, [HOST, "localhost"])
        paths = self.paths()
        if self.manage_files or not paths.password_file.exists():
            write_access_files(self.grants(), paths.password_file, paths.acl_file)

    def reload(self) -> None:
        """Rewrite the password file and ACL; SIGHUP a running broker and wait for it."""
        self.write_files()
        if self.proc is None or self.proc.poll() is not None:
            return
        before = self._log().count("Reloading config")
        deadline = time.monotonic() + RELOAD_S
        signalled = 0.0
        while self._log().count("Reloading config") <= before:
            now = time.monotonic()
            if now > deadline:
                raise BrokerError(f"mosquitto did not reload within {RELOAD_S:.0f} s")
            if now - signalled > 1.0:
                # Again each second: a SIGHUP that comes while mosquitto still reads the
                # files of the last one is forgotten when that reload ends.
                self.proc.send_signal(signal.SIGHUP)
                signalled = now
            time.sleep(0.005)
        time.sleep(0.05)  # the log line comes just before the files are read

    def start(self) -> LocalBroker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_files()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise BrokerError(
                    f"mosquitto exited at start: {err.strip() or self._log()[-2000:]}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {HOST}:{self.port} within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
