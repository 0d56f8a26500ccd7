"""What the deployment tests share: the repository's paths and a notify socket."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).parents[2]
SYSTEMD = ROOT / "systemd"
FIRMWARE = ROOT / "firmware-config"
CENTRES = sorted((FIRMWARE / "centres").glob("*.toml"))
VENV_BIN = Path(__file__).parents[2] / ".venv" / "bin"


class NotifySocket:
    """A unix datagram socket standing for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(20)
        self.received: list[str] = []

    def next(self) -> str:
        message = self.sock.recv(4096).decode()
        self.received.append(message)
        return message

    def wait_for(self, text: str) -> str:
        """Messages until one holds ``text`` (the socket's timeout bounds the wait)."""
        while True:
            message = self.next()
            if text in message:
                return message


@contextmanager
def notify_socket() -> Iterator[NotifySocket]:
    # A short path: a unix socket's address is at most 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="tc-notify-"))
    listener = NotifySocket(directory / "notify")
    try:
        yield listener
    finally:
        listener.sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def executable(name: str) -> str:
    """A console script of this project's venv, or of the interpreter running the tests."""
    import sys

    for directory in (Path(sys.executable).parent, VENV_BIN):
        if (directory / name).exists():
            return str(directory / name)
    raise FileNotFoundError(name)
