"""The unit's heartbeat: what it says about itself every ``health_interval_s`` seconds.

``condition`` is ``degraded`` while the unit works but not fully: a reader fault, a worker
that died, a filling outbox, a low disk, an open tamper switch. The reasons are the same
words the status's ``faults`` use, so a technician reads one vocabulary.

The probes read the machine (CPU temperature from the kernel's thermal zone, free space
on the outbox's file system) and answer None where the machine does not tell.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from protocol.messages import DoorHealth

# Below this much free space on the outbox's file system the unit is degraded.
LOW_DISK_MB = 100
THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temp_c(zone: Path = THERMAL_ZONE) -> float | None:
    """The SoC temperature in °C (the kernel gives millidegrees); None off a Pi."""
    try:
        return round(int(zone.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


def disk_free_mb(path: Path) -> int | None:
    """Free space for an unprivileged writer on ``path``'s file system, in MB."""
    try:
        return shutil.disk_usage(path).free // (1024 * 1024)
    except OSError:
        return None


def degraded_reasons(
    faults: Iterable[str], dead_workers: Iterable[str], free_mb: int | None
) -> list[str]:
    """Why the unit is degraded (empty: it is not), each under 200 characters.

    ``dead_workers``: workers that were started and have stopped."""
    reasons = [fault[:200] for fault in faults]
    reasons += [f"unit: worker {name} stopped" for name in dead_workers]
    if free_mb is not None and free_mb < LOW_DISK_MB:
        reasons.append(f"unit: disk: {free_mb} MB free (below {LOW_DISK_MB} MB)")
    return reasons[:32]


def door_health(
    door_id: str,
    *,
    faults: dict[str, str],
    has_exit_reader: bool,
    unlocked: bool,
    closed: bool | None,
) -> DoorHealth:
    """One door as the heartbeat tells it; ``faults`` is keyed as the agent keys them."""
    return DoorHealth(
        id=door_id,
        reader="fault" if f"{door_id}: card reader" in faults else "ok",
        exit_reader=(
            ("fault" if f"{door_id}: exit reader" in faults else "ok") if has_exit_reader else None
        ),
        relay="unlocked" if unlocked else "locked",
        contact=None if closed is None else ("closed" if closed else "open"),
    )
