"""Door decisions from the unit's local access list: pure logic, no I/O, no threads."""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.messages import AccessList, BadgeGrant


@dataclass(frozen=True)
class Decision:
    granted: bool
    reason: str
    member_id: int | None = None

    @property
    def needs_server(self) -> bool:
        """The list does not know the card: only the server can say."""
        return self.reason == "unknown_card"


@dataclass
class LocalAccess:
    """The versioned list pushed by the server, plus grants learnt from online answers."""

    access_list: AccessList | None = None
    _index: dict[str, BadgeGrant] = field(default_factory=dict)
    _learnt: dict[str, BadgeGrant] = field(default_factory=dict)

    @property
    def version(self) -> int | None:
        return None if self.access_list is None else self.access_list.version

    def replace(self, access_list: AccessList) -> bool:
        """Install a newer list; an older or equal version (a stale retained copy) is ignored."""
        if self.access_list is not None and access_list.version <= self.access_list.version:
            return False
        self.access_list = access_list
        self._index = {g.badge_hash: g for g in access_list.grants}
        self._learnt.clear()
        return True

    def learn(self, grant: BadgeGrant) -> None:
        """Keep a grant the server gave online until the next list supersedes it."""
        self._learnt[grant.badge_hash] = grant

    def decide(self, badge_hash: str, now: float) -> Decision:
        grant = self._index.get(badge_hash) or self._learnt.get(badge_hash)
        if grant is None:
            return Decision(False, "unknown_card")
        return check_window(grant, self.trusted_now(now))

    def trusted_now(self, now: float) -> float:
        """A unit without a real-time clock may boot in 1970: the list's issue time is a floor."""
        if self.access_list is None:
            return now
        return max(now, self.access_list.issued_at)


def check_window(grant: BadgeGrant, now: float) -> Decision:
    if grant.valid_from is not None and now < grant.valid_from:
        return Decision(False, "not_yet_valid", grant.member_id)
    if grant.valid_until is not None and now >= grant.valid_until:
        return Decision(False, "expired", grant.member_id)
    return Decision(True, "granted", grant.member_id)
