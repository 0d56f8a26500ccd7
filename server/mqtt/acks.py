"""A unit's acks, built and signed: shared by the server's ``Acker`` and the events receiver.

Either process may send them (``server.mqtt.receiver``): the receiver's when the broker
lets its account publish acks, the server's own connection otherwise. One ``AckOrder``
says what to acknowledge for one (unit, outbox epoch) and becomes one signed ``Ack``, or
more when it holds more than ``MAX_ACK_ITEMS`` of either list.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from protocol.messages import Ack, Rejected
from protocol.signing import Signer

MAX_ACK_ITEMS = 10_000  # Ack.seqs and Ack.rejected bounds

# (device id, epoch, seqs stored, [(seq, reason) refused for good]), sorted by seq.
AckOrder = tuple[str, str, list[int], list[tuple[int, str]]]


def signed_acks(signer: Signer, order: AckOrder) -> Iterator[bytes]:
    """The signed envelopes of ``order``, each within the message's bounds."""
    device_id, epoch, seqs, refused = order
    refusals = [Rejected(seq, reason) for seq, reason in refused]
    while seqs or refusals:
        ack = Ack(
            device_id=device_id,
            epoch=epoch,
            seqs=seqs[:MAX_ACK_ITEMS],
            rejected=refusals[:MAX_ACK_ITEMS],
            issued_at=time.time(),
        )
        seqs, refusals = seqs[MAX_ACK_ITEMS:], refusals[MAX_ACK_ITEMS:]
        yield signer.sign(ack)
