"""A private PostgreSQL cluster on loopback, for the tests and the benchmarks.

``initdb`` into a temporary directory, then the server on a free 127.0.0.1 port with its
unix socket in that directory; ``database()`` gives a fresh empty database's URL. PostgreSQL
refuses to run as root: as root, the cluster belongs to the ``postgres`` account that
Debian's package creates (or ``nobody``), and its commands run through ``runuser``.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from protocol.errors import TelecentreError

USER = "telecentre"


class PostgresMissing(TelecentreError, RuntimeError):
    """PostgreSQL's server programs are not installed, or it would not start."""


def find_bindir() -> Path:
    """The directory of ``initdb`` and ``pg_ctl`` (Debian keeps them out of PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not versions:
        raise PostgresMissing(
            "PostgreSQL is not installed (no initdb): run `sudo apt-get install postgresql`"
        )
    return Path(versions[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _owner() -> str | None:
    """The account the cluster runs as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresMissing("running as root and neither a postgres nor a nobody account exists")


class LocalPostgres:
    """``with LocalPostgres() as pg: url = pg.database()`` — PostgreSQL on 127.0.0.1:pg.port."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="telecentre-pg-"))
        self.data = self.dir / "data"
        self.owner = _owner()
        self._names = itertools.count(1)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.owner is not None:
            cmd = ["runuser", "-u", self.owner, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.dir)
        if result.returncode != 0:
            raise PostgresMissing(f"{args[0]} failed: {result.stderr.strip() or result.stdout}")
        return result

    def start(self) -> LocalPostgres:
        if self.owner is not None:
            shutil.chown(self.dir, self.owner)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-instructions",
            "--no-sync",
        )
        options = f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )
        return self

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
