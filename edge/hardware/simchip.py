"""A simulated MFRC522 chip, plus fake ``spidev`` and ``RPi.GPIO`` modules.

These let the real mfrc522-python library run off a Pi, for tests and
``telecentre-edge simulate``. Only what mfrc522-python 0.0.9 uses is modelled:
register reads and writes over SPI, the FIFO, the IRQ registers, CalcCRC,
Transceive and MFAuthent, and one MIFARE card with a 4-byte UID that follows
the ISO 14443-3 state machine (IDLE, READY, ACTIVE, HALT).
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

# Register addresses (MFRC522 datasheet, section 9.2).
COMMAND, COMM_IRQ, DIV_IRQ, ERROR, STATUS2 = 0x01, 0x04, 0x05, 0x06, 0x08
FIFO_DATA, FIFO_LEVEL, CONTROL, BIT_FRAMING = 0x09, 0x0A, 0x0C, 0x0D
CRC_RESULT_M, CRC_RESULT_L, VERSION = 0x21, 0x22, 0x37
TX_CONTROL, T_MODE = 0x14, 0x2A  # antenna drivers (bits 0-1), timer mode
# Commands written to CommandReg.
IDLE, CALC_CRC, TRANSCEIVE, MF_AUTHENT, SOFT_RESET = 0x00, 0x03, 0x0C, 0x0E, 0x0F
# CommIrqReg and DivIrqReg bits.
TX_IRQ, RX_IRQ, IDLE_IRQ, TIMER_IRQ, CRC_IRQ = 0x40, 0x20, 0x10, 0x01, 0x04
BUFFER_OVFL = 0x10  # ErrorReg bit.
MF_CRYPTO1_ON = 0x08  # Status2Reg bit.
CHIP_VERSION = 0x92  # What an MFRC522 v2.0 reports in VersionReg.
FIFO_SIZE = 64
REQA, WUPA = 0x26, 0x52
FACTORY_KEY = [0xFF] * 6
# Reset values of the registers the library reads before writing them.
_RESET_VALUES = {COMMAND: 0x20, 0x02: 0x80, CONTROL: 0x10, 0x11: 0x3F, 0x14: 0x80, VERSION: 0x92}


def crc_a(data: Sequence[int]) -> int:
    """ISO 14443-3 CRC_A of ``data``; the low byte goes on the air first."""
    crc = 0x6363
    for byte in data:
        byte = (byte ^ crc) & 0xFF
        byte = (byte ^ (byte << 4)) & 0xFF
        crc = (crc >> 8) ^ (byte << 8) ^ (byte << 3) ^ (byte >> 4)
    return crc & 0xFFFF


def _with_crc(data: list[int]) -> list[int]:
    crc = crc_a(data)
    return [*data, crc & 0xFF, crc >> 8]


class SimulatedMfrc522:
    """One MFRC522 behind one SPI chip select, with at most one card in its RF field.

    Every command finishes as soon as it is started, so the library's busy-wait loops see
    their IRQ bit on the first read and never sleep.
    """

    def __init__(self) -> None:
        self.responsive = True  # False: the chip is dead, every read is 0x00 and no IRQ fires.
        self.transfers = 0  # SPI frames seen, answered or not.
        self.uid: bytes | None = None
        self.card_state = "idle"  # ISO 14443-3 state: idle, ready, active or halt.
        self._woken_from_halt = False
        self._regs = [0] * 64
        self._fifo: list[int] = []
        self._reset()

    def present_card(self, uid: bytes) -> None:
        """Brings a card with this 4-byte UID into the field; it powers up in IDLE."""
        if len(uid) != 4:
            raise ValueError("the simulated card has a single-size (4-byte) UID")
        self.uid, self.card_state, self._woken_from_halt = bytes(uid), "idle", False

    def remove_card(self) -> None:
        """Takes the card out of the field."""
        self.uid = None

    def brownout(self) -> None:
        """A dip in its supply: the chip comes back with every register at its reset value
        (antenna off, timer unset) and answers SPI as if nothing happened. A card in the
        field loses power with the field and starts again in IDLE."""
        self._reset()
        self.card_state, self._woken_from_halt = "idle", False

    def xfer2(self, frame: Sequence[int]) -> list[int]:
        """One SPI transaction: an address byte, then data bytes (datasheet 8.1.2)."""
        self.transfers += 1
        if not self.responsive or not frame:
            return [0] * len(frame)
        addr = (frame[0] >> 1) & 0x3F
        if not frame[0] & 0x80:
            for value in frame[1:]:
                self._write(addr, value & 0xFF)
            return [0] * len(frame)
        out = [0]
        for following in frame[1:]:  # In a burst read each byte names the next address.
            out.append(self._read(addr))
            addr = (following >> 1) & 0x3F
        return out

    def _reset(self) -> None:
        self._regs = [_RESET_VALUES.get(addr, 0) for addr in range(64)]
        self._fifo.clear()

    def _read(self, addr: int) -> int:
        if addr == FIFO_DATA:
            return self._fifo.pop(0) if self._fifo else 0
        if addr == FIFO_LEVEL:
            return len(self._fifo)
        return self._regs[addr]

    def _write(self, addr: int, value: int) -> None:
        regs = self._regs
        if addr == FIFO_DATA:
            if len(self._fifo) < FIFO_SIZE:
                self._fifo.append(value)
            else:
                regs[ERROR] |= BUFFER_OVFL
        elif addr == FIFO_LEVEL:
            if value & 0x80:  # FlushBuffer; the level bits themselves are read-only.
                self._fifo.clear()
                regs[ERROR] &= ~BUFFER_OVFL
        elif addr in (COMM_IRQ, DIV_IRQ):
            # Bit 7 says whether the marked bits are set or cleared. Note that the library's
            # ClearBitMask(DivIrqReg, 0x04) therefore clears every bit except CRCIRq.
            mask = value & 0x7F
            regs[addr] = regs[addr] | mask if value & 0x80 else regs[addr] & ~mask
        elif addr == COMMAND:
            regs[COMMAND] = value & 0x3F
            self._start(value & 0x0F)
        elif addr == BIT_FRAMING:
            regs[addr] = value
            if value & 0x80 and regs[COMMAND] & 0x0F == TRANSCEIVE:  # StartSend
                self._transceive()
        elif addr != VERSION:
            regs[addr] = value

    def _start(self, command: int) -> None:
        regs = self._regs
        if command == SOFT_RESET:
            self._reset()
        elif command == CALC_CRC:
            crc = crc_a(self._fifo)  # The coprocessor consumes the FIFO.
            self._fifo.clear()
            regs[CRC_RESULT_L], regs[CRC_RESULT_M] = crc & 0xFF, crc >> 8
            regs[DIV_IRQ] |= CRC_IRQ
        elif command == MF_AUTHENT:
            self._authenticate(list(self._fifo))
            self._fifo.clear()
        # Transceive waits for StartSend in BitFramingReg; Idle does nothing.

    def _transceive(self) -> None:
        frame, bits = list(self._fifo), self._regs[BIT_FRAMING] & 0x07
        self._fifo.clear()
        self._regs[ERROR] = 0
        antenna_on = self._regs[TX_CONTROL] & 0x03 == 0x03
        answer = (
            self._card_answer(frame, short=bits == 7 and len(frame) == 1) if antenna_on else None
        )
        # The timer (TAuto, set by the library's Init) fires at once when nothing answers,
        # instead of after 25 ms, so a poll of an empty field stays fast.
        self._regs[COMM_IRQ] |= TX_IRQ | (TIMER_IRQ if answer is None else RX_IRQ | IDLE_IRQ)
        if answer is not None:
            self._fifo.extend(answer)
            self._regs[CONTROL] &= ~0x07  # RxLastBits = 0: whole bytes received.

    def _card_answer(self, frame: list[int], *, short: bool) -> list[int] | None:
        """What the card sends back to ``frame``, moving it through its states."""
        if self.uid is None:
            return None
        uid = list(self.uid)
        bcc = uid[0] ^ uid[1] ^ uid[2] ^ uid[3]
        state = self.card_state
        if state in ("idle", "halt"):
            if short and (frame[0] == WUPA or (frame[0] == REQA and state == "idle")):
                self._woken_from_halt = state == "halt"
                self.card_state = "ready"
                return [0x04, 0x00]  # ATQA: single-size UID, bit-frame anticollision.
            return None  # Everything else is ignored in IDLE and HALT.
        if state == "ready" and frame == [0x93, 0x20]:
            return [*uid, bcc]
        if state == "ready" and frame == _with_crc([0x93, 0x70, *uid, bcc]):
            self.card_state = "active"
            return _with_crc([0x08])  # SAK of a MIFARE Classic 1K.
        if state == "active" and frame == _with_crc([0x50, 0x00]):
            self.card_state = "halt"
            return None  # HLTA is never answered.
        # Any other frame sends a READY or ACTIVE card back without an answer (ISO 14443-3):
        # this is why a card left READY by ANTICOLL ignores the next REQA.
        self.card_state = "halt" if self._woken_from_halt else "idle"
        return None

    def _authenticate(self, fifo: list[int]) -> None:
        """MFAuthent with the factory key; success switches Crypto1 on."""
        if (
            self.card_state == "active"
            and self.uid is not None
            and len(fifo) == 12
            and fifo[2:8] == FACTORY_KEY
            and bytes(fifo[8:12]) == self.uid
        ):
            self._regs[STATUS2] |= MF_CRYPTO1_ON
            self._regs[COMM_IRQ] |= IDLE_IRQ
        else:
            self.card_state = "halt" if self._woken_from_halt else "idle"
            self._regs[COMM_IRQ] |= TIMER_IRQ


class FakeSpiDev:
    """Stands in for ``spidev.SpiDev``; its transfers go to a simulated chip (the one at
    the bus and device opened, when the module has one per chip select)."""

    def __init__(
        self,
        chip: SimulatedMfrc522,
        chips: dict[tuple[int, int], SimulatedMfrc522] | None = None,
    ) -> None:
        self.chip = chip
        self._chips = chips or {}
        self.bus: int | None = None
        self.device: int | None = None
        self.max_speed_hz = 0
        self.mode = 0
        self.closed = False

    def open(self, bus: int, device: int) -> None:
        self.bus, self.device, self.closed = bus, device, False
        self.chip = self._chips.get((bus, device), self.chip)

    def xfer2(self, data: Sequence[int]) -> list[int]:
        if self.bus is None or self.closed:
            raise OSError(9, "Bad file descriptor")  # What spidev does on a closed device.
        return self.chip.xfer2(data)

    def close(self) -> None:
        self.closed = True


class FakeSpidevModule(types.ModuleType):
    """Stands in for the ``spidev`` module: every SpiDev it makes talks to one chip."""

    def __init__(
        self,
        chip: SimulatedMfrc522,
        chips: dict[tuple[int, int], SimulatedMfrc522] | None = None,
    ) -> None:
        super().__init__("spidev")
        self.chip = chip
        self.chips = chips or {}  # (bus, device) -> its own chip; others go to ``chip``
        self.devices: list[FakeSpiDev] = []  # Every SpiDev made, for tests to inspect.

    def SpiDev(self) -> FakeSpiDev:  # noqa: N802 - the name spidev uses.
        device = FakeSpiDev(self.chip, self.chips)
        self.devices.append(device)
        return device


# Header pins that are GPIOs, for BOARD numbering; BCM numbers are 0-27.
_BOARD_GPIO_PINS = {3, 5, 7, 8, 10, 11, 12, 13, 15, 16, 18, 19, 21, 22, 23, 24, 26, 27, 28, 29}
_BOARD_GPIO_PINS |= {31, 32, 33, 35, 36, 37, 38, 40}


class FakeGPIO(types.ModuleType):
    """Stands in for ``RPi.GPIO``: keeps the numbering mode and pins, records ``cleanup()``.

    It raises where RPi.GPIO raises, so misuse (no mode set, a pin that is not a GPIO in the
    current numbering) fails here as it would on a Pi.
    """

    BOARD, BCM = 10, 11
    OUT, IN = 0, 1
    LOW, HIGH = 0, 1
    PUD_OFF, PUD_DOWN, PUD_UP = 20, 21, 22

    def __init__(self) -> None:
        super().__init__("RPi.GPIO")
        self.mode: int | None = None
        self.directions: dict[int, int] = {}  # pin -> OUT or IN
        self.levels: dict[int, int] = {}  # pin -> last level output
        self.cleanups: list[int | None] = []  # One entry per cleanup() call; None = all pins.
        self.warnings = True

    def getmode(self) -> int | None:
        return self.mode

    def setmode(self, mode: int) -> None:
        if self.mode is not None and mode != self.mode:
            raise ValueError("A different mode has already been set!")
        self.mode = mode

    def setwarnings(self, flag: bool) -> None:
        self.warnings = bool(flag)

    def setup(
        self, channel: int, direction: int, pull_up_down: int = 20, initial: int = -1
    ) -> None:
        if self.mode is None:
            raise RuntimeError("Please set pin numbering mode using GPIO.setmode(GPIO.BCM)")
        valid = _BOARD_GPIO_PINS if self.mode == self.BOARD else range(28)
        if channel not in valid:
            raise ValueError("The channel sent is invalid on a Raspberry Pi")
        self.directions[channel] = direction
        if direction == self.OUT and initial != -1:
            self.levels[channel] = int(bool(initial))

    def output(self, channel: int, value: int) -> None:
        if self.directions.get(channel) != self.OUT:
            raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
        self.levels[channel] = int(bool(value))

    def input(self, channel: int) -> int:
        if channel not in self.directions:
            raise RuntimeError("You must setup() the GPIO channel first")
        return self.levels.get(channel, self.LOW)

    def cleanup(self, channel: int | None = None) -> None:
        self.cleanups.append(channel)
        if channel is None:
            self.directions.clear()
            self.levels.clear()
            self.mode = None
        else:
            self.directions.pop(channel, None)
            self.levels.pop(channel, None)


@dataclass
class Fakes:
    """What ``install`` put in place, for tests to inspect."""

    chip: SimulatedMfrc522
    gpio: FakeGPIO
    spidev: FakeSpidevModule


_MISSING = object()


def _pop_library() -> dict[str, object]:
    names = [name for name in sys.modules if name == "mfrc522" or name.startswith("mfrc522.")]
    return {name: sys.modules.pop(name) for name in names}


@contextlib.contextmanager
def install(
    chip: SimulatedMfrc522,
    chips: dict[tuple[int, int], SimulatedMfrc522] | None = None,
) -> Iterator[Fakes]:
    """Makes ``import RPi.GPIO`` and ``import spidev`` give fakes wired to ``chip`` (or, for
    a (bus, device) in ``chips``, to that chip: one reader per chip select).

    The mfrc522 library binds GPIO and spidev when it is imported, so any copy already imported
    is dropped for the duration and imported afresh against the fakes. Everything is put back
    on exit, whether or not the real RPi.GPIO and spidev are installed.
    """
    gpio, spidev = FakeGPIO(), FakeSpidevModule(chip, chips)
    rpi = types.ModuleType("RPi")
    rpi.__path__ = []  # A package, so ``import RPi.GPIO`` looks no further than sys.modules.
    rpi.GPIO = gpio  # type: ignore[attr-defined]
    fakes: dict[str, types.ModuleType] = {"RPi": rpi, "RPi.GPIO": gpio, "spidev": spidev}
    saved = {name: sys.modules.get(name, _MISSING) for name in fakes}
    saved_library = _pop_library()
    sys.modules.update(fakes)
    try:
        yield Fakes(chip, gpio, spidev)
    finally:
        _pop_library()
        for name, module in saved.items():
            if module is _MISSING:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module  # type: ignore[assignment]
        sys.modules.update(saved_library)  # type: ignore[arg-type]
