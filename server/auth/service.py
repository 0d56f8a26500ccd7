"""What logging in, changing a password and managing operators and tokens do, for the
routes and the command line alike; every change leaves an audit entry."""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.auth import tokens
from server.auth.errors import BadCredentials, LoginThrottled
from server.auth.passwords import hash_password, verify_password
from server.domain import operators as rules
from server.domain.audit import AuditEvent
from server.domain.operators import Operator
from server.settings import Settings
from server.store import NotFound, Store

DAY_S = 86400


@dataclass(frozen=True)
class NewSession:
    """A session just opened: the secrets go to the browser once, the store keeps hashes."""

    operator: Operator
    session_token: str
    csrf_token: str


def throttled_for(
    store: Store, settings: Settings, login: str, address: str | None, now: float
) -> int:
    """Seconds before ``login`` may be tried again from ``address``; 0 when it may now."""
    window_s = settings.login_window_minutes * 60
    since = now - window_s
    # A success ends the account's streak: only failures after the last one count.
    successes = store.audit_times("login.succeeded", target_id=login, since=since)
    account = store.audit_times("login.failed", target_id=login, since=max([since, *successes]))
    wait = rules.retry_after(account, now, limit=settings.login_max_failures, window_s=window_s)
    if address:
        by_address = store.audit_times("login.failed", address=address, since=since)
        wait = max(
            wait,
            rules.retry_after(
                by_address, now, limit=settings.login_max_failures_per_address, window_s=window_s
            ),
        )
    return wait


def login(
    store: Store, settings: Settings, login: str, password: str, address: str | None, now: float
) -> NewSession:
    """Check a login and open a session; raise LoginThrottled or BadCredentials."""
    login = login.strip().lower()[:100]
    wait = throttled_for(store, settings, login, address, now)
    if wait:
        store.audit(AuditEvent(login, "login.throttled", "operator", login, now, address=address))
        raise LoginThrottled(
            f"trop d'échecs de connexion : réessayez dans {wait} s "
            f"/ too many failed logins: try again in {wait} s",
            wait,
        )
    try:
        operator, password_hash = store.operator_password_hash(login)
    except NotFound:
        operator, password_hash = None, None
    ok = verify_password(password, password_hash)
    if not ok or operator is None or operator.disabled:
        why = "disabled" if ok and operator is not None else "bad login or password"
        store.audit(
            AuditEvent(
                login, "login.failed", "operator", login, now, address=address, after={"why": why}
            )
        )
        raise BadCredentials("identifiant ou mot de passe incorrect / wrong login or password")
    # Lapsed sessions are refused when used; the ones never used again go here.
    store.end_expired_sessions(
        idle_before=now - settings.session_idle_minutes * 60,
        created_before=now - settings.session_max_hours * 3600,
    )
    session_token, csrf_token = tokens.new_secret(), tokens.new_secret()
    store.create_session(
        tokens.digest(session_token), operator.id, tokens.digest(csrf_token), address, now
    )
    store.audit(
        AuditEvent(operator.login, "login.succeeded", "operator", login, now, address=address)
    )
    return NewSession(operator, session_token, csrf_token)


def create_operator(
    store: Store,
    *,
    login: str,
    name: str,
    role: str,
    centres: list[str] | None,
    password: str,
    actor: str,
    address: str | None,
    now: float,
) -> Operator:
    if not re.match(rules.LOGIN_PATTERN, login):
        raise ValueError(
            f"login: lower-case letters, digits, '.', '_', '-' ({rules.LOGIN_PATTERN})"
        )
    if role not in rules.ROLES:
        raise ValueError(f"role: one of {', '.join(rules.ROLES)}")
    if role == "manager":
        if not centres:
            raise ValueError("a manager needs at least one centre (--centre)")
        for centre_id in centres:
            store.centre(centre_id)  # an unknown centre is an error, not a silent grant
    elif centres:
        raise ValueError(f"only managers have centres; an {role} sees every centre")
    rules.validate_password(password)
    operator = store.create_operator(
        login=login,
        name=name,
        role=role,
        centres=centres if role == "manager" else None,
        password_hash=hash_password(password),
        now=now,
    )
    after = operator.public()
    store.audit(
        AuditEvent(actor, "operator.created", "operator", login, now, address=address, after=after)
    )
    return operator


def disable_operator(
    store: Store, login: str, *, actor: str, address: str | None, now: float
) -> Operator:
    """Disable an account: its sessions end, its tokens stop working."""
    before = store.operator_by_login(login)
    operator = store.update_operator(before.id, {"disabled": True}, now)
    store.end_sessions(operator.id)
    store.audit(
        AuditEvent(
            actor,
            "operator.disabled",
            "operator",
            login,
            now,
            address=address,
            before={"disabled": before.disabled},
            after={"disabled": True},
        )
    )
    return operator


def set_password(
    store: Store,
    operator: Operator,
    password: str,
    *,
    actor: str,
    address: str | None,
    now: float,
    keep_session: str | None = None,
) -> None:
    """Replace a password; every other session of the operator ends.

    ``actor`` is the operator themself (a change) or "cli" (a reset by an admin).
    """
    rules.validate_password(password)
    store.update_operator(operator.id, {"password_hash": hash_password(password)}, now)
    store.end_sessions(operator.id, keep=keep_session)
    action = "password.changed" if actor == operator.login else "password.reset"
    # Never the password nor its hash: the entry says that it changed, and when.
    store.audit(AuditEvent(actor, action, "operator", operator.login, now, address=address))


def change_password(
    store: Store,
    operator: Operator,
    current: str,
    new: str,
    *,
    address: str | None,
    now: float,
    keep_session: str | None,
) -> None:
    _, password_hash = store.operator_password_hash(operator.login)
    if not verify_password(current, password_hash):
        store.audit(
            AuditEvent(
                operator.login,
                "login.failed",
                "operator",
                operator.login,
                now,
                address=address,
                after={"why": "wrong current password at a password change"},
            )
        )
        raise BadCredentials("mot de passe actuel incorrect / wrong current password")
    set_password(
        store,
        operator,
        new,
        actor=operator.login,
        address=address,
        now=now,
        keep_session=keep_session,
    )


def create_token(
    store: Store,
    settings: Settings,
    operator: Operator,
    *,
    name: str,
    days: float,
    actor: str,
    address: str | None,
    now: float,
) -> tuple[str, dict]:
    """(the token, shown once; its stored record)."""
    if not 0 < days <= settings.token_max_days:
        raise ValueError(f"days: between 1 and {settings.token_max_days}")
    token = tokens.new_api_token()
    record = store.create_token(operator.id, name, tokens.digest(token), now + days * DAY_S, now)
    store.audit(
        AuditEvent(
            actor,
            "token.created",
            "token",
            str(record["id"]),
            now,
            address=address,
            after={"operator": operator.login, "name": name, "expires_at": record["expires_at"]},
        )
    )
    return token, record


def revoke_token(
    store: Store, token_id: int, *, actor: str, address: str | None, now: float
) -> dict:
    before = store.token(token_id)
    record = store.revoke_token(token_id, now)
    store.audit(
        AuditEvent(
            actor,
            "token.revoked",
            "token",
            str(token_id),
            now,
            address=address,
            before={"revoked_at": before.get("revoked_at")},
            after={"revoked_at": record["revoked_at"]},
        )
    )
    return record
