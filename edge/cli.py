"""``telecentre-edge``: run a unit, check its wiring, or simulate a centre."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from edge import config as edge_config
from edge.hardware import HardwareError
from edge.simulate import SCRIPT_HELP, ScriptError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

if TYPE_CHECKING:
    from edge.agent import EdgeAgent
    from edge.simulate import Scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telecentre-edge", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the unit from its config file")
    run.add_argument("--config", "-c", type=Path, default=Path("/etc/telecentre/unit.toml"))
    check = sub.add_parser(
        "selftest",
        help="check config, keys, readers, relays, inputs, broker and clock (agent stopped)",
    )
    check.add_argument("--config", "-c", type=Path, default=Path("/etc/telecentre/unit.toml"))
    check.add_argument("--pulse", action="store_true", help="click each door's relay once")
    check.add_argument(
        "--inputs",
        action="store_true",
        help="ask to work each input (door, exit button, tamper, motion) and wait for it",
    )
    check.add_argument(
        "--input-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long --inputs waits for each input (default 30)",
    )
    sim = sub.add_parser(
        "simulate",
        help="run the real agent on simulated hardware: a day of members, or a script",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="script steps (--script FILE, or --step STEP repeated):\n" + SCRIPT_HELP,
    )
    sim.add_argument("--config", "-c", type=Path, required=True)
    sim.add_argument(
        "--members",
        type=Path,
        help="JSON list of card UIDs (hex) of the centre's members: simulate their days",
    )
    sim.add_argument("--script", type=Path, help="play the steps of this file, then exit")
    sim.add_argument(
        "--step",
        action="append",
        default=None,
        metavar="STEP",
        help='one script step, e.g. --step "tap entree 04a1b2c3" (repeat; after --script)',
    )
    sim.add_argument(
        "--drain-s",
        type=float,
        default=10.0,
        help="after a script: wait this long for the server to acknowledge every event",
    )
    sim.add_argument("--day-seconds", type=float, default=300.0)
    sim.add_argument("--seed", type=int, default=None)
    sim.add_argument(
        "--server-key",
        action="append",
        default=None,
        metavar="HEX",
        help="the server's public key (64 hex; twice during a rotation), instead of the "
        "config's server_public_keys",
    )
    relock = sub.add_parser("relock", help="drive every door's relay to its locked level")
    relock.add_argument("--config", "-c", type=Path, default=Path("/etc/telecentre/unit.toml"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.command == "relock":  # systemd's ExecStopPost: whatever stopped the agent
        from edge.relock import run as relock_run

        return relock_run(args.config)
    try:
        cfg = edge_config.load(args.config, server_public_keys=getattr(args, "server_key", None))
        if args.command == "selftest":
            return selftest(cfg, args)
        return serve(cfg, args)
    except edge_config.ConfigError as exc:
        print(f"telecentre-edge: configuration error: {exc}", file=sys.stderr)
        return 2
    except HardwareError as exc:
        print(f"telecentre-edge: hardware error: {exc}", file=sys.stderr)
        return 3
    except ScriptError as exc:
        print(f"telecentre-edge: script error: {exc}", file=sys.stderr)
        return 2


def serve(cfg: edge_config.EdgeConfig, args: argparse.Namespace) -> int:
    from edge.agent import EdgeAgent
    from edge.hardware.build import build

    if args.command != "simulate":
        return _run(EdgeAgent(cfg, build(cfg)))
    with contextlib.ExitStack() as stack:
        return _simulate(cfg, args, stack)


def _run(agent: EdgeAgent, scenario: Scenario | None = None) -> int:
    stop = threading.Event()
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: stop.set())
    agent.start()
    if scenario is not None:
        scenario.start()
    try:
        from protocol.sdnotify import Watchdog  # READY=1; WATCHDOG=1 while workers live

        Watchdog(lambda: agent.workers).run_until(stop)
    finally:
        if scenario is not None:
            scenario.stop()
            scenario.join(timeout=5)
        agent.stop()
    return 0


def _simulate(
    cfg: edge_config.EdgeConfig, args: argparse.Namespace, stack: contextlib.ExitStack
) -> int:
    """The real agent on mock pins, fake readers and simulated MFRC522 chips."""
    from dataclasses import replace

    from edge.agent import EdgeAgent
    from edge.hardware.build import build
    from edge.hardware.simchip import SimulatedMfrc522, install
    from edge.simulate import Scenario, ScriptRunner, parse_script
    from protocol.badges import parse_uid

    cfg = replace(cfg, pin_factory="mock")
    scripted = args.script is not None or bool(args.step)
    if scripted == (args.members is not None):
        raise edge_config.ConfigError(
            "simulate: give either --members (a day of members) or --script/--step"
        )
    steps = []
    if args.script is not None:
        try:
            text = args.script.read_text()
        except OSError as exc:
            raise ScriptError(f"{args.script}: cannot read ({exc.strerror})") from None
        try:
            steps += parse_script(text, cfg)
        except ScriptError as exc:
            raise ScriptError(f"{args.script}: {exc}") from None
    for i, step in enumerate(args.step or [], 1):
        steps += parse_script(step, cfg, label="--step", first_line=i)
    chips = {
        (r.spi_bus, r.spi_device): SimulatedMfrc522()
        for d in cfg.doors
        for r in d.readers.values()
        if r.kind == "mfrc522"
    }
    if chips:
        stack.enter_context(install(next(iter(chips.values())), chips))
    # A simulated unit runs on the server's machine and reads the server's own clock: its
    # time is the server's by construction, NTP or not (a container often has none).
    agent = EdgeAgent(cfg, build(cfg), synced=lambda: True)
    if not scripted:
        members = [parse_uid(u) for u in json.loads(args.members.read_text())]
        return _run(agent, Scenario(agent, members, day_seconds=args.day_seconds, seed=args.seed))
    runner = ScriptRunner(agent, steps, chips=chips, out=lambda line: print(line, flush=True))
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    agent.start()
    try:
        runner.run(stop)
        pending = 0 if stop.is_set() else runner.drain(args.drain_s)
    finally:
        agent.stop()
        for sig, handler in previous.items():  # a script ends: whoever ran it gets them back
            signal.signal(sig, handler)
    told = f"{len(runner.events)} events recorded"
    if pending:
        told += f", {pending} not yet acknowledged by the server (kept in the outbox)"
    else:
        told += ", all acknowledged by the server"
    print(f"done: {told}", flush=True)
    return 0


def selftest(cfg: edge_config.EdgeConfig, args: argparse.Namespace) -> int:
    """What a technician runs after wiring: a table of every check, exit 1 if any failed."""
    from edge.selftest import SelfTest, print_table

    test = SelfTest(cfg, pulse=args.pulse, inputs=args.inputs, input_timeout_s=args.input_timeout)
    try:
        checks = test.run()
    finally:
        test.close()
    print_table(checks)
    return 1 if test.failed else 0


if __name__ == "__main__":
    sys.exit(main())
