"""`make demo`'s main job: three live centres on the page, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from server.broker import free_port
from tests.conftest import wait_until


def get_json(url: str, token: str) -> object:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def printed(log: IO[str], pattern: str) -> str | None:
    """The first group of ``pattern`` in what the demo printed so far."""
    log.seek(0)
    found = re.search(pattern, log.read())
    return found.group(1) if found else None


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def test_demo_shows_three_live_centres_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "demo.log").open("w+")
    demo = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "demo", "--port", str(port), "--day-seconds", "30"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        token = wait_until(
            lambda: printed(log, r"API token: (\S+)"), timeout=60, what="the demo's API token"
        )
        assert printed(log, r"login: (\S+)") == "demo"
        assert printed(log, r"password: (\S+)")

        def centres_live() -> object:
            centres = get_json(f"{base}/api/occupancy", token)
            if not centres:
                return None
            live = [
                c
                for c in centres
                if c["units"] and c["units"][0]["state"] == "online" and c["rooms"]
            ]
            return centres if len(live) == 3 else None

        centres = wait_until(centres_live, timeout=60, what="three centres online")
        try:  # the API is not open to anyone
            urllib.request.urlopen(f"{base}/api/occupancy", timeout=5)
            raise AssertionError("anonymous read of /api/occupancy")
        except urllib.error.HTTPError as refused:
            assert refused.code == 401
        assert {c["name"] for c in centres} == {
            "Télécentre de Boitron",
            "Télécentre du Pays de Camembert",
            "Télécentre de Bellême",
        }
        events = wait_until(
            lambda: (get_json(f"{base}/api/events?kind=access", token) or {}).get("total", 0) >= 3,
            timeout=60,
            what="members badging in",
        )
        assert events
        page_request = urllib.request.Request(
            f"{base}/", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(page_request, timeout=2) as page:
            assert 'sse-connect="/live/stream"' in page.read().decode()
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=30)
        finally:
            if demo.poll() is None:
                demo.kill()
    log.seek(0)
    output = log.read()
    workdir = re.search(r"files in (\S+)", output)
    assert workdir, output
    assert "demo stopped" in output
    assert processes_mentioning(workdir.group(1)) == []  # no broker, no unit left running
    assert not Path(workdir.group(1)).exists()
