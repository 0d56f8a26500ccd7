"""Every error the server raises on purpose has the project root and its builtin."""

from __future__ import annotations

import pytest

from protocol.errors import TelecentreError
from server.broker import BrokerError
from server.settings import SettingsError
from server.store import Conflict, NotFound
from server.store.sqlite.writer import WriterClosed


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (NotFound, LookupError),
        (Conflict, ValueError),
        (SettingsError, ValueError),
        (BrokerError, RuntimeError),
        (WriterClosed, RuntimeError),
    ],
)
def test_server_errors_derive_from_the_root_and_a_builtin(
    error: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, TelecentreError)
    assert issubclass(error, builtin)
