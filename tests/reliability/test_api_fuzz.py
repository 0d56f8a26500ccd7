"""The HTTP API of a running server (``telecentre-server serve``, real uvicorn, real SQLite)
fuzzed from its own OpenAPI schema by schemathesis, with an admin's API token: no answer
is a 5xx. (tests/server/test_schemathesis.py checks every answer against the schema on the
in-process app in ``make test``; this one, in ``make soak``, goes through the network to the
process a site runs.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from server.app import create_app
from server.broker import LocalBroker
from server.settings import Settings
from tests.reliability.conftest import UNITS, Cluster
from tests.reliability.harness import FaultBroker

# An endless Server-Sent Events stream.
SKIPPED = "/api/occupancy/stream"
# Documented answers that are not bugs: no unit is online, so a command is 503 or 504.
UNIT_ANSWERS = {
    "/api/devices/{device_id}/unlock": {503, 504},
    "/api/devices/{device_id}/lockdown": {503, 504},
    "/api/devices/{device_id}/release": {503, 504},
}
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi()).exclude(path=SKIPPED)
SEEN: dict[int, int] = {}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    broker: LocalBroker = FaultBroker(units=UNITS)
    broker.start()
    cluster = Cluster(Path(tmp_path_factory.mktemp("api")), broker)  # type: ignore[arg-type]
    cluster.prepare(members={"04a1b2c3": "Alice Martin"})
    cluster.server.start()
    yield cluster
    cluster.close()
    broker.close()
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(SEEN.items()))
    print(f"API fuzz through HTTP: answers by status {statuses}")


@pytest.mark.soak  # ~600 requests through uvicorn: a minute and a half here
@schema.parametrize()
@settings(
    max_examples=10,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_a_server_error(case: Any, served: Cluster) -> None:
    response = case.call(
        base_url=served.server.url, headers={"Authorization": f"Bearer {served.token}"}
    )
    SEEN[response.status_code] = SEEN.get(response.status_code, 0) + 1
    if response.status_code in UNIT_ANSWERS.get(case.path, ()):
        return
    case.validate_response(response, checks=(not_a_server_error,))
