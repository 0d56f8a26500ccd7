"""docs/deploy.md names what the repository ships for deployment."""

from __future__ import annotations

import re

from tests.deploy.support import FIRMWARE, ROOT, SYSTEMD

DOC = (ROOT / "docs" / "deploy.md").read_text()


def test_every_provisioning_option_is_in_the_procedure() -> None:
    options = set(
        re.findall(r'add_argument\(\s*"(--[a-z-]+)"', (FIRMWARE / "provision.py").read_text())
    )
    assert {"--config", "--read-only-root", "--data-label", "--root"} <= options
    missing = sorted(
        o for o in options - {"--root", "--skip-packages", "--package"} if o not in DOC
    )
    assert not missing, missing


def test_every_unit_file_and_shipped_file_is_named() -> None:
    shipped = [p.name for p in SYSTEMD.glob("*.service")] + ["telecentre-backup.timer"]
    shipped += ["mosquitto.service.d/telecentre.conf", "deploy/nginx/telecentre.conf"]
    shipped += ["deploy/server.env.example", "firmware-config/WIRING.md"]
    for name in shipped:
        stem = name.rsplit(".", 1)[0] if name.endswith((".service", ".timer")) else name
        assert stem in DOC, name


def test_the_wiring_table_links_to_the_hardware_option_that_exists() -> None:
    wiring = (FIRMWARE / "WIRING.md").read_text()
    anchor = re.search(r"deploy\.md#([a-z-]+)", wiring)
    assert anchor is not None
    headings = [
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", DOC, re.MULTILINE)
    ]
    assert anchor.group(1) in headings
