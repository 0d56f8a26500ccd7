"""What the running server holds: settings, store, bridge, badge key; and the API's deps."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from protocol.badges import key_fingerprint, parse_key
from protocol.sdnotify import WatchdogWorker, feed_from_thread
from protocol.signing import Signer, SigningKeyError
from protocol.workers import Worker
from server.domain.alarms import Thresholds
from server.metrics import ServerMetrics
from server.mqtt.bridge import Bridge
from server.retention import RetentionWorker
from server.settings import Settings, SettingsError
from server.store import Store
from server.store.postgres.leader import Leadership

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
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    alarm_watch: AlarmWatch | None = None
    retention: RetentionWorker | None = None  # the scheduled purge (server.retention)
    watchdog: WatchdogWorker | None = None  # systemd's, fed while every worker lives

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        key = read_badge_key(settings)
        signer = read_signing_key(settings)
        store = Store(
            settings.store_location,
            max_stay_s=settings.max_stay_hours * 3600,
            late_event_s=settings.late_event_s,
            future_margin_s=settings.future_margin_s,
            alarm_thresholds=alarm_thresholds(settings),
        )
        metrics = ServerMetrics()
        retention = RetentionWorker(store, settings)
        leadership = None
        if settings.mqtt_share_group:
            if store.engine != "postgresql":
                store.close()
                raise SettingsError(
                    "mqtt_share_group: the workers of a group share one database: set "
                    "database_url to a postgresql:// URL"
                )
            leadership = Leadership(settings.database_url or "")
        bridge = Bridge(
            settings,
            store,
            signer,
            metrics=metrics,
            badge_key_fp=key_fingerprint(key),
            leadership=leadership,
        )
        watch = AlarmWatch(
            store,
            settings.alarm_check_interval_s,
            listening_since=lambda: bridge.connected_at if bridge.connected.is_set() else None,
        )
        metrics.watch(
            rejected=bridge.rejections.snapshot,
            units=store.units_by_state,
            alarms_open=store.open_alarm_counts,
        )
        store.observe_commits(metrics.batch_committed)
        bridge.start()
        watch.worker.start()
        retention.start()
        # The API opens on a database within its retention (bounded: a first run after a
        # long stop may take a while, and units are already being served meanwhile).
        retention.tried.wait(FIRST_PURGE_WAIT_S)
        runtime = cls(
            settings,
            store,
            bridge,
            key,
            signer,
            metrics=metrics,
            alarm_watch=watch,
            retention=retention,
        )
        runtime.watchdog = feed_from_thread(
            lambda: [*runtime.bridge.workers, *runtime.store.workers, *runtime.workers]
        )
        return runtime

    def stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.retention is not None:
            self.retention.stop()
        if self.alarm_watch is not None:
            self.alarm_watch.worker.stop()
        self.bridge.stop()
        self.store.close()

    @property
    def workers(self) -> list[Worker]:
        """The runtime's own threads (besides the bridge's and the store's), for /healthz."""
        found: list[Worker] = []
        if self.alarm_watch is not None:
            found.append(self.alarm_watch.worker)
        if self.retention is not None:
            found.append(self.retention)
        return found

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


def alarm_thresholds(settings: Settings) -> Thresholds:
    for name in ("alarm_offline_after_s", "alarm_silent_after_s", "alarm_check_interval_s"):
        if not getattr(settings, name) > 0:
            raise SettingsError(f"{name}: must be more than 0, got {getattr(settings, name)!r}")
    if settings.alarm_outbox_pending < 0:
        raise SettingsError(
            f"alarm_outbox_pending: must be 0 or more, got {settings.alarm_outbox_pending!r}"
        )
    return Thresholds(
        offline_after_s=settings.alarm_offline_after_s,
        silent_after_s=settings.alarm_silent_after_s,
        outbox_pending=settings.alarm_outbox_pending,
    )


class AlarmWatch:
    """Opens ``unit_offline`` and ``unit_silent`` alarms: a worker looks every
    ``interval_s`` for units offline, or online but without a heartbeat, past the
    thresholds (a unit's silence sends no message to react to).

    A heartbeat can only be missed while the server listens: ``listening_since`` tells since
    when it has been connected to the broker (None: it is not), and no unit is called
    silent before the server has listened for ``silent_after_s`` (a restarted server would
    otherwise find every unit's last heartbeat old).
    """

    def __init__(
        self,
        store: Store,
        interval_s: float,
        clock: Callable[[], float] = time.time,
        listening_since: Callable[[], float | None] = lambda: 0.0,
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self.clock = clock
        self.listening_since = listening_since
        self.worker = Worker("alarm-watch", self._step)

    def check(self, now: float | None = None) -> int:
        """Look now; how many alarms opened."""
        now = self.clock() if now is None else now
        since = self.listening_since()
        heard_long_enough = (
            since is not None and now - since >= self.store.alarm_thresholds.silent_after_s
        )
        return self.store.open_offline_alarms(now, silent=heard_long_enough)

    def _step(self) -> None:
        self.check()
        self.worker.stopping.wait(self.interval_s)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_store(request: Request) -> Store:
    return request.app.state.runtime.store


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
StoreDep = Annotated[Store, Depends(get_store)]
