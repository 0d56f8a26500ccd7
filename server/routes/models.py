"""Response models: what each route returns, for the OpenAPI schema and its checks.

The store returns dicts; these models document them. They keep every key the store gives
(``extra="allow"``: a column added later is not silently dropped) and leave out a field
the store left out (the ``Public`` serializer writes only the keys that were given), so
putting a model on a route never changes its JSON.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_serializer

T = TypeVar("T")


class Public(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_serializer(mode="wrap")
    def _only_given(self, handler: Any) -> Any:
        data = handler(self)
        keep = self.model_fields_set | set(self.model_extra or {})
        return {k: v for k, v in data.items() if k in keep}


class Page(Public, Generic[T]):
    """One page of a list: ``items`` from ``offset``, at most ``limit``, of ``total``."""

    total: int = Field(ge=0, description="How many match the filter, all pages together.")
    limit: int | None = Field(default=None, ge=1, le=1000)
    offset: int | None = Field(default=None, ge=0)
    items: list[T]


class CentrePublic(Public):
    id: str
    name: str
    commune: str | None = None
    insee: str | None = Field(default=None, description="The commune's INSEE code.")
    address: str | None = None
    lat: float | None = None
    lon: float | None = None
    capacity: int | None = None
    timezone: str = "Europe/Paris"
    hours: list[list[list[int]]] | None = Field(
        default=None,
        description="7 days, Monday first, of [start, end] minutes in local time; "
        "null: open around the clock.",
    )
    created_at: float | None = None
    updated_at: float | None = None


class ClosurePublic(Public):
    id: int
    centre_id: str
    start_date: str
    end_date: str
    reason: str | None = None


class RoomPublic(Public):
    room_id: str
    name: str | None = None
    capacity: int | None = None
    bookable: bool = False
    device_id: str | None = Field(default=None, description="The unit that reports it.")


class DoorPublic(Public):
    centre_id: str
    door_id: str
    name: str
    device_id: str | None = None


class CalendarDay(Public):
    date: str
    open: list[list[int]] = Field(description="[start, end] minutes in local time.")
    closed: str | None = Field(default=None, description="Why closed all day, if it is.")


class PlanPublic(Public):
    id: int
    name: str
    kind: str = Field(description="subscription, day_pass or trial.")
    days: int | None = Field(default=None, description="Day credits of a book or a trial.")
    duration_days: int | None = None
    centres: list[str] | None = Field(default=None, description="null: every centre.")
    hours: str = Field(description="always, opening or window.")
    window: list[list[int]] = []
    price_cents: int | None = None
    active: bool
    created_at: float | None = None


class MemberPlanPublic(Public):
    id: int
    member_id: int
    plan_id: int
    name: str
    kind: str
    valid_from: float | None = None
    valid_until: float | None = None
    centres: list[str] | None = None
    hours: str
    window: list[list[int]] = []
    days: int | None = None
    used: int = Field(description="Day credits used (days counted).")
    days_left: int | None = Field(
        default=None, description="Below zero: days used offline past the book (days over)."
    )
    created_at: float
    ended_at: float | None = None


class DevicePublic(Public):
    device_id: str
    centre_id: str | None = None
    state: str | None = Field(default=None, description="online, offline or null (never heard).")
    first_seen: float | None = None
    last_seen: float | None = None
    software_version: str | None = None
    config_hash: str | None = None
    clock_synced: bool | None = None
    outbox_pending: int | None = None
    faults: list[Any] = []
    doors: list[Any] = []
    lockdown: bool | None = Field(default=None, description="Locked down, as the unit said.")


class BadgePublic(Public):
    id: int
    member_id: int
    badge_hash: str
    label: str | None = None
    enrolled_at: float | None = None
    revoked_at: float | None = None


class MemberPublic(Public):
    id: int
    name: str
    email: str | None = None
    active: bool
    valid_from: float | None = None
    valid_until: float | None = None
    centres: list[str] | None = Field(default=None, description="null: every centre.")
    created_at: float | None = None
    suspended_reason: str | None = None
    suspended_at: float | None = None
    commute_insee: str | None = Field(
        default=None, description="The commune the member would otherwise commute to."
    )
    lockdown_exempt: bool = False
    badges: list[BadgePublic] | None = Field(
        default=None, description="Only on a single member, not in lists."
    )


class UnknownCardPublic(Public):
    badge_hash: str | None = None
    first_seen: float
    last_seen: float
    count: int
    device_id: str | None = None
    door: str | None = None
    centre_id: str | None = None


class EventPublic(Public):
    """An event as stored; fields a kind does not use are left out."""

    id: int
    event_id: str
    device_id: str
    seq: int
    kind: str
    ts: float
    received_at: float | None = None
    centre_id: str | None = None
    clock_synced: bool | None = None
    historical: bool | None = None
    time_suspect: bool | None = None
    door: str | None = None
    granted: bool | None = None
    reason: str | None = None
    direction: str | None = None
    member_id: int | None = None
    room: str | None = None
    room_state: str | None = None


class EventPage(Page[EventPublic]):
    """One page of events, newest first. Follow ``next_cursor`` (``?cursor=``) for the next
    page: as fast at the millionth event as at the first, where ``offset`` gets slower the
    further it goes. ``total`` is exact up to 1,000; past that ``total_exact`` is false and
    ``total`` says only "at least 1,000"."""

    next_cursor: str | None = Field(
        default=None, description="Pass as ?cursor= for the next page; none on the last page."
    )
    total_exact: bool = Field(default=True, description="False when total is only a floor.")


class CommandPublic(Public):
    command_id: str
    device_id: str
    door: str | None = Field(default=None, description="For an unlock; none for a whole unit.")
    action: str
    issued_at: float
    expires_at: float
    requested_by: str | None = None
    reason: str | None = None
    result: str | None = Field(default=None, description="executed or refused; absent until then.")
    result_reason: str | None = None
    answered_at: float | None = None


class UnlockResult(Public):
    ok: bool
    command_id: str
    result: str


class PersonPresent(Public):
    member_id: int
    name: str | None = None
    since: float


class RoomState(Public):
    room_id: str
    name: str | None = None
    state: str = Field(description="occupied, free or unknown (its unit is not online).")
    since: float | None = None


class UnitState(Public):
    device_id: str
    state: str
    last_seen: float | None = None


class CentreOccupancy(Public):
    centre_id: str
    name: str
    present: int
    people: list[PersonPresent]
    rooms: list[RoomState]
    units: list[UnitState]


class Health(Public):
    ok: bool
    workers: list[dict[str, Any]]
    mqtt: dict[str, Any]
    rejected_by_reason: dict[str, Any]
    events: int
    writer: dict[str, Any]


class Ok(Public):
    ok: bool


class OperatorPublic(Public):
    id: int
    login: str
    name: str | None = None
    role: str = Field(description="admin, manager or viewer.")
    centres: list[str] | None = Field(default=None, description="null: every centre.")
    disabled: bool | None = None


class LoginResult(Public):
    ok: bool
    operator: OperatorPublic
    csrf_token: str = Field(description="Send it back in X-CSRF-Token on every write.")


class TokenPublic(Public):
    id: int
    operator_id: int | None = None
    name: str
    created_at: float | None = None
    expires_at: float | None = None
    revoked_at: float | None = None
    token: str | None = Field(default=None, description="Only in the answer that made it.")


class AuditEntryPublic(Public):
    id: int
    at: float
    actor: str | None = None
    action: str
    target_kind: str | None = None
    target_id: str | int | None = None
    centre_id: str | None = None
    address: str | None = None
    before: Any = None
    after: Any = None


class FleetUnit(DevicePublic):
    """A unit's health as the fleet view shows it (``GET /api/fleet``, one unit at
    ``GET /api/devices/{device_id}``)."""

    state_since: float | None = Field(
        default=None, description="When it last went online or offline (server time)."
    )
    reported_centre: str | None = Field(
        default=None, description="The centre its config names (a centre_mismatch if other)."
    )
    access_list_version: int | None = Field(default=None, description="Installed on the unit.")
    access_list_published: int | None = Field(
        default=None, description="Published for its centre; null before the first."
    )
    access_list_current: bool | None = Field(
        default=None, description="Whether the unit holds the published version."
    )
    outbox_oldest_age_s: float | None = Field(
        default=None, description="How long its oldest unacknowledged event has waited."
    )
    open_alarms: list[str] = Field(default=[], description="Kinds of its open alarms.")
    condition: Literal["ok", "degraded"] | None = Field(
        default=None,
        description="From its last heartbeat: degraded while a reader, a worker, its outbox "
        "or its disk is wrong (the reasons are in health.reasons); null before the first.",
    )
    health: dict[str, Any] | None = Field(
        default=None,
        description="Its last heartbeat as sent (docs/protocol.md, Health): uptime, outbox, "
        "list age, CPU temperature, free disk, clock, readers, relays, workers.",
    )
    health_at: float | None = Field(
        default=None, description="When its last live heartbeat arrived (server time)."
    )
    silent: bool = Field(
        default=False,
        description="Online, yet no heartbeat for alarm_silent_after_s: a unit_silent alarm.",
    )


class AlarmPublic(Public):
    id: int
    kind: str = Field(
        description="door_forced, door_held, reader_fault, unit_offline, unit_silent, "
        "clock_unsynced, outbox_filling or centre_mismatch."
    )
    device_id: str
    centre_id: str | None = None
    door: str | None = None
    detail: str | None = None
    opened_at: float
    event_ts: float | None = Field(default=None, description="The unit's time of its event.")
    closed_at: float | None = Field(default=None, description="null while open.")
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    open: bool
    acknowledged: bool
