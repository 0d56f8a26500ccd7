"""The pure rules of roles, centre scopes, session expiry and login throttling."""

from __future__ import annotations

import pytest

from server.domain.audit import AuditEvent, changed
from server.domain.operators import (
    CentreScope,
    Operator,
    SessionTimes,
    retry_after,
    session_alive,
    validate_password,
)


def test_scopes_by_role() -> None:
    manager = Operator(1, "m", "M", "manager", ("boitron",))
    assert manager.scope.sees("boitron") and not manager.scope.sees("belleme")
    assert not manager.scope.sees(None)  # an unassigned unit belongs to no manager
    for role in ("admin", "viewer"):
        assert Operator(2, "x", "X", role, None).scope.sees("belleme")
    assert manager.can_write and not Operator(3, "v", "V", "viewer", None).can_write


def test_members_every_centre_visible_to_managers_changed_by_admins_only() -> None:
    scope = CentreScope(frozenset({"boitron"}))
    assert scope.sees_member(None) and not scope.changes_member(None)
    assert scope.sees_member(["boitron", "belleme"])
    assert not scope.changes_member(["boitron", "belleme"])
    assert scope.changes_member(["boitron"])
    assert not scope.sees_member(["belleme"])
    assert CentreScope(None).changes_member(None)


def test_session_idle_and_absolute_expiry() -> None:
    times = SessionTimes(created_at=0, last_seen=1000)
    assert session_alive(times, 1000 + 599, idle_s=600, absolute_s=3600)
    assert not session_alive(times, 1000 + 600, idle_s=600, absolute_s=3600)
    assert not session_alive(SessionTimes(0, 3599), 3600, idle_s=600, absolute_s=3600)


def test_retry_after_counts_failures_within_the_window() -> None:
    assert retry_after([100, 200, 300, 400], 500, limit=5, window_s=900) == 0
    assert retry_after([100, 200, 300, 400, 500], 500, limit=5, window_s=900) == 500
    assert retry_after([100, 200, 300, 400, 500], 1001, limit=5, window_s=900) == 0


def test_passwords_have_a_minimum_length() -> None:
    with pytest.raises(ValueError, match="at least"):
        validate_password("short")
    assert validate_password("long enough!") == "long enough!"


def test_audit_events_name_known_actions_and_keep_only_changes() -> None:
    with pytest.raises(ValueError):
        AuditEvent("admin", "member.deleted_silently", "member", "1", 0.0)
    assert changed({"a": 1, "b": 2}, {"a": 1, "b": 3}) == ({"b": 2}, {"b": 3})
