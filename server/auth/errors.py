"""What authentication and authorisation refuse, each with its HTTP status."""

from __future__ import annotations

from protocol.errors import TelecentreError


class AuthError(TelecentreError, PermissionError):
    """Root of the refusals below; ``status`` is the HTTP answer."""

    status = 403
    headers: dict[str, str] = {}


class NotAuthenticated(AuthError):
    """No valid session or token: log in first."""

    status = 401
    headers = {"WWW-Authenticate": "Bearer"}


class BadCredentials(NotAuthenticated):
    """Wrong login or password (which one is not said)."""


class Forbidden(AuthError):
    """Logged in, but the role does not allow it."""


class CsrfRefused(Forbidden):
    """A write authenticated by the session cookie without the session's CSRF token."""


class LoginThrottled(AuthError):
    """Too many failed logins for this account or from this address."""

    status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.headers = {"Retry-After": str(retry_after_s)}


class LoginRedirect(AuthError):
    """A page asked for without a login: the browser goes to the login page."""

    status = 303

    def __init__(self, location: str) -> None:
        super().__init__("login required")
        self.headers = {"Location": location}
