"""The ``CardReader`` for an MFRC522 module on the Pi's SPI bus, via mfrc522-python.

Only the library's low-level ``MFRC522`` class is used: ``SimpleMFRC522.read()`` blocks until a
card comes, and ``MFRC522.Close()`` calls ``GPIO.cleanup()``, which would also release the door
relay's pin.
"""

from __future__ import annotations

import logging
from typing import Any

from edge.hardware import HardwareError

_log = logging.getLogger(__name__)

_BCM = 11  # RPi.GPIO's value for BCM numbering.
_CASCADE_TAG = 0x88  # First ANTICOLL byte of a card whose UID is longer than 4 bytes.
_LIBRARY_LOGGER = "mfrc522Logger"


_T_MODE = 0x8D  # what the library's Init writes in TModeReg (a reset chip reads 0x00)


class Mfrc522Reader:
    """Polls an MFRC522 for the 4-byte UID of the card in its field (MIFARE Classic, most fobs).

    A held card is reported on every poll; telling a new tap from a held card is the caller's
    job. Cards are never halted: a halted card ignores REQA until it leaves the field, so the
    caller could not see it being held, and SELECT + HLTA would cost two CRCs and two frames
    per read.
    """

    def __init__(
        self,
        *,
        bus: int = 0,
        device: int = 0,
        reset_pin: int = 25,
        spi_speed_hz: int = 1_000_000,
    ) -> None:
        """Opens SPI ``/dev/spidev<bus>.<device>``; ``reset_pin`` is the BCM GPIO wired to RST."""
        self._where = f"MFRC522 on SPI bus {bus} device {device}"
        self._card_last_poll = False
        self._long_uid_last_poll = False
        try:
            # Imported here: off a Pi, RPi.GPIO raises RuntimeError on import.
            import mfrc522
            from RPi import GPIO
        except (ImportError, RuntimeError) as exc:
            raise HardwareError(
                f"cannot use the {self._where}: needs the mfrc522-python package (RPi.GPIO, "
                f"spidev) on a Raspberry Pi with SPI enabled: {exc}"
            ) from exc
        if GPIO.getmode() not in (None, _BCM):
            # The library keeps a numbering mode already set, and would read reset_pin in it.
            raise HardwareError(
                f"cannot use the {self._where}: RPi.GPIO already uses BOARD pin numbering, "
                f"but reset_pin={reset_pin} is a BCM number"
            )
        chip: Any = mfrc522.MFRC522.__new__(mfrc522.MFRC522)
        logger = logging.getLogger(_LIBRARY_LOGGER)
        handlers = list(logger.handlers)
        try:
            # Built in two steps so the SPI device, opened first, can be closed if the GPIO
            # part fails (no /dev/gpiomem access, pin already taken).
            chip.__init__(
                bus=bus, device=device, spd=spi_speed_hz, pin_mode=_BCM, pin_rst=reset_pin
            )
        except (OSError, RuntimeError, ValueError) as exc:
            spi = getattr(chip, "spi", None)
            if spi is not None:
                spi.close()
            raise HardwareError(
                f"cannot open the {self._where} (is SPI enabled, reset_pin={reset_pin} free?): "
                f"{exc}"
            ) from exc
        finally:
            # Each MFRC522() adds a StreamHandler; a reader rebuilt after every HardwareError
            # would otherwise print each library log line once per rebuild.
            if handlers:
                for extra in [h for h in logger.handlers if h not in handlers]:
                    logger.removeHandler(extra)
        self._chip: Any = chip
        try:
            self._check_answering()
        except (HardwareError, OSError) as exc:
            self.close()
            if isinstance(exc, HardwareError):
                raise
            raise HardwareError(f"SPI transfer to the {self._where} failed: {exc}") from exc

    def read_uid(self) -> bytes | None:
        """One poll of the field: the card's 4 UID bytes (no check byte), or None."""
        if self._chip is None:
            raise HardwareError(f"the {self._where} is closed")
        try:
            return self._poll()
        except OSError as exc:
            raise HardwareError(f"SPI transfer to the {self._where} failed: {exc}") from exc

    def describe(self) -> str:
        """What the chip says it is, from its VersionReg (a technician's check)."""
        if self._chip is None:
            raise HardwareError(f"the {self._where} is closed")
        try:
            version = self._chip.ReadReg(self._chip.VersionReg)
        except OSError as exc:
            raise HardwareError(f"SPI transfer to the {self._where} failed: {exc}") from exc
        if version in (0x00, 0xFF):
            raise HardwareError(
                f"{self._where} is not answering (VersionReg reads 0x{version:02X}); "
                "check its wiring and 3.3 V supply"
            )
        known = {0x91: "MFRC522 v1.0", 0x92: "MFRC522 v2.0", 0x88: "FM17522 clone"}
        return f"{known.get(version, 'unknown chip')} (VersionReg 0x{version:02X}), {self._where}"

    def reinit(self) -> None:
        """Reset and configure the chip again (as at start): after a supply dip it comes
        back with its registers at their reset values, antenna off, and reads no card.
        Raises HardwareError while it does not answer."""
        if self._chip is None:
            raise HardwareError(f"the {self._where} is closed")
        try:
            self._chip.Init()
            self._check_answering()
        except OSError as exc:
            raise HardwareError(f"SPI transfer to the {self._where} failed: {exc}") from exc
        self._card_last_poll = False

    def close(self) -> None:
        """Releases the SPI device; the reset pin stays driven high. Safe to call twice."""
        chip, self._chip = self._chip, None
        if chip is not None:
            chip.spi.close()  # Not chip.Close(): see the module docstring.

    def _poll(self) -> bytes | None:
        chip = self._chip
        card_last_poll, self._card_last_poll = self._card_last_poll, False
        if not card_last_poll:
            # Idle polls are the ones that could not tell a dead chip from an empty field. A
            # chip whose MISO reads 0x00 would also keep the library's wait loop spinning for
            # ~2 s, so this read comes first.
            self._check_answering()
        status, _ = chip.Request(chip.PICC_REQIDL)
        if status != chip.MI_OK and card_last_poll:
            # Our last ANTICOLL left the card READY, where REQA is not answered but sends it
            # back to IDLE: ask again, after making sure the chip did not die instead.
            self._check_answering()
            status, _ = chip.Request(chip.PICC_REQIDL)
        if status == chip.MI_OK:
            status, answer = chip.Anticoll()  # Checks the 5th byte, the XOR of the other four.
        if status != chip.MI_OK:
            self._long_uid_last_poll = False
            return None
        self._card_last_poll = True
        uid = bytes(answer[:4])
        if uid[0] != _CASCADE_TAG:
            self._long_uid_last_poll = False
            return uid
        # Only the first 3 bytes of a 7- or 10-byte UID are known here, as the library has no
        # cascade level 2; many cards share them, so they are no credential.
        if not self._long_uid_last_poll:
            _log.warning("%s: ignoring a card with a 7- or 10-byte UID", self._where)
        self._long_uid_last_poll = True
        return None

    def _check_answering(self) -> None:
        """Raises HardwareError if VersionReg reads as a floating or grounded MISO line, or
        if the chip lost the configuration the library's Init wrote (a supply dip resets
        it: antenna off, no card is ever seen, yet SPI answers)."""
        chip = self._chip
        version = chip.ReadReg(chip.VersionReg)
        if version in (0x00, 0xFF):
            raise HardwareError(
                f"{self._where} is not answering (VersionReg reads 0x{version:02X}); "
                "check its wiring and 3.3 V supply"
            )
        if chip.ReadReg(chip.TModeReg) != _T_MODE or chip.ReadReg(chip.TxControlReg) & 3 != 3:
            raise HardwareError(
                f"{self._where} lost its configuration (reset by a supply dip?): reinitialising it"
            )
