"""What the running server holds: settings, store, bridge, badge key; and the API's deps."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from protocol.badges import parse_key
from protocol.signing import Signer, SigningKeyError
from protocol.workers import Worker
from server.mqtt.bridge import Bridge
from server.retention import RetentionWorker
from server.settings import Settings, SettingsError
from server.store import Store

FIRST_PURGE_WAIT_S = 10.0


@dataclass
class Runtime:
    settings: Settings
    store: Store
    bridge: Bridge
    badge_key: bytes
    signer: Signer
    # What sessions, tokens, throttling and the audit log read the time from (tests move it).
    clock: Callable[[], float] = field(default=time.time)
    retention: RetentionWorker | None = None  # the scheduled purge (server.retention)

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        key = read_badge_key(settings)
        signer = read_signing_key(settings)
        store = Store(
            settings.db_path,
            max_stay_s=settings.max_stay_hours * 3600,
            late_event_s=settings.late_event_s,
            future_margin_s=settings.future_margin_s,
        )
        retention = RetentionWorker(store, settings)
        bridge = Bridge(settings, store, signer)
        bridge.start()
        retention.start()
        # The API opens on a database within its retention (bounded: a first run after a
        # long stop may take a while, and units are already being served meanwhile).
        retention.tried.wait(FIRST_PURGE_WAIT_S)
        return cls(settings, store, bridge, key, signer, retention=retention)

    def stop(self) -> None:
        if self.retention is not None:
            self.retention.stop()
        self.bridge.stop()
        self.store.close()

    @property
    def workers(self) -> list[Worker]:
        """The runtime's own threads (besides the bridge's and the store's), for /healthz."""
        return [self.retention] if self.retention is not None else []

    def member_erased(self, centre_ids: Iterable[str] | None) -> None:
        """A member was erased: these centres (None: every centre) publish new snapshots,
        so that no stored or retained list names their cards any more."""
        self.bridge.lists.snapshot(centre_ids)

    def access_changed(
        self, centre_ids: Iterable[str] | None, member_ids: Iterable[int] | None = None
    ) -> None:
        """Members or badges changed: these centres' lists follow (None: every centre).

        ``member_ids`` names the members whose badges changed, when only they did: their
        centres' lists are then updated for them alone, not recompiled whole.
        """
        self.bridge.lists.invalidate(centre_ids, member_ids)


def read_badge_key(settings: Settings) -> bytes:
    path = settings.badge_key_file
    try:
        return parse_key(path.read_text())
    except OSError as exc:
        raise SettingsError(
            f"badge_key_file: cannot read {path} ({exc.strerror}); "
            "create one with `telecentre-server init-key`"
        ) from None
    except ValueError as exc:
        raise SettingsError(f"badge_key_file: {path}: {exc}") from None


def read_signing_key(settings: Settings) -> Signer:
    path = settings.signing_key_file
    if not path.exists():
        raise SettingsError(
            f"signing_key_file: {path} does not exist; "
            "create one with `telecentre-server init-signing-key`"
        )
    try:
        return Signer.from_file(path)
    except SigningKeyError as exc:
        raise SettingsError(f"signing_key_file: {exc}") from None


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_store(request: Request) -> Store:
    return request.app.state.runtime.store


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
StoreDep = Annotated[Store, Depends(get_store)]
