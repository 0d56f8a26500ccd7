"""Logging in: sessions in cookies with CSRF protection, API tokens, throttling, expiry,
password change, disabled accounts."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from server.auth.deps import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from server.runtime import Runtime
from tests.conftest import TEST_PASSWORD, operator_token


class Clock:
    """A clock the test moves: what sessions, tokens and throttling read."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def runtime(server: TestClient) -> Runtime:
    return server.app.state.runtime  # type: ignore[attr-defined]


@pytest.fixture
def clock(runtime: Runtime) -> Clock:
    clock = Clock()
    runtime.clock = clock
    return clock


@pytest.fixture
def browser(server: TestClient, runtime: Runtime) -> TestClient:
    """A client with no credentials yet, of the operator ``marie`` (a manager of boitron)."""
    operator_token(runtime, "marie", role="manager", centres=["boitron"])
    return TestClient(server.app, raise_server_exceptions=False)


def log_in(client: TestClient, login: str = "marie", password: str = TEST_PASSWORD):
    return client.post("/api/login", json={"login": login, "password": password})


def test_login_sets_a_strict_http_only_cookie_and_a_csrf_token(browser: TestClient) -> None:
    answer = log_in(browser)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["operator"]["login"] == "marie" and body["operator"]["role"] == "manager"
    cookies = answer.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/" in session
    assert "Secure" not in session  # plain HTTP here; Secure when served over HTTPS
    csrf = next(c for c in cookies if c.startswith(CSRF_COOKIE + "="))
    assert "HttpOnly" not in csrf and body["csrf_token"] in csrf
    assert browser.get("/api/me").json()["login"] == "marie"
    assert browser.get("/", follow_redirects=False).status_code == 200


def test_the_session_cookie_is_secure_over_https(server: TestClient, runtime: Runtime) -> None:
    operator_token(runtime, "marie", role="viewer")
    client = TestClient(server.app, base_url="https://testserver")
    answer = log_in(client)
    session = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    assert "Secure" in session


def test_a_cookie_write_without_the_csrf_token_is_refused(browser: TestClient) -> None:
    csrf = log_in(browser).json()["csrf_token"]
    refused = browser.post("/api/members", json={"name": "Alice", "centres": ["boitron"]})
    assert refused.status_code == 403
    assert refused.json() == {
        "ok": False,
        "error": refused.json()["error"],
        "status": 403,
    }
    assert "CSRF" in refused.json()["error"]
    wrong = browser.post(
        "/api/members",
        json={"name": "Alice", "centres": ["boitron"]},
        headers={CSRF_HEADER: "not-the-token"},
    )
    assert wrong.status_code == 403
    accepted = browser.post(
        "/api/members", json={"name": "Alice", "centres": ["boitron"]}, headers={CSRF_HEADER: csrf}
    )
    assert accepted.status_code == 201, accepted.text
    assert browser.get("/api/members").status_code == 200  # reads need no token


def test_api_tokens_need_no_csrf_token_and_stop_when_revoked(
    server: TestClient, runtime: Runtime
) -> None:
    created = server.post("/api/tokens", json={"name": "export", "days": 30})
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("tc_")
    assert all("token" not in t or t.get("token") is None for t in server.get("/api/tokens").json())
    script = TestClient(server.app, headers={"Authorization": f"Bearer {token}"})
    assert script.post("/api/centres", json={"id": "belleme", "name": "Bellême"}).status_code == 201
    assert server.delete(f"/api/tokens/{created.json()['id']}").status_code == 200
    refused = script.get("/api/me")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    stored = runtime.store.token(created.json()["id"])
    assert stored["revoked_at"] is not None and "token_hash" not in stored


def test_an_expired_token_is_refused(server: TestClient, clock: Clock) -> None:
    token = server.post("/api/tokens", json={"name": "short", "days": 1}).json()["token"]
    script = TestClient(server.app, headers={"Authorization": f"Bearer {token}"})
    assert script.get("/api/me").status_code == 200
    clock.advance(86400 + 1)
    assert script.get("/api/me").status_code == 401


def test_anonymous_callers_get_401_json_and_pages_redirect(server: TestClient) -> None:
    anonymous = TestClient(server.app)
    answer = anonymous.get("/api/occupancy")
    assert answer.status_code == 401
    assert answer.json()["ok"] is False and answer.json()["status"] == 401
    page = anonymous.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    login = anonymous.get("/login")
    assert login.status_code == 200 and 'lang="fr"' in login.text and "Se connecter" in login.text
    assert anonymous.get("/healthz").status_code == 200
    garbage = TestClient(server.app, headers={"Authorization": "Bearer tc_nope"})
    assert garbage.get("/api/me").status_code == 401


def test_sessions_end_after_idle_time_and_absolute_time(
    browser: TestClient, runtime: Runtime, clock: Clock
) -> None:
    settings = runtime.settings
    idle_s = settings.session_idle_minutes * 60
    log_in(browser)
    clock.advance(idle_s - 60)
    assert browser.get("/api/me").status_code == 200  # used in time: the idle clock restarts
    clock.advance(idle_s - 60)
    assert browser.get("/api/me").status_code == 200
    clock.advance(idle_s + 1)
    expired = browser.get("/api/me")
    assert expired.status_code == 401 and "expir" in expired.json()["error"]

    log_in(browser)
    absolute_s = settings.session_max_hours * 3600
    steps = int(absolute_s // (idle_s - 60)) + 1
    answers = []
    for _ in range(steps):  # kept busy all along, it still ends
        clock.advance(idle_s - 60)
        answers.append(browser.get("/api/me").status_code)
    assert answers[0] == 200 and answers[-1] == 401


def test_logout_ends_the_session(browser: TestClient) -> None:
    csrf = log_in(browser).json()["csrf_token"]
    cookie = browser.cookies.get(SESSION_COOKIE)
    assert browser.post("/api/logout", headers={CSRF_HEADER: csrf}).status_code == 200
    assert browser.get("/api/me").status_code == 401
    browser.cookies.set(SESSION_COOKIE, cookie)  # a copy kept aside is no use either
    assert browser.get("/api/me").status_code == 401


def test_failed_logins_are_throttled_per_account(browser: TestClient, runtime: Runtime) -> None:
    limit = runtime.settings.login_max_failures
    for _ in range(limit):
        assert log_in(browser, password="wrong password!").status_code == 401
    blocked = log_in(browser)  # even the right password now waits
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    message = blocked.json()["error"]
    assert "réessayez" in message and "try again" in message
    # Another account from the same address is not blocked by this one's failures.
    operator_token(runtime, "paul", role="viewer")
    assert log_in(browser, "paul").status_code == 200


def test_throttling_ends_after_the_window_and_a_success_resets_the_count(
    browser: TestClient, runtime: Runtime, clock: Clock
) -> None:
    limit = runtime.settings.login_max_failures
    for _ in range(limit - 1):
        log_in(browser, password="wrong password!")
    clock.advance(1)
    assert log_in(browser).status_code == 200  # the streak ends here
    clock.advance(1)
    for _ in range(limit - 1):
        log_in(browser, password="wrong password!")
    assert log_in(browser).status_code == 200
    clock.advance(1)
    for _ in range(limit):
        log_in(browser, password="wrong password!")
    assert log_in(browser).status_code == 429
    clock.advance(runtime.settings.login_window_minutes * 60 + 1)
    assert log_in(browser).status_code == 200


def test_failed_logins_are_throttled_per_address(browser: TestClient, runtime: Runtime) -> None:
    runtime.settings = dataclasses.replace(runtime.settings, login_max_failures_per_address=3)
    for n in range(3):
        assert log_in(browser, f"nobody{n}", "whatever password").status_code == 401
    blocked = log_in(browser)  # a real account, from the address that guessed
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers


def test_a_password_change_needs_the_current_one_and_ends_other_sessions(
    browser: TestClient, server: TestClient
) -> None:
    other = TestClient(server.app)
    log_in(other)
    csrf = log_in(browser).json()["csrf_token"]
    wrong = browser.post(
        "/api/password",
        json={"current": "not it at all", "new": "a new long password"},
        headers={CSRF_HEADER: csrf},
    )
    assert wrong.status_code == 401
    short = browser.post(
        "/api/password",
        json={"current": TEST_PASSWORD, "new": "short"},
        headers={CSRF_HEADER: csrf},
    )
    assert short.status_code == 422
    changed = browser.post(
        "/api/password",
        json={"current": TEST_PASSWORD, "new": "a new long password"},
        headers={CSRF_HEADER: csrf},
    )
    assert changed.status_code == 200, changed.text
    assert browser.get("/api/me").status_code == 200  # this session goes on
    assert other.get("/api/me").status_code == 401  # the others end
    assert log_in(TestClient(server.app)).status_code == 401
    assert log_in(TestClient(server.app), password="a new long password").status_code == 200


def test_a_disabled_operator_is_locked_out(
    server: TestClient, runtime: Runtime, login_client: Callable[..., TestClient]
) -> None:
    from server.auth import service

    viewer = login_client("paul", role="viewer")
    browser = TestClient(server.app)
    assert log_in(browser, "paul").status_code == 200
    service.disable_operator(runtime.store, "paul", actor="cli", address=None, now=time.time())
    assert viewer.get("/api/me").status_code == 401  # the token
    assert browser.get("/api/me").status_code == 401  # the session
    assert log_in(TestClient(server.app), "paul").status_code == 401


def test_tokens_of_others_are_not_found_except_for_admins(
    server: TestClient, login_client: Callable[..., TestClient]
) -> None:
    viewer = login_client("paul", role="viewer")
    mine = viewer.post("/api/tokens", json={"name": "mine", "days": 1}).json()["id"]
    admins = server.post("/api/tokens", json={"name": "admin's", "days": 1}).json()["id"]
    assert viewer.delete(f"/api/tokens/{admins}").status_code == 404
    assert [t["id"] for t in viewer.get("/api/tokens").json()].count(mine) == 1
    assert server.delete(f"/api/tokens/{mine}").status_code == 200
    too_long = viewer.post("/api/tokens", json={"name": "forever", "days": 3650})
    assert too_long.status_code == 422


def test_sessions_never_used_again_are_removed_at_a_later_login(
    browser: TestClient, server: TestClient, runtime: Runtime, clock: Clock
) -> None:
    from server.auth.tokens import digest

    log_in(browser)
    forgotten = digest(browser.cookies[SESSION_COOKIE])
    assert runtime.store.session(forgotten) is not None
    clock.advance(runtime.settings.session_idle_minutes * 60 + 1)
    log_in(TestClient(server.app))
    assert runtime.store.session(forgotten) is None
