"""Operators, roles and what each role may see and change: pure rules, no I/O.

Roles: ``admin`` (everything), ``manager`` (the centres listed on the account only),
``viewer`` (reads every centre, changes nothing). A manager asking for anything outside
their centres is told it does not exist (404), so the API is no oracle of other centres.

Members allowed at every centre (``centres`` null) are visible to every manager, since
they may badge in the manager's centres, but only an admin changes them: a change would
reach centres the manager does not run. For the same reason a manager changes a member
only when every centre of the member is one of theirs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "manager", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "manager", "viewer")
LOGIN_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,62}$"
MIN_PASSWORD_LENGTH = 10


@dataclass(frozen=True)
class Operator:
    """A person who logs in to the API or the pages."""

    id: int
    login: str
    name: str
    role: Role
    centres: tuple[str, ...] | None  # a manager's centres; None for admins and viewers
    disabled: bool = False

    @property
    def can_write(self) -> bool:
        return self.role in ("admin", "manager")

    @property
    def scope(self) -> CentreScope:
        return CentreScope(frozenset(self.centres or ()) if self.role == "manager" else None)

    def public(self) -> dict:
        return {
            "id": self.id,
            "login": self.login,
            "name": self.name,
            "role": self.role,
            "centres": list(self.centres) if self.centres is not None else None,
            "disabled": self.disabled,
        }


@dataclass(frozen=True)
class CentreScope:
    """The centres an operator sees: None means every centre."""

    centres: frozenset[str] | None

    def sees(self, centre_id: str | None) -> bool:
        """Whether a record of ``centre_id`` exists for this operator (None: no centre,
        such as a unit not assigned yet: only operators of every centre see it)."""
        if self.centres is None:
            return True
        return centre_id is not None and centre_id in self.centres

    def sees_member(self, member_centres: Sequence[str] | None) -> bool:
        if self.centres is None or member_centres is None:
            return True
        return bool(self.centres.intersection(member_centres))

    def changes_member(self, member_centres: Sequence[str] | None) -> bool:
        """Whether the operator may change a member allowed at ``member_centres``."""
        if self.centres is None:
            return True
        return bool(member_centres) and self.centres.issuperset(member_centres)

    def only(self, centre_ids: Iterable[str]) -> list[str]:
        return [c for c in centre_ids if self.sees(c)]


def validate_password(password: str) -> str:
    """The password if it is usable; ValueError naming what is wrong otherwise."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise ValueError("password: at most 1024 characters")
    return password


@dataclass(frozen=True)
class SessionTimes:
    """When a session started and was last used, to decide whether it is still valid."""

    created_at: float
    last_seen: float


def session_alive(times: SessionTimes, now: float, *, idle_s: float, absolute_s: float) -> bool:
    """A session lapses after ``idle_s`` without use, and ``absolute_s`` after login."""
    return now - times.last_seen < idle_s and now - times.created_at < absolute_s


def retry_after(failure_times: Sequence[float], now: float, *, limit: int, window_s: float) -> int:
    """Seconds before another login may be tried; 0 when fewer than ``limit`` failures
    fell within the last ``window_s`` seconds."""
    recent = sorted(t for t in failure_times if now - t < window_s)
    if len(recent) < limit:
        return 0
    # Blocked until enough of the failures leave the window to drop below the limit.
    oldest_to_expire = recent[len(recent) - limit]
    return max(1, int(oldest_to_expire + window_s - now + 0.999))
