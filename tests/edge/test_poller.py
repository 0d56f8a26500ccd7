"""The card poller: one on_card per presentation, reader faults reported once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from edge.hardware.fakes import FakeCardReader
from edge.poller import CardPoller
from tests.edge.support import wait_until

CARD = bytes.fromhex("04a1b2c3")
OTHER = bytes.fromhex("deadbeef")
POLL_MS = 10


def let_pass(seconds: float) -> None:
    threading.Event().wait(seconds)


@pytest.fixture
def reader() -> FakeCardReader:
    return FakeCardReader()


@pytest.fixture
def cards() -> list[bytes]:
    return []


@pytest.fixture
def faults() -> list[str | None]:
    return []


@pytest.fixture
def start_poller(
    reader: FakeCardReader, cards: list[bytes], faults: list[str | None]
) -> Iterator[Callable[..., CardPoller]]:
    pollers: list[CardPoller] = []

    def start(
        *, repeat_ms: int = 2000, on_card: Callable[[bytes], None] | None = None
    ) -> CardPoller:
        poller = CardPoller(
            reader,
            on_card or cards.append,
            poll_interval_ms=POLL_MS,
            repeat_ms=repeat_ms,
            on_fault=faults.append,
        )
        poller.start()
        pollers.append(poller)
        return poller

    yield start
    for poller in pollers:
        poller.stop()
    for poller in pollers:
        poller.join(timeout=6)


def test_a_held_card_counts_once(
    start_poller: Callable[..., CardPoller], reader: FakeCardReader, cards: list[bytes]
) -> None:
    start_poller(repeat_ms=200)

    reader.present(CARD)
    wait_until(lambda: cards, timeout=2, what="the card")
    let_pass(0.5)  # held well past repeat_ms, seen on every poll

    assert cards == [CARD]


def test_a_card_tapped_twice_in_quick_succession_counts_once(
    start_poller: Callable[..., CardPoller], reader: FakeCardReader, cards: list[bytes]
) -> None:
    start_poller(repeat_ms=2000)

    reader.present(CARD)
    wait_until(lambda: cards, timeout=2, what="the card")
    reader.remove()
    let_pass(0.05)
    reader.present(CARD)  # the card flickers at the edge of the field
    let_pass(0.2)

    assert cards == [CARD]


def test_a_card_presented_again_after_repeat_ms_counts_again(
    start_poller: Callable[..., CardPoller], reader: FakeCardReader, cards: list[bytes]
) -> None:
    start_poller(repeat_ms=200)

    reader.present(CARD)
    wait_until(lambda: cards, timeout=2, what="the card")
    reader.remove()
    let_pass(0.3)
    reader.present(CARD)  # the member leaves: badges out
    wait_until(lambda: len(cards) == 2, timeout=2, what="the second presentation")

    assert cards == [CARD, CARD]


def test_a_different_card_is_reported_at_once(
    start_poller: Callable[..., CardPoller], reader: FakeCardReader, cards: list[bytes]
) -> None:
    start_poller(repeat_ms=5000)

    reader.present(CARD)
    wait_until(lambda: cards, timeout=2, what="the first card")
    reader.present(OTHER)  # the next member, right behind
    wait_until(lambda: len(cards) == 2, timeout=1, what="the second card")

    assert cards == [CARD, OTHER]


def test_a_failing_reader_is_reported_once_and_its_recovery_too(
    start_poller: Callable[..., CardPoller],
    reader: FakeCardReader,
    cards: list[bytes],
    faults: list[str | None],
) -> None:
    reader.failing = True
    start_poller()

    wait_until(lambda: faults, timeout=2, what="the fault")
    let_pass(0.3)  # several more failed polls
    only_once = list(faults)
    reader.failing = False
    wait_until(lambda: len(faults) == 2, timeout=5, what="the recovery")
    reader.present(CARD)
    wait_until(lambda: cards, timeout=2, what="a card after the recovery")

    assert only_once == ["fake reader: not answering"]
    assert faults == ["fake reader: not answering", None]
    assert cards == [CARD]


def test_a_handler_that_raises_does_not_stop_the_poller(
    start_poller: Callable[..., CardPoller], reader: FakeCardReader, cards: list[bytes]
) -> None:
    def handler(uid: bytes) -> None:
        cards.append(uid)
        if uid == CARD:
            raise RuntimeError("outbox full")

    poller = start_poller(on_card=handler)

    reader.present(CARD)
    wait_until(lambda: cards, timeout=2, what="the first card")
    reader.present(OTHER)
    wait_until(lambda: len(cards) == 2, timeout=2, what="the next card")

    assert cards == [CARD, OTHER]
    assert poller.is_alive()


def test_stop_ends_the_poller_promptly(start_poller: Callable[..., CardPoller]) -> None:
    poller = start_poller()

    poller.stop()
    poller.join(timeout=1)

    assert not poller.is_alive()


class _BuggyReader(FakeCardReader):
    """Raises an error no adapter should (a bug), twice, then reads again."""

    def __init__(self) -> None:
        super().__init__()
        self.bugs = 2

    def read_uid(self) -> bytes | None:
        if self.bugs:
            self.bugs -= 1
            raise ZeroDivisionError("bug in the adapter")
        return super().read_uid()


def test_a_reader_raising_an_unexpected_error_is_polled_again(
    cards: list[bytes], faults: list[str | None]
) -> None:
    reader = _BuggyReader()
    poller = CardPoller(reader, cards.append, poll_interval_ms=POLL_MS, on_fault=faults.append)
    poller.start()
    try:
        reader.present(CARD)
        wait_until(lambda: cards, timeout=5, what="a card after the errors")
    finally:
        poller.stop()

    assert cards == [CARD]
    assert poller.errors == 2
    assert faults == ["ZeroDivisionError: bug in the adapter", None]
