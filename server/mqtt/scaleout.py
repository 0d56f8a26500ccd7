"""Several server workers sharing the units' messages (MQTT v5 shared subscriptions).

With ``mqtt_share_group`` set (and a PostgreSQL store, which every worker shares), each
worker subscribes to the units' events and online access requests as
``$share/<group>/telecentre/+/event``: the broker hands each message to one worker of the
group. Each worker stores what it received and acks it after its own commit, as a single
server does. What must happen once is the leader's alone (``server.store.postgres.leader``):
publishing the access lists and the server's status, and reading the units' status
messages (birth and last will, in order). Command results go to every worker, not shared:
the worker whose API call waits for one must hear it, and the store keeps the first answer
(a second copy changes nothing).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from protocol import topics
from protocol.workers import Worker
from server.mqtt.lists import AccessListPublisher
from server.store import Store
from server.store.postgres.leader import Leadership

log = logging.getLogger(__name__)

SHARED = (topics.EVENT, topics.ACCESS_REQUEST)
EVERY_WORKER = (topics.COMMAND_RESULT,)
LEADER_ONLY = (topics.STATUS, topics.HEALTH)  # retained: the leader reads them all


def shared(group: str, spec: topics.TopicSpec) -> str:
    return f"$share/{group}/{topics.subscription(spec)}"


def subscriptions(group: str, *, leader: bool, events: bool = True) -> list[tuple[str, int]]:
    """What a worker of ``group`` subscribes to (topic filter, QoS); ``events`` False when
    its events receiver (``server.mqtt.receiver``) takes them."""
    out = [(shared(group, s), s.qos) for s in SHARED if events or s is not topics.EVENT]
    out += [(topics.subscription(s), s.qos) for s in EVERY_WORKER]
    if leader:
        out += [(topics.subscription(s), s.qos) for s in LEADER_ONLY]
    return out


def leader_only() -> list[str]:
    return [topics.subscription(s) for s in LEADER_ONLY]


class ListRelay:
    """The bridge's ``lists`` on a worker of a group: on the leader, an access-list
    publisher; on the others, a relay that notifies the leader of each change."""

    def __init__(
        self,
        make_publisher: Callable[[], AccessListPublisher],
        leadership: Leadership,
        store: Store,
    ) -> None:
        self._make = make_publisher
        self.leadership = leadership
        self.store = store
        self.publisher: AccessListPublisher | None = None
        self._lock = threading.Lock()

    @property
    def workers(self) -> list[Worker]:
        return [self.leadership] + ([self.publisher] if self.publisher is not None else [])

    def lead(self, leader: bool) -> None:
        """Start publishing (every centre checked: changes may have been notified while no
        worker led) or stop."""
        with self._lock:
            if leader and self.publisher is None:
                self.publisher = self._make()
                self.publisher.start()
                self.publisher.invalidate(None)
            elif not leader and self.publisher is not None:
                publisher, self.publisher = self.publisher, None
                publisher.stop()

    def notice(self, notice: dict[str, Any]) -> None:
        """A change another worker made (the leader's Leadership thread)."""
        publisher = self.publisher
        if publisher is None:
            return
        if notice.get("op") == "snapshot":
            publisher.snapshot(notice.get("centres"))
        else:
            publisher.invalidate(notice.get("centres"), notice.get("members"))

    def _tell(self, op: str, centre_ids: Iterable[str] | None, members: Any = None) -> None:
        notice = {
            "op": op,
            "centres": None if centre_ids is None else sorted(centre_ids),
            "members": None if members is None else sorted(members),
        }
        try:
            self.leadership.notify(notice)
        except Exception:  # the leader recompiles every centre when it next takes over
            log.exception("could not tell the leader about a change: %s", notice)

    def invalidate(
        self, centre_ids: Iterable[str] | None = None, member_ids: Iterable[int] | None = None
    ) -> None:
        publisher = self.publisher
        if publisher is not None:
            publisher.invalidate(centre_ids, member_ids)
        else:
            self._tell("invalidate", centre_ids, member_ids)

    def snapshot(self, centre_ids: Iterable[str] | None = None) -> None:
        publisher = self.publisher
        if publisher is not None:
            publisher.snapshot(centre_ids)
        else:
            self._tell("snapshot", centre_ids)

    def republish(self) -> None:
        publisher = self.publisher
        if publisher is not None:
            publisher.republish()

    def state(self, centre_id: str) -> Any:
        publisher = self.publisher
        if publisher is not None:
            return publisher.state(centre_id)
        return self.store.list_state(centre_id)

    def start(self) -> None:
        """The leadership starts and stops the publisher."""

    def stop(self, timeout: float = 5.0) -> None:
        self.leadership.stop(timeout)
        self.lead(False)
