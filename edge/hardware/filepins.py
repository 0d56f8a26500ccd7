"""Mock pins whose state lives in files, so that several processes see the same pins.

Test-only. A unit whose config says ``pin_factory = "mock"`` runs on gpiozero's
``MockFactory``, whose pins live in one process's memory. With the environment variable
``TELECENTRE_MOCK_PIN_DIR`` naming a directory, its pins are also written to that directory
(``gpio17`` holds ``output 1``, ``input 0``, ...) each time they change, and a pin opened by
a later process starts from what its file says, as a real GPIO line keeps the level the
last process left it at. This is how the fail-secure test kills an agent while its relay
is energised, then runs ``telecentre-edge relock`` as systemd would and reads the result.
Real pin factories never look at the variable.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

MOCK_PIN_DIR_ENV = "TELECENTRE_MOCK_PIN_DIR"


def mock_pins_from_env(name: str) -> Any:
    """The shared mock pin factory when ``name`` is "mock" and the variable is set."""
    directory = os.environ.get(MOCK_PIN_DIR_ENV)
    if name != "mock" or not directory:
        return None
    return _factory_class()(Path(directory))


def read_pin(directory: Path, number: int) -> tuple[str, float] | None:
    """(function, state) of GPIO ``number`` as last written, or None if never driven."""
    try:
        function, state = (directory / f"gpio{number}").read_text().split()
    except FileNotFoundError:
        return None
    return function, float(state)


def write_pin(directory: Path, number: int, function: str, state: float) -> None:
    """Write a pin's file in one rename: a reader never sees half of it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"gpio{number}"
    tmp = directory / f".gpio{number}.{os.getpid()}"
    tmp.write_text(f"{function} {float(state):g}\n")
    os.replace(tmp, path)


@cache
def _factory_class() -> Any:
    """Built on first use: gpiozero is imported only where pins are made."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    class FilePin(MockPWMPin):
        def __init__(self, factory: Any, info: Any) -> None:
            super().__init__(factory, info)
            self._directory: Path = factory.directory
            saved = read_pin(self._directory, self._number)
            if saved is not None:  # what the last process left on the line
                self._function, self._state = saved[0], saved[1]

        def _save(self) -> None:
            write_pin(self._directory, self._number, self._function, float(self._state))

        def _set_function(self, value: str) -> None:
            super()._set_function(value)
            self._save()

        def _change_state(self, value: Any) -> bool:
            changed = super()._change_state(value)
            self._save()
            return changed

    class FileMockFactory(MockFactory):
        def __init__(self, directory: Path) -> None:
            self.directory = directory
            super().__init__(pin_class=FilePin)

    return FileMockFactory
