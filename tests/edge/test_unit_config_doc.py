"""docs/unit-config.md documents every key the unit's config loader reads."""

from __future__ import annotations

import re
from pathlib import Path

import edge.config

ROOT = Path(__file__).resolve().parents[2]
# Every read of a key by the loader: r.int("key", …), d.opt_int("key", …), rd.choice(…)…
READ = re.compile(
    r"\.(?:str|opt_str|int|opt_int|number|bool|choice|path|opt_path|ident|table|tables)"
    r'\(\s*"([a-z_]+)"'
)


def loader_keys() -> set[str]:
    source = Path(edge.config.__file__).read_text(encoding="utf-8")
    keys = set(READ.findall(source))
    keys |= {"server_public_keys"}  # read by _server_keys through a variable
    return keys


def documented_keys() -> set[str]:
    text = (ROOT / "docs" / "unit-config.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.M))


def test_the_loader_reads_the_keys_we_expect() -> None:
    keys = loader_keys()
    assert {"device_id", "relay_pin", "spi_device", "green_pin", "motion_pin"} <= keys
    assert len(keys) > 30


def test_every_key_is_documented() -> None:
    tables = {"mqtt", "doors", "reader", "exit_reader", "feedback", "rooms"}
    missing = loader_keys() - tables - documented_keys()
    assert missing == set(), f"document these keys in docs/unit-config.md: {sorted(missing)}"


def test_every_documented_key_exists() -> None:
    stale = documented_keys() - loader_keys()
    assert stale == set(), f"docs/unit-config.md names keys the loader no longer reads: {stale}"


def test_the_example_config_loads() -> None:
    edge.config.load(ROOT / "firmware-config" / "unit.example.toml")
