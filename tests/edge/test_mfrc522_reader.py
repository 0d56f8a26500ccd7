"""Mfrc522Reader running the real mfrc522-python code against the simulated MFRC522 chip."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator

import pytest

from edge.hardware import HardwareError
from edge.hardware.mfrc522_reader import Mfrc522Reader
from edge.hardware.simchip import Fakes, SimulatedMfrc522, crc_a, install

UID = bytes([0xDE, 0xAD, 0xBE, 0xEF])
OTHER_UID = bytes([0x01, 0x02, 0x03, 0x04])
# Frames of one idle poll: a VersionReg read plus REQA; the library's wait loop would add
# one read per millisecond if the chip's IRQ never came.
IDLE_POLL_MAX_TRANSFERS = 25


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"the library waited ({seconds} s): the simulated IRQ did not fire")


@pytest.fixture
def chip() -> SimulatedMfrc522:
    return SimulatedMfrc522()


@pytest.fixture
def fakes(chip: SimulatedMfrc522, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    with install(chip) as installed:
        library = importlib.import_module("mfrc522.MFRC522")
        monkeypatch.setattr(library, "sleep", _no_sleep)
        yield installed


@pytest.fixture
def reader(fakes: Fakes) -> Iterator[Mfrc522Reader]:
    card_reader = Mfrc522Reader()
    yield card_reader
    card_reader.close()


def test_reads_the_uid_of_a_presented_card_without_the_check_byte(
    chip: SimulatedMfrc522, reader: Mfrc522Reader
) -> None:
    chip.present_card(UID)

    assert reader.read_uid() == UID


def test_a_held_card_is_read_on_every_poll(chip: SimulatedMfrc522, reader: Mfrc522Reader) -> None:
    chip.present_card(UID)

    assert [reader.read_uid() for _ in range(5)] == [UID] * 5
    assert chip.card_state == "ready"  # Never halted.


def test_an_empty_field_reads_none_in_a_bounded_number_of_transfers(
    chip: SimulatedMfrc522, reader: Mfrc522Reader
) -> None:
    for _ in range(3):
        before = chip.transfers
        assert reader.read_uid() is None
        assert 0 < chip.transfers - before <= IDLE_POLL_MAX_TRANSFERS


def test_a_removed_card_reads_none_and_a_new_card_is_read(
    chip: SimulatedMfrc522, reader: Mfrc522Reader
) -> None:
    chip.present_card(UID)
    assert reader.read_uid() == UID

    chip.remove_card()
    assert reader.read_uid() is None
    assert reader.read_uid() is None

    chip.present_card(OTHER_UID)
    assert reader.read_uid() == OTHER_UID


def test_a_card_with_a_longer_uid_is_ignored(chip: SimulatedMfrc522, reader: Mfrc522Reader) -> None:
    chip.present_card(bytes([0x88, 0x04, 0xA1, 0xB2]))  # Cascade level 1 of a 7-byte UID.

    assert [reader.read_uid() for _ in range(3)] == [None] * 3


def test_the_reader_sets_up_spi_and_the_bcm_reset_pin(fakes: Fakes) -> None:
    card_reader = Mfrc522Reader(bus=1, device=2, reset_pin=17, spi_speed_hz=500_000)

    spi = fakes.spidev.devices[-1]
    assert (spi.bus, spi.device, spi.max_speed_hz) == (1, 2, 500_000)
    assert fakes.gpio.mode == fakes.gpio.BCM
    assert fakes.gpio.directions[17] == fakes.gpio.OUT
    assert fakes.gpio.levels[17] == fakes.gpio.HIGH
    card_reader.close()


def test_close_releases_spi_but_never_cleans_up_gpio(fakes: Fakes, reader: Mfrc522Reader) -> None:
    fakes.gpio.setup(18, fakes.gpio.OUT)  # Say the door relay.
    fakes.gpio.output(18, fakes.gpio.HIGH)

    reader.close()
    reader.close()

    assert fakes.spidev.devices[-1].closed
    assert fakes.gpio.cleanups == []
    assert fakes.gpio.levels[18] == fakes.gpio.HIGH
    with pytest.raises(HardwareError, match="closed"):
        reader.read_uid()


def test_a_chip_that_does_not_answer_fails_construction(
    chip: SimulatedMfrc522, fakes: Fakes
) -> None:
    chip.responsive = False

    with pytest.raises(HardwareError, match="SPI bus 0 device 1 is not answering"):
        Mfrc522Reader(device=1)
    assert fakes.spidev.devices[-1].closed
    assert fakes.gpio.cleanups == []


def test_a_chip_that_stops_answering_while_idle_raises(
    chip: SimulatedMfrc522, reader: Mfrc522Reader
) -> None:
    assert reader.read_uid() is None
    chip.responsive = False

    with pytest.raises(HardwareError, match="SPI bus 0 device 0 is not answering"):
        reader.read_uid()


def test_a_chip_that_stops_answering_with_a_card_held_raises_on_the_next_poll(
    chip: SimulatedMfrc522, reader: Mfrc522Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The library's wait loop cannot see a dead chip: it spins until its count runs out.
    waits: list[float] = []
    monkeypatch.setattr(sys.modules["mfrc522.MFRC522"], "sleep", waits.append)
    chip.present_card(UID)
    assert reader.read_uid() == UID
    chip.responsive = False

    with pytest.raises(HardwareError, match="SPI bus 0 device 0 is not answering"):
        reader.read_uid()
    assert len(waits) < 2000  # One timed-out REQA only.


def test_board_numbering_already_in_use_is_refused(fakes: Fakes) -> None:
    fakes.gpio.setmode(fakes.gpio.BOARD)

    with pytest.raises(HardwareError, match="BOARD"):
        Mfrc522Reader()
    assert fakes.spidev.devices == []


def test_without_the_library_construction_raises_hardware_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mfrc522", None)

    with pytest.raises(HardwareError, match="mfrc522-python") as raised:
        Mfrc522Reader()
    assert "SPI bus 0 device 0" in str(raised.value)


def test_library_log_handlers_do_not_pile_up(fakes: Fakes) -> None:
    Mfrc522Reader().close()
    count = len(logging.getLogger("mfrc522Logger").handlers)

    for _ in range(3):
        Mfrc522Reader().close()

    assert len(logging.getLogger("mfrc522Logger").handlers) == count


# The simulated chip itself, driven by the library as a Pi would drive the real one.


def test_crc_a_matches_the_hlta_frame_of_iso_14443_3() -> None:
    assert crc_a([0x50, 0x00]) == 0xCD57  # HLTA goes on the air as 50 00 57 CD.


def test_a_halted_card_answers_wupa_but_not_reqa_until_presented_again(
    chip: SimulatedMfrc522, fakes: Fakes
) -> None:
    library = importlib.import_module("mfrc522")
    rc522 = library.MFRC522(pin_mode=11)
    chip.present_card(UID)
    assert rc522.Request(rc522.PICC_REQIDL)[0] == rc522.MI_OK
    status, answer = rc522.Anticoll()
    assert status == rc522.MI_OK and answer == [*UID, 0xDE ^ 0xAD ^ 0xBE ^ 0xEF]
    assert rc522.SelectTag(answer) == 0x08
    assert rc522.Authenticate(rc522.PICC_AUTHENT1A, 11, [0xFF] * 6, answer) == rc522.MI_OK
    rc522.StopCrypto1()
    rc522.Halt()
    assert chip.card_state == "halt"

    assert rc522.Request(rc522.PICC_REQIDL)[0] == rc522.MI_ERR
    assert rc522.Request(rc522.PICC_REQALL)[0] == rc522.MI_OK
    chip.remove_card()
    chip.present_card(UID)
    assert rc522.Request(rc522.PICC_REQIDL)[0] == rc522.MI_OK


def test_install_puts_sys_modules_back() -> None:
    before = {name: sys.modules.get(name) for name in ("RPi", "RPi.GPIO", "spidev", "mfrc522")}

    with install(SimulatedMfrc522()) as installed:
        import mfrc522.MFRC522  # noqa: F401 - imported against the fakes.

        assert sys.modules["mfrc522.MFRC522"].GPIO is installed.gpio
        assert sys.modules["mfrc522.MFRC522"].spidev is installed.spidev

    assert {name: sys.modules.get(name) for name in before} == before


def test_a_chip_reset_by_a_supply_dip_is_a_fault_until_reinitialised(
    chip: SimulatedMfrc522, reader: Mfrc522Reader
) -> None:
    """After a brown-out the chip answers SPI but its antenna is off: it would read no card
    ever again while looking healthy. The reader says so, and ``reinit`` brings it back."""
    chip.present_card(UID)
    assert reader.read_uid() == UID
    chip.brownout()
    with pytest.raises(HardwareError, match="lost its configuration"):
        reader.read_uid()
    reader.reinit()
    assert reader.read_uid() == UID


def test_a_reader_is_reinitialised_by_its_poller_and_the_fault_clears(
    chip: SimulatedMfrc522, reader: Mfrc522Reader
) -> None:
    from edge.poller import CardPoller
    from tests.conftest import wait_until

    cards: list[bytes] = []
    faults: list[str | None] = []
    poller = CardPoller(reader, cards.append, poll_interval_ms=10, on_fault=faults.append)
    poller.start()
    try:
        chip.brownout()
        wait_until(lambda: faults and faults[-1] is None, what="the fault, then its end")
        chip.present_card(UID)
        wait_until(lambda: cards, what="a card read after the reinitialisation")
    finally:
        poller.stop()
    assert faults[0] is not None and "lost its configuration" in faults[0]
    assert poller.reinits >= 1 and cards == [UID]


def test_a_dead_chip_is_retried_until_it_answers(
    chip: SimulatedMfrc522, reader: Mfrc522Reader
) -> None:
    """Unpowered (every read 0x00), reinitialising fails; the poller keeps trying with a
    growing pause, and the chip powered again comes back configured."""
    from edge.poller import CardPoller
    from tests.conftest import wait_until

    faults: list[str | None] = []
    cards: list[bytes] = []
    poller = CardPoller(reader, cards.append, poll_interval_ms=10, on_fault=faults.append)
    poller.start()
    try:
        chip.responsive = False
        wait_until(lambda: faults, what="the fault")
        assert "not answering" in str(faults[0])
        chip.brownout()  # power back: registers at their reset values
        chip.responsive = True
        chip.present_card(UID)
        wait_until(lambda: cards, timeout=15, what="a card once the chip answers")
    finally:
        poller.stop()
    assert faults[-1] is None
