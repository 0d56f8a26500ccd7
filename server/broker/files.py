"""The broker's files on disk: the rendered config, the generated password file and ACL,
and the reload (SIGHUP) that makes mosquitto read them again."""

from __future__ import annotations

import os
import signal
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from protocol.errors import TelecentreError
from server.domain import broker_access
from server.domain.broker_access import Grant


class BrokerFilesError(TelecentreError, RuntimeError):
    """A broker file that cannot be written or a broker that cannot be reloaded."""


def config_template() -> str:
    return resources.files("server.broker").joinpath("mosquitto.conf").read_text()


@dataclass(frozen=True)
class BrokerPaths:
    """Where one broker's files live; the values the config template names."""

    password_file: Path
    acl_file: Path
    ca_file: Path
    cert_file: Path
    key_file: Path
    pid_file: Path
    persistence_dir: Path
    port: int = 8883
    bind_address: str = "0.0.0.0"
    persistence: bool = True
    log_dest: str = "syslog"


def render_config(paths: BrokerPaths, extra: str = "") -> str:
    """The production config with this site's paths (``extra``: lines before the listener)."""
    return string.Template(config_template()).substitute(
        password_file=paths.password_file,
        acl_file=paths.acl_file,
        ca_file=paths.ca_file,
        cert_file=paths.cert_file,
        key_file=paths.key_file,
        pid_file=paths.pid_file,
        persistence="true" if paths.persistence else "false",
        persistence_dir=paths.persistence_dir,
        port=paths.port,
        bind_address=paths.bind_address,
        log_dest=paths.log_dest,
        extra=extra,
    )


def write_atomic(path: Path, text: str, mode: int = 0o640) -> None:
    """Replace ``path`` in one rename: mosquitto never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_access_files(grants: list[Grant], password_file: Path, acl_file: Path) -> None:
    """Write the password file and the ACL for exactly these accounts."""
    passwords = broker_access.password_file(grants)
    acl = broker_access.acl_file(grants)
    try:
        write_atomic(password_file, passwords)
        write_atomic(acl_file, acl)
    except OSError as exc:
        raise BrokerFilesError(f"cannot write the broker files: {exc}") from None


def reload_broker(pid_file: Path | None) -> str:
    """SIGHUP the broker named by ``pid_file``; returns what happened, in one sentence."""
    if pid_file is None:
        return "no broker_pid_file set: reload mosquitto yourself (systemctl reload mosquitto)"
    try:
        pid = int(pid_file.read_text().strip())
    except FileNotFoundError:
        return f"mosquitto is not running (no pid file {pid_file}): it reads the files at start"
    except (OSError, ValueError) as exc:
        return f"cannot read the broker pid file {pid_file} ({exc}): reload mosquitto yourself"
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return f"mosquitto is not running (pid {pid} from {pid_file} is gone)"
    except PermissionError:
        return f"not allowed to signal mosquitto (pid {pid}): run `systemctl reload mosquitto`"
    return f"mosquitto (pid {pid}) reloaded"
