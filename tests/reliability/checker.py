"""The suite's checker: what became of every event a unit decided.

As Jepsen's checkers do, it compares two histories: what each unit decided (its outbox's
``last_seq``: every seq from 1 to it was committed, with its decision, before the door
moved; and the ``event #N`` lines the unit printed) and what the server stored (its
``events`` table, read from the SQLite file). Each decided event is *delivered once*,
*lost* or *duplicated*; a stored event no unit decided is *unexpected*. Each unit's stored
seqs must also be contiguous from 1, with nothing missing in between.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability.harness import UnitProcess, read_rows


@dataclass
class UnitVerdict:
    device_id: str
    decided: int
    delivered_once: int
    lost: list[int]
    duplicated: list[int]
    unexpected: list[int]
    gaps: list[int]
    historical: int

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.gaps)


@dataclass
class Verdict:
    units: list[UnitVerdict] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(
            len(getattr(u, name)) if isinstance(getattr(u, name), list) else getattr(u, name)
            for u in self.units
        )

    @property
    def ok(self) -> bool:
        return all(u.ok for u in self.units)

    def summary(self) -> str:
        return (
            f"decided {self.total('decided')}, delivered once {self.total('delivered_once')}, "
            f"lost {self.total('lost')}, duplicated {self.total('duplicated')}, "
            f"unexpected {self.total('unexpected')}, seq gaps {self.total('gaps')}, "
            f"historical {self.total('historical')}"
        )

    def details(self) -> str:
        return "; ".join(
            f"{u.device_id}: lost {u.lost[:10]} dup {u.duplicated[:10]} "
            f"unexpected {u.unexpected[:10]} gaps {u.gaps[:10]}"
            for u in self.units
            if not u.ok
        )


def stored_events(server_db: Path | str, device_id: str) -> list[tuple[int, str, int]]:
    """(seq, event_id, historical) of every row the server stored for a unit (its SQLite
    file, or its PostgreSQL URL)."""
    return read_rows(  # type: ignore[return-value]
        server_db,
        "SELECT seq, event_id, historical FROM events WHERE device_id = ? ORDER BY id",
        (device_id,),
    )


def check_unit(server_db: Path | str, unit: UnitProcess) -> UnitVerdict:
    """``unit``: a UnitProcess, or anything with its device_id, outbox() and printed_seqs()."""
    state = unit.outbox()
    decided = set(range(1, state.last_seq + 1))
    printed = set(unit.printed_seqs())
    rows = stored_events(server_db, unit.device_id)
    by_seq = Counter(seq for seq, _, _ in rows)
    by_id = Counter(event_id for _, event_id, _ in rows)
    duplicated = sorted(
        {s for s, n in by_seq.items() if n > 1}
        | {s for s, eid, _ in rows if by_id[eid] > 1}  # the same event under two seqs
    )
    stored = set(by_seq)
    # Printed but not in the outbox's range would be a decision the file forgot.
    lost = sorted((decided | printed) - stored)
    unexpected = sorted(stored - decided - printed)
    top = max(stored, default=0)
    gaps = sorted(set(range(1, top + 1)) - stored)
    return UnitVerdict(
        device_id=unit.device_id,
        decided=len(decided | printed),
        delivered_once=sum(1 for s in decided | printed if by_seq[s] == 1),
        lost=lost,
        duplicated=duplicated,
        unexpected=unexpected,
        gaps=gaps,
        historical=sum(1 for _, _, h in rows if h),
    )


def check(server_db: Path | str, units: list[UnitProcess]) -> Verdict:
    return Verdict([check_unit(server_db, u) for u in units])


def delivered(server_db: Path | str, units: list[UnitProcess]) -> bool:
    """Every unit's outbox is empty and the server holds each of its decided seqs."""
    for unit in units:
        if unit.pending() != 0:
            return False
        state = unit.outbox()
        if len({s for s, _, _ in stored_events(server_db, unit.device_id)}) < state.last_seq:
            return False
    return True


def uid_forms(uid_hex: str) -> list[bytes]:
    """The ways a raw card UID could be written down: hex either case, with colons, the raw
    bytes, and the integer the reader library reports."""
    raw = bytes.fromhex(uid_hex)
    text = [
        uid_hex.lower(),
        uid_hex.upper(),
        ":".join(f"{b:02x}" for b in raw),
        ":".join(f"{b:02X}" for b in raw),
        str(int.from_bytes(raw, "big")),
    ]
    return [raw, *(t.encode() for t in text)]


def raw_uid_hits(roots: list[Path], uids: list[str], *, inputs: tuple[str, ...] = ()) -> list[str]:
    """Every file under ``roots`` (databases, WAL and journal files, logs, anything else)
    holding one of ``uids`` in any form; files named in ``inputs`` (the test's own scripts)
    are skipped, and so are the script steps a simulated unit echoes (lines "> ...")."""
    hits = []
    forms = {uid: uid_forms(uid) for uid in uids}
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.name in inputs or path.name.startswith(inputs or ("\0",)):
                continue
            data = path.read_bytes()
            if path.name == "unit.log":
                data = b"\n".join(line for line in data.splitlines() if not line.startswith(b"> "))
            for uid, ways in forms.items():
                if any(form in data for form in ways):
                    hits.append(f"{path}: {uid}")
    return hits
