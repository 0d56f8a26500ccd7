"""``make bench``: every figure of the project against a floor measured in the same run.

Every figure is printed with its floor and their ratio, so results from different machines
compare; all of them go to ``bench/results.json`` with the machine's load average when
each was measured (the machine may be shared: a figure taken under load is re-run).
Traffic stays on 127.0.0.1, in bounded loops.

``python -m bench [--quick] [NAME ...]`` runs some of them (all by default); ``--quick``
(``make bench QUICK=1``) runs the same figures on smaller counts, in under two minutes.

A benchmark is a module ``bench/NAME.py`` with ``run(ctx: bench.common.Context)``; add its
name to ``MODULES`` (one line) and it runs with the others.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.common import Context, Results

MODULES = [
    "door",
    "ingest",
    "national",
    "events_api",
    "live",
    "reports",
    "lists",
    "scaleout",
    "edge_scale",
]
ALIASES = {"edge": "edge_scale"}


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    quick = "--quick" in args
    if quick:
        os.environ["QUICK"] = "1"  # what modules that read the environment look at
    wanted = [ALIASES.get(a, a) for a in args if a != "--quick"] or list(MODULES)
    unknown = [name for name in wanted if name not in MODULES]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(MODULES)}")
        return 2
    results = Results(quick=quick)
    failed: list[str] = []
    took: list[str] = []
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="telecentre-bench-") as tmp,
        Context(results, Path(tmp), quick=quick) as ctx,
    ):
        for name in MODULES:  # in the registry's order, whatever the command line's
            if name in wanted:
                print(f"\n== {name}{' (quick)' if quick else ''} ==", flush=True)
                module_started = time.monotonic()
                try:
                    importlib.import_module(f"bench.{name}").run(ctx)
                except Exception:  # the others' figures are still measured and kept
                    traceback.print_exc()
                    failed.append(name)
                took.append(f"{name} {time.monotonic() - module_started:.0f} s")
    results.write()
    print(f"\nin {time.monotonic() - started:.0f} s: {', '.join(took)}")
    if failed:
        print(f"\nfailed: {', '.join(failed)} (their figures keep their last values)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
