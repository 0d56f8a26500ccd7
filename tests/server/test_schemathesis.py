"""Generated requests from the app's own OpenAPI schema (schemathesis), on the real app.

For every operation, a bounded number of derandomized examples (fast, the same each run):
no 5xx, and every response - its status, content type and body - is one the schema
documents. The requests carry whatever credentials the ``server`` fixture's client
carries (``Authorization: Bearer <token>`` once logins exist), so they reach the routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.app import create_app
from server.settings import Settings

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)
CREDENTIALS = ("authorization", "cookie", "x-csrf-token")
# An endless Server-Sent Events stream: its shape is tested in test_api.
SKIPPED = "/api/occupancy/stream"
# Documented answers that are not bugs: no unit is online in the test, so a command is 503.
UNIT_ANSWERS = {
    "/api/devices/{device_id}/unlock": {503, 504},
    "/api/devices/{device_id}/lockdown": {503, 504},
    "/api/devices/{device_id}/release": {503, 504},
}


class CurrentApp:
    """The ASGI app the generated requests go to: the running app of the current test."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


CURRENT = CurrentApp()
# The schema as the app serves it at /openapi.json; building the app starts nothing.
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi()).exclude(path=SKIPPED)
schema.app = CURRENT


@pytest.fixture
def api_headers(server: TestClient) -> Iterator[dict[str, str]]:
    """The running app for this test, and the credentials its client carries."""
    CURRENT.app = server.app
    yield {k: v for k, v in server.headers.items() if k.lower() in CREDENTIALS}
    CURRENT.app = None


@schema.parametrize()
@settings(
    max_examples=20,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case: Any, api_headers: dict[str, str]) -> None:
    response = case.call(headers=api_headers)
    checks = CHECKS
    if response.status_code in UNIT_ANSWERS.get(case.path, ()):
        checks = tuple(c for c in CHECKS if c is not not_a_server_error)
    case.validate_response(response, checks=checks)
