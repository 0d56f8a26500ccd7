"""``make bench``: door latency, server ingest and access lists at scale, against floors.

Every figure is printed with the floor measured in the same run on the same machine, and
their ratio, so results from different machines compare; all of them also go to
``bench/results.json``. Traffic stays on 127.0.0.1, in bounded loops.

``python -m bench [door] [ingest] [lists] [reports] [scaleout]`` runs some of them (all by default).
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from pathlib import Path

from bench.common import Results
from bench.door import bench_badge, bench_online
from bench.ingest import bench_ingest
from bench.lists import bench_encoding, bench_scale
from bench.reports import bench_reports
from bench.scaleout import bench_scaleout
from protocol.signing import Signer
from server.broker import LocalBroker

GROUPS = ("door", "ingest", "lists", "reports", "scaleout")


def main(argv: list[str] | None = None) -> int:
    wanted = set(argv if argv is not None else sys.argv[1:]) or set(GROUPS)
    unknown = wanted - set(GROUPS)
    if unknown:
        print(f"unknown benchmark {sorted(unknown)[0]!r}; choose from {', '.join(GROUPS)}")
        return 2
    results = Results()
    if "reports" in wanted:  # no broker: the store alone
        with tempfile.TemporaryDirectory(prefix="telecentre-bench-") as tmp:
            bench_reports(results, Path(tmp))
        wanted.discard("reports")
        if not wanted:
            results.write()
            return 0
    # One observer account per benchmark client (the client id is the user name).
    observers = 2_100
    with (
        tempfile.TemporaryDirectory(prefix="telecentre-bench-") as tmp,
        LocalBroker(observers=observers) as broker,
    ):
        workdir = Path(tmp)
        key_file = workdir / "badge.key"
        key_file.write_text(secrets.token_hex(32))
        signer = Signer.generate()
        if "door" in wanted:
            bench_badge(results, workdir, broker, key_file, signer)
            bench_online(results, workdir, broker, key_file, signer)
        if "ingest" in wanted:
            bench_ingest(results, workdir, broker, key_file, signer)
        if "lists" in wanted:
            bench_encoding(results, signer)
            bench_scale(results, workdir, broker, key_file, signer)
        if "scaleout" in wanted:
            bench_scaleout(results, workdir, broker, key_file, signer)
    results.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
