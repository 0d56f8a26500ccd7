"""An environment file (``/etc/telecentre/server.env``), read as systemd reads one.

The service gets its settings from ``EnvironmentFile=``; an operator's command line gets
the same ones with ``telecentre-server --env-file /etc/telecentre/server.env ...``. Lines
are ``NAME=value``; blank lines and lines starting with ``#`` or ``;`` are skipped; a value
in single or double quotes loses them. Variables already set in the environment win, so
that one command can override one setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from pathlib import Path

from server.settings import SettingsError

_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def parse(text: str, *, source: str = "environment file") -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        match = _LINE.match(line)
        if match is None:
            raise SettingsError(f"{source}, line {number}: expected NAME=value, got {raw!r}")
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def load(path: Path, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the file's variables that ``environ`` (default: ``os.environ``) lacks; returns
    the file's variables."""
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"--env-file: cannot read {path} ({exc.strerror})") from None
    values = parse(text, source=str(path))
    for name, value in values.items():
        environ.setdefault(name, value)
    return values
