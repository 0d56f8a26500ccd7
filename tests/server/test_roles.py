"""The role matrix: every route of the app × every kind of caller × an object of centre A
and one of centre B, with the status each must get.

Callers: the admin, a manager of centre A (``boitron``), a viewer, and nobody. A manager
gets 404 for anything of centre B (no existence oracle), a viewer 403 for every write,
nobody 401 (303 to the login page for the live page). A route missing from ``MATRIX``
fails ``test_every_route_is_in_the_matrix``: a new route must be placed here.
"""

from __future__ import annotations

import itertools
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from protocol.messages import Command, Event
from tests.conftest import TEST_PASSWORD

CALLERS = ("admin", "manager", "viewer", "anonymous")
A, B = "boitron", "belleme"


@dataclass
class World:
    """Clients of each caller, and objects of each centre made by the admin."""

    clients: dict[str, TestClient]
    logins: dict[str, str]
    members: dict[str, int] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=itertools.count)
    _plan: int | None = None

    @property
    def admin(self) -> TestClient:
        return self.clients["admin"]

    def new_member(self, centre: str) -> int:
        answer = self.admin.post("/api/members", json={"name": "Zoé Roussel", "centres": [centre]})
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    def new_badge(self, centre: str) -> int:
        member_id = self.new_member(centre)
        answer = self.admin.post(
            f"/api/members/{member_id}/badges", json={"uid": secrets.token_hex(4)}
        )
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    @property
    def plan(self) -> int:
        """A catalogue plan (made once)."""
        if self._plan is None:
            answer = self.admin.post(
                "/api/plans", json={"name": "Abonnement", "kind": "subscription"}
            )
            assert answer.status_code == 201, answer.text
            self._plan = answer.json()["id"]
        return self._plan

    def new_held_plan(self, centre: str) -> int:
        answer = self.admin.post(
            f"/api/members/{self.members[centre]}/plans", json={"plan_id": self.plan}
        )
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    def new_closure(self, centre: str) -> int:
        answer = self.admin.post(
            f"/api/centres/{centre}/closures",
            json={"start_date": "2027-12-24", "end_date": "2027-12-24"},
        )
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    def new_alarm(self, centre: str) -> int:
        """A door_forced alarm of the centre's unit, opened by a real event (a new door each
        time: one alarm per unit, kind and door is open at a time)."""
        store = self.admin.app.state.runtime.store  # type: ignore[attr-defined]
        now = time.time()
        event = Event(
            event_id=str(uuid.uuid4()),
            device_id=unit(centre),
            epoch="f" * 32,
            seq=next(self.counter) + 1,
            kind="door_forced",
            ts=now,
            clock_synced=True,
            door=f"door-{next(self.counter)}",
        )
        store.ingest(unit(centre), [event], now).result(timeout=10)
        _, [alarm] = store.alarms(device_id=unit(centre), kind="door_forced", limit=1)
        assert alarm["door"] == event.door
        return alarm["id"]

    def badge_page(self, centre: str, action: str) -> str:
        """The page path revoking or replacing a new badge of a new member of ``centre``."""
        member_id = self.new_member(centre)
        answer = self.admin.post(
            f"/api/members/{member_id}/badges", json={"uid": secrets.token_hex(4)}
        )
        assert answer.status_code == 201, answer.text
        return f"/members/{member_id}/badges/{answer.json()['id']}/{action}"

    def new_token(self, caller: str) -> int:
        """A token of ``caller`` (the admin's for nobody), to revoke without logging out."""
        client = self.clients[caller if caller != "anonymous" else "admin"]
        answer = client.post("/api/tokens", json={"name": "to revoke", "days": 1})
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]


def unit(centre: str) -> str:
    return f"{centre}-01"


# Each route: how to ask for it about an object of ``centre``, by ``caller``.
Request = tuple[str, str, dict[str, Any] | None]
Maker = Callable[[World, str, str], Request]


def get(path: str) -> Maker:
    return lambda w, centre, caller: ("GET", path.format(centre=centre, unit=unit(centre)), None)


def get_post(path: str) -> Maker:
    return lambda w, centre, caller: ("POST", path, None)


def page(status: int) -> dict[str, tuple[int, int]]:
    """An HTML page of every operator: nobody is sent to the login page (303)."""
    return {caller: (status, status) for caller in CALLERS[:3]} | {"anonymous": (303, 303)}


def page_read() -> dict[str, tuple[int, int]]:
    """A page about one centre's object: a manager of A does not see B's."""
    return read() | {"anonymous": (303, 303)}


def page_write(a: int = 200) -> dict[str, tuple[int, int]]:
    """A page's change to one centre's object (nobody: the login page)."""
    return write(a) | {"anonymous": (303, 303)}


def same(status: int) -> dict[str, tuple[int, int]]:
    return {caller: (status, status) for caller in CALLERS}


def read(a: int = 200) -> dict[str, tuple[int, int]]:
    """A read of one centre's object: a manager of A does not see B's."""
    return {"admin": (a, a), "manager": (a, 404), "viewer": (a, a), "anonymous": (401, 401)}


def read_all() -> dict[str, tuple[int, int]]:
    """A read of a list or of oneself: every operator, nobody else."""
    return {
        "admin": (200, 200),
        "manager": (200, 200),
        "viewer": (200, 200),
        "anonymous": (401, 401),
    }


def write(a: int = 200) -> dict[str, tuple[int, int]]:
    """A change to one centre's object."""
    return {"admin": (a, a), "manager": (a, 404), "viewer": (403, 403), "anonymous": (401, 401)}


def admin_only(status: int = 200) -> dict[str, tuple[int, int]]:
    return {
        "admin": (status, status),
        "manager": (403, 403),
        "viewer": (403, 403),
        "anonymous": (401, 401),
    }


def self_service(status: int = 200) -> dict[str, tuple[int, int]]:
    return {caller: (status, status) for caller in CALLERS[:3]} | {"anonymous": (401, 401)}


MATRIX: dict[tuple[str, str], tuple[Maker, dict[str, tuple[int, int]]]] = {
    # Public: health, the login page and route.
    ("GET", "/healthz"): (get("/healthz"), same(200)),
    ("GET", "/metrics"): (get("/metrics"), same(200)),
    ("GET", "/login"): (get("/login"), same(200)),
    # The login form (the matrix sends no form fields: refused, the form shown again).
    ("POST", "/login"): (get_post("/login"), same(401)),
    ("GET", "/lang/{lang}"): (get("/lang/en?next=/"), same(303)),
    ("POST", "/api/login"): (
        lambda w, c, caller: (
            "POST",
            "/api/login",
            {"login": w.logins.get(caller, "viewer"), "password": TEST_PASSWORD},
        ),
        same(200),
    ),
    # The API's description: operators only, like everything else.
    ("GET", "/openapi.json"): (get("/openapi.json"), read_all()),
    ("GET", "/docs"): (
        get("/docs"),
        {"admin": (200, 200), "manager": (200, 200), "viewer": (200, 200), "anonymous": (303, 303)},
    ),
    # The pages' own scripts and styles and the offline /docs assets (no data in them).
    ("MOUNT", "/static"): (get("/static/app.css"), same(200)),
    # The live page: nobody is sent to the login page.
    ("GET", "/"): (get("/"), page(200)),
    # The pages of one's own session (anonymous: sent to the login page).
    ("POST", "/logout"): (get_post("/logout"), page(303)),
    ("GET", "/password"): (get("/password"), page(200)),
    ("POST", "/password"): (get_post("/password"), page(200)),
    ("GET", "/live/stream"): (get("/live/stream"), read_all()),
    # The events page and its CSV: another centre is not among a manager's choices (422,
    # the same answer as a centre that does not exist).
    **{
        ("GET", path): (
            get(path + "?centre={centre}"),
            page(200) | {"manager": (200, 422)},
        )
        for path in ("/events", "/events.csv")
    },
    ("GET", "/fleet"): (get("/fleet"), page(200)),
    ("POST", "/fleet/alarms/{alarm_id}/ack"): (
        lambda w, c, caller: ("POST", f"/fleet/alarms/{w.new_alarm(c)}/ack", None),
        write() | {"anonymous": (303, 303)},
    ),
    ("GET", "/journal"): (
        get("/journal?centre={centre}"),
        {"admin": (200, 200), "manager": (403, 403), "viewer": (403, 403), "anonymous": (303, 303)},
    ),
    # The Membres, Centres and Rapports pages. A form the matrix sends empty is shown again
    # with what is missing (200); a role refused 403, another centre's object 404, nobody
    # the login page.
    ("GET", "/members"): (get("/members"), page(200)),
    ("POST", "/members"): (get_post("/members"), page_write(200) | {"manager": (200, 200)}),
    **{
        ("GET", "/members/{member_id}" + tail): (
            lambda w, c, caller, tail=tail: ("GET", f"/members/{w.members[c]}{tail}", None),
            page_read(),
        )
        for tail in ("", "/taps")
    },
    ("GET", "/members/{member_id}/export.json"): (
        lambda w, c, caller: ("GET", f"/members/{w.members[c]}/export.json", None),
        admin_only() | {"anonymous": (303, 303)},
    ),
    ("POST", "/members/{member_id}/erase"): (
        lambda w, c, caller: ("POST", f"/members/{w.new_member(c)}/erase", None),
        admin_only() | {"anonymous": (303, 303)},
    ),
    **{
        ("POST", "/members/{member_id}/" + action): (
            lambda w, c, caller, action=action: (
                "POST",
                f"/members/{w.members[c]}/{action}",
                None,
            ),
            page_write(),
        )
        for action in ("edit", "suspend", "reactivate", "plans", "badges")
    },
    ("POST", "/members/{member_id}/plans/{held_id}/end"): (
        lambda w, c, caller: (
            "POST",
            f"/members/{w.members[c]}/plans/{w.new_held_plan(c)}/end",
            None,
        ),
        page_write(),
    ),
    **{
        ("POST", "/members/{member_id}/badges/{badge_id}/" + action): (
            lambda w, c, caller, action=action: ("POST", w.badge_page(c, action), None),
            page_write(),
        )
        for action in ("revoke", "replace")
    },
    ("GET", "/centres"): (get("/centres"), page(200)),
    ("GET", "/centres/{centre_id}"): (get("/centres/{centre}"), page_read()),
    **{
        ("POST", "/centres/{centre_id}/" + action): (
            lambda w, c, caller, action=action: ("POST", f"/centres/{c}/{action}", None),
            page_write(),
        )
        for action in ("edit", "hours", "closures", "rooms", "doors")
    },
    ("POST", "/centres/{centre_id}/closures/{closure_id}/remove"): (
        lambda w, c, caller: ("POST", f"/centres/{c}/closures/{w.new_closure(c)}/remove", None),
        page_write(),
    ),
    **{
        ("POST", "/centres/units/{device_id}/" + action): (
            lambda w, c, caller, action=action: (
                "POST",
                f"/centres/units/{unit(c)}/{action}",
                None,
            ),
            page_write(),
        )
        for action in ("unlock", "lockdown", "release")
    },
    ("GET", "/reports"): (get("/reports?centre={centre}"), page_read()),
    ("GET", "/reports/{table}.csv"): (
        get("/reports/visits.csv?from=2026-01&to=2026-02&centre={centre}"),
        page_read(),
    ),
    # Centres and units.
    ("GET", "/api/centres"): (get("/api/centres"), read_all()),
    ("POST", "/api/centres"): (
        lambda w, c, caller: (
            "POST",
            "/api/centres",
            {"id": f"new-{next(w.counter)}", "name": "N"},
        ),
        admin_only(201),
    ),
    ("GET", "/api/centres/{centre_id}"): (get("/api/centres/{centre}"), read()),
    ("GET", "/api/devices"): (get("/api/devices?centre={centre}"), read()),
    ("GET", "/api/devices/{device_id}"): (get("/api/devices/{unit}"), read()),
    ("PUT", "/api/devices/{device_id}"): (
        lambda w, c, caller: ("PUT", f"/api/devices/{unit(c)}", {"centre_id": c}),
        write(),
    ),
    # The units are not online here: 503 says the request got past every check.
    ("POST", "/api/devices/{device_id}/unlock"): (
        lambda w, c, caller: ("POST", f"/api/devices/{unit(c)}/unlock", {"door": "entree"}),
        write(503),
    ),
    ("POST", "/api/devices/{device_id}/lockdown"): (
        lambda w, c, caller: ("POST", f"/api/devices/{unit(c)}/lockdown", {"reason": "Alerte"}),
        write(503),
    ),
    ("POST", "/api/devices/{device_id}/release"): (
        lambda w, c, caller: ("POST", f"/api/devices/{unit(c)}/release", {}),
        write(503),
    ),
    ("GET", "/api/commands/{command_id}"): (
        lambda w, c, caller: ("GET", f"/api/commands/{w.commands[c]}", None),
        read(),
    ),
    # Members and badges.
    ("GET", "/api/members"): (get("/api/members"), read_all()),
    ("POST", "/api/members"): (
        lambda w, c, caller: ("POST", "/api/members", {"name": "Jules Hébert", "centres": [c]}),
        write(201),
    ),
    ("GET", "/api/members/{member_id}"): (
        lambda w, c, caller: ("GET", f"/api/members/{w.members[c]}", None),
        read(),
    ),
    ("PATCH", "/api/members/{member_id}"): (
        lambda w, c, caller: ("PATCH", f"/api/members/{w.members[c]}", {"email": "z@example.fr"}),
        write(),
    ),
    ("POST", "/api/members/{member_id}/badges"): (
        lambda w, c, caller: (
            "POST",
            f"/api/members/{w.members[c]}/badges",
            {"uid": secrets.token_hex(4)},
        ),
        write(201),
    ),
    ("POST", "/api/badges/{badge_id}/revoke"): (
        lambda w, c, caller: ("POST", f"/api/badges/{w.new_badge(c)}/revoke", None),
        write(),
    ),
    ("GET", "/api/unknown-cards"): (get("/api/unknown-cards?centre={centre}"), read()),
    # Centres' registry entries and calendars.
    ("PATCH", "/api/centres/{centre_id}"): (
        lambda w, c, caller: ("PATCH", f"/api/centres/{c}", {"capacity": 12}),
        write(),
    ),
    ("GET", "/api/centres/{centre_id}/closures"): (get("/api/centres/{centre}/closures"), read()),
    ("POST", "/api/centres/{centre_id}/closures"): (
        lambda w, c, caller: (
            "POST",
            f"/api/centres/{c}/closures",
            {"start_date": "2027-08-09", "end_date": "2027-08-13", "reason": "congés"},
        ),
        write(201),
    ),
    ("DELETE", "/api/centres/{centre_id}/closures/{closure_id}"): (
        lambda w, c, caller: ("DELETE", f"/api/centres/{c}/closures/{w.new_closure(c)}", None),
        write(),
    ),
    ("GET", "/api/centres/{centre_id}/calendar"): (get("/api/centres/{centre}/calendar"), read()),
    ("GET", "/api/centres/{centre_id}/rooms"): (get("/api/centres/{centre}/rooms"), read()),
    ("PUT", "/api/centres/{centre_id}/rooms/{room_id}"): (
        lambda w, c, caller: (
            "PUT",
            f"/api/centres/{c}/rooms/visio",
            {"name": "Visio", "capacity": 6, "bookable": True},
        ),
        write(),
    ),
    ("GET", "/api/centres/{centre_id}/doors"): (get("/api/centres/{centre}/doors"), read()),
    ("PUT", "/api/centres/{centre_id}/doors/{door_id}"): (
        lambda w, c, caller: (
            "PUT",
            f"/api/centres/{c}/doors/entree",
            {"name": "Entrée", "device_id": unit(c)},
        ),
        write(),
    ),
    # Plans.
    ("GET", "/api/plans"): (get("/api/plans"), read_all()),
    ("POST", "/api/plans"): (
        lambda w, c, caller: (
            "POST",
            "/api/plans",
            {"name": f"Carnet {next(w.counter)}", "kind": "day_pass", "days": 10},
        ),
        admin_only(201),
    ),
    ("GET", "/api/plans/{plan_id}"): (
        lambda w, c, caller: ("GET", f"/api/plans/{w.plan}", None),
        read_all(),
    ),
    ("GET", "/api/members/{member_id}/plans"): (
        lambda w, c, caller: ("GET", f"/api/members/{w.members[c]}/plans", None),
        read(),
    ),
    ("POST", "/api/members/{member_id}/plans"): (
        lambda w, c, caller: ("POST", f"/api/members/{w.members[c]}/plans", {"plan_id": w.plan}),
        write(201),
    ),
    ("POST", "/api/members/{member_id}/plans/{held_id}/end"): (
        lambda w, c, caller: (
            "POST",
            f"/api/members/{w.members[c]}/plans/{w.new_held_plan(c)}/end",
            None,
        ),
        write(),
    ),
    ("POST", "/api/members/{member_id}/suspend"): (
        lambda w, c, caller: ("POST", f"/api/members/{w.members[c]}/suspend", {"reason": "impayé"}),
        write(),
    ),
    ("POST", "/api/members/{member_id}/reactivate"): (
        lambda w, c, caller: (
            "POST",
            f"/api/members/{w.members[c]}/reactivate",
            {"reason": "payé"},
        ),
        write(),
    ),
    ("POST", "/api/badges/{badge_id}/replace"): (
        lambda w, c, caller: (
            "POST",
            f"/api/badges/{w.new_badge(c)}/replace",
            {"uid": secrets.token_hex(4)},
        ),
        write(201),
    ),
    # A member's data: exported and erased by admins only (erasure: a fresh member each time).
    ("GET", "/api/members/{member_id}/export"): (
        lambda w, c, caller: ("GET", f"/api/members/{w.members[c]}/export", None),
        admin_only(),
    ),
    ("POST", "/api/members/{member_id}/erase"): (
        lambda w, c, caller: (
            "POST",
            f"/api/members/{(m := w.new_member(c))}/erase",
            {"confirm": m},
        ),
        admin_only(),
    ),
    # Events and occupancy.
    ("GET", "/api/events"): (get("/api/events?centre={centre}"), read()),
    ("GET", "/api/occupancy"): (get("/api/occupancy"), read_all()),
    ("GET", "/api/occupancy/stream"): (get("/api/occupancy/stream"), read_all()),
    # One's own session, password and tokens.
    ("POST", "/api/logout"): (lambda w, c, caller: ("POST", "/api/logout", None), self_service()),
    ("POST", "/api/password"): (
        lambda w, c, caller: (
            "POST",
            "/api/password",
            {"current": TEST_PASSWORD, "new": TEST_PASSWORD},
        ),
        self_service(),
    ),
    ("GET", "/api/me"): (get("/api/me"), self_service()),
    ("GET", "/api/tokens"): (get("/api/tokens"), self_service()),
    ("POST", "/api/tokens"): (
        lambda w, c, caller: ("POST", "/api/tokens", {"name": "script", "days": 1}),
        self_service(201),
    ),
    # "A": one's own token; "B": the admin's (only an admin revokes another's).
    ("DELETE", "/api/tokens/{token_id}"): (
        lambda w, c, caller: (
            "DELETE",
            f"/api/tokens/{w.new_token(caller if c == A else 'admin')}",
            None,
        ),
        {"admin": (200, 200), "manager": (200, 404), "viewer": (200, 404), "anonymous": (401, 401)},
    ),
    # Fleet health and alarms.
    ("GET", "/api/fleet"): (get("/api/fleet?centre={centre}"), read()),
    ("GET", "/api/alarms"): (get("/api/alarms?centre={centre}"), read()),
    ("POST", "/api/alarms/{alarm_id}/ack"): (
        lambda w, c, caller: ("POST", f"/api/alarms/{w.new_alarm(c)}/ack", None),
        write(),
    ),
    # The audit log.
    ("GET", "/api/audit"): (get("/api/audit?centre={centre}"), admin_only()),
    ("GET", "/api/audit.csv"): (get("/api/audit.csv?centre={centre}"), admin_only()),
    # Visits and reports: every operator reads them, a manager only for their centres.
    ("GET", "/api/visits"): (get("/api/visits?centre={centre}"), read()),
    **{
        ("GET", f"/api/reports/{name}"): (
            get(f"/api/reports/{name}?month=2026-03&centre={{centre}}"),
            read(),
        )
        for name in (
            "invoicing",
            "invoicing.csv",
            "departement",
            "departement.csv",
            "impact",
            "impact.csv",
        )
    },
}


def app_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route the app answers, included routers and mounts too."""
    found: set[tuple[str, str]] = set()
    pending = list(app.routes)
    while pending:
        route = pending.pop()
        if hasattr(route, "effective_route_contexts"):  # FastAPI's included router
            pending.extend(c.original_route for c in route.effective_route_contexts())
            continue
        methods = getattr(route, "methods", None)
        if not methods:  # a mount (static files) or a websocket
            found.add(("MOUNT", route.path))
            continue
        found.update((m, route.path) for m in methods if m != "HEAD")
    return found


@pytest.fixture
def world(server: TestClient, login_client: Callable[..., TestClient]) -> World:
    runtime = server.app.state.runtime  # type: ignore[attr-defined]
    assert server.post("/api/centres", json={"id": B, "name": "Bellême"}).status_code == 201
    assert server.put(f"/api/devices/{unit(B)}", json={"centre_id": B}).status_code == 200
    w = World(
        clients={
            "admin": server,
            "manager": login_client("manager-a", role="manager", centres=[A]),
            "viewer": login_client("viewer", role="viewer"),
            "anonymous": login_client(None),
        },
        logins={"admin": "admin", "manager": "manager-a", "viewer": "viewer"},
    )
    for centre in (A, B):
        w.members[centre] = w.new_member(centre)
        now = time.time()
        command = Command(
            command_id=str(uuid.uuid4()),
            device_id=unit(centre),
            action="unlock",
            door="entree",
            issued_at=now,
            expires_at=now + 10,
            requested_by="admin",
        )
        runtime.store.create_command(command)
        w.commands[centre] = command.command_id
    return w


def test_every_route_is_in_the_matrix(server: TestClient) -> None:
    routes = app_routes(server.app)
    assert routes - MATRIX.keys() == set(), "place these routes in MATRIX"
    assert MATRIX.keys() - routes == set(), "these routes no longer exist"


def status_of(client: TestClient, method: str, url: str, body: dict | None) -> int:
    try:
        if url.endswith("/stream"):  # an endless stream: its status is enough
            with client.stream(method, url) as response:
                return response.status_code
        return client.request(method, url, json=body, follow_redirects=False).status_code
    finally:
        client.cookies.clear()  # a login's session cookie must not log in the next call


def test_role_matrix(world: World) -> None:
    wrong = []
    for (method, path), (make, expected) in MATRIX.items():
        for caller in CALLERS:
            for centre, want in zip((A, B), expected[caller], strict=True):
                verb, url, body = make(world, centre, caller)
                got = status_of(world.clients[caller], verb, url, body)
                if got != want:
                    wrong.append(f"{method} {path} as {caller} on {centre}: {got}, expected {want}")
    assert wrong == [], "\n".join(wrong)


def test_a_manager_lists_only_their_centres(world: World) -> None:
    manager = world.clients["manager"]
    centres = manager.get("/api/centres").json()["items"]
    assert [c["id"] for c in centres] == [A]
    assert {d["centre_id"] for d in manager.get("/api/devices").json()["items"]} == {A}
    assert [c["centre_id"] for c in manager.get("/api/occupancy").json()] == [A]
    members = manager.get("/api/members").json()["items"]
    assert {m["id"] for m in members} >= {world.members[A]}
    assert world.members[B] not in {m["id"] for m in members}
    viewer_members = world.clients["viewer"].get("/api/members").json()["items"]
    assert world.members[B] in {m["id"] for m in viewer_members}


def test_members_of_every_centre_are_seen_by_managers_but_changed_by_admins(
    world: World,
) -> None:
    everywhere = world.admin.post("/api/members", json={"name": "Léa Duval"}).json()
    manager = world.clients["manager"]
    assert manager.get(f"/api/members/{everywhere['id']}").status_code == 200
    refused = manager.patch(f"/api/members/{everywhere['id']}", json={"email": "l@example.fr"})
    assert refused.status_code == 403
    assert refused.json()["ok"] is False
    assert manager.post("/api/members", json={"name": "Partout"}).status_code == 403
    both = world.admin.post("/api/members", json={"name": "Deux", "centres": [A, B]}).json()
    assert manager.get(f"/api/members/{both['id']}").status_code == 200
    assert (
        manager.patch(f"/api/members/{both['id']}", json={"email": "d@example.fr"}).status_code
        == 403
    )
    # Moving one's own member to another centre would reach beyond one's centres.
    mine = world.members[A]
    assert manager.patch(f"/api/members/{mine}", json={"centres": [A, B]}).status_code == 404
