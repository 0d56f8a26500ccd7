"""HTTP hardening in front of every route: one pure ASGI middleware.

In order, for each HTTP request:

1. the Host header must name an allowed host (``allowed_hosts`` setting), else 400;
2. a request body is read while it streams in and refused with 413 as soon as it passes
   ``max_body_bytes`` (a declared Content-Length over the limit is refused before reading);
3. a JSON body holding ``NaN``, ``Infinity``, ``-Infinity`` or a number too big for a
   double (``1e400`` parses as infinity in Python) is refused with 422 — Python's json
   module accepts them all, JSON does not;
4. every response, errors included, carries the security headers below.

Refusals use the one error shape ``{"ok": false, "error": "...", "status": n}``. The body
read in step 2 is handed on to the app unchanged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No inline script or style anywhere: the pages load their code from /static.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def security_headers() -> dict[str, str]:
    """The headers as a dict: for the 500 answer, sent outside this middleware by Starlette."""
    return {name.decode(): value.decode() for name, value in SECURITY_HEADERS}


class Refused(Exception):
    """A request the middleware answers itself, in the error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_hosts(raw: str | Iterable[str]) -> frozenset[str]:
    """``"a, b"`` or an iterable of names -> a set of lower-case host names."""
    items = raw.split(",") if isinstance(raw, str) else raw
    return frozenset(h.strip().lower() for h in items if h.strip())


def host_name(value: str) -> str:
    """The host part of a Host header: ``[::1]:8000`` -> ``::1``, ``a:80`` -> ``a``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def check_json(body: bytes) -> None:
    """Refuse non-finite numbers; leave other parse errors to the route (its 422 names them)."""

    def constant(name: str) -> Any:
        raise Refused(422, f"body: {name} is not a JSON number; send a finite number")

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise Refused(422, f"body: the number {text[:40]} is too large; send a finite number")
        return value

    try:
        json.loads(body, parse_constant=constant, parse_float=number)
    except (ValueError, RecursionError):
        return  # not JSON at all: the route says so in its own 422


def is_json(headers: dict[bytes, bytes]) -> bool:
    kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    return kind == b"application/json" or kind.endswith(b"+json")


class HardeningMiddleware:
    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str], max_body_bytes: int) -> None:
        self.app = app
        self.allowed_hosts = parse_hosts(allowed_hosts)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        headers = dict(scope.get("headers") or [])
        try:
            self._check_host(headers)
            receive = await self._read_body(scope, headers, receive)
        except Refused as refused:
            await self._refuse(refused, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _check_host(self, headers: dict[bytes, bytes]) -> None:
        if "*" in self.allowed_hosts:
            return
        host = host_name(headers.get(b"host", b"").decode("latin-1"))
        if host not in self.allowed_hosts:
            raise Refused(400, "invalid host header: this server does not answer to that name")

    async def _read_body(
        self, scope: Scope, headers: dict[bytes, bytes], receive: Receive
    ) -> Receive:
        declared = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if scope["method"] not in BODY_METHODS and not declared and not chunked:
            return receive
        limit = self.max_body_bytes
        too_big = Refused(413, f"request body too large: at most {limit} bytes")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise too_big
            except ValueError:
                raise Refused(400, "invalid Content-Length header") from None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _replay([], message, receive)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:  # counted as it arrives: a lying Content-Length changes nothing
                raise too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and is_json(headers):
            check_json(body)
        return _replay([body], None, receive)

    @staticmethod
    async def _refuse(refused: Refused, send: Send) -> None:
        body = json.dumps(
            {"ok": False, "error": refused.message, "status": refused.status}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": refused.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _replay(bodies: list[bytes], end: Message | None, receive: Receive) -> Receive:
    """A receive that gives the body read already, then defers to the real one."""
    pending = [{"type": "http.request", "body": b, "more_body": False} for b in bodies]
    if end is not None:
        pending.append(end)
    if not pending:
        pending.append({"type": "http.request", "body": b"", "more_body": False})

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def install(app: Any, *, allowed_hosts: str | Iterable[str], max_body_bytes: int) -> None:
    """Put the middleware outermost, so its headers reach every response, errors included."""
    app.add_middleware(
        HardeningMiddleware, allowed_hosts=parse_hosts(allowed_hosts), max_body_bytes=max_body_bytes
    )
