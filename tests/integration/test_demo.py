"""`make demo`'s main job: three live centres on the page, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from server.broker import free_port
from tests.conftest import wait_until


def get_json(url: str) -> object:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


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

        def centres_live() -> object:
            centres = get_json(f"{base}/api/occupancy")
            if not centres:
                return None
            live = [
                c
                for c in centres
                if c["units"] and c["units"][0]["state"] == "online" and c["rooms"]
            ]
            return centres if len(live) == 3 else None

        centres = wait_until(centres_live, timeout=60, what="three centres online")
        assert {c["name"] for c in centres} == {
            "Télécentre de Boitron",
            "Télécentre du Pays de Camembert",
            "Télécentre de Bellême",
        }
        events = wait_until(
            lambda: (get_json(f"{base}/api/events?kind=access") or {}).get("total", 0) >= 3,
            timeout=60,
            what="members badging in",
        )
        assert events
        with urllib.request.urlopen(f"{base}/", timeout=2) as page:
            assert "/api/occupancy/stream" in page.read().decode()
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
