"""HTTP hardening (issue 6, point 4): body limit, bounds, strict JSON, hosts, headers, docs.

Every refusal answers in the one error shape (``assert_error``) and never with a 500.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.resources import files

import pytest
from fastapi.testclient import TestClient

from server import openapi
from server.http import CSP, host_name
from tests.server.test_api import assert_error

BIG = 2**63
LIMIT = 1_048_576  # Settings.max_body_bytes


def client_like(server: TestClient, **kwargs: object) -> TestClient:
    """Another client of the same running app, logged in the same way as ``server``."""
    return TestClient(server.app, raise_server_exceptions=False, headers=server.headers, **kwargs)  # type: ignore[arg-type]


# -- 1. request body limit -------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_with_413(server: TestClient) -> None:
    body = b'{"name": "' + b"x" * LIMIT + b'"}'
    response = server.post(
        "/api/members", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "large")


def test_the_limit_is_counted_while_streaming_not_from_content_length(server: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        yield b'{"name": "'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}'

    response = server.post(
        "/api/members", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "large")
    assert server.get("/api/members").json()["total"] == 0


def test_a_body_under_the_limit_still_works(server: TestClient) -> None:
    response = server.post("/api/members", json={"name": "Zoé " + "z" * 150})
    assert response.status_code == 201, response.text


# -- 2. bounded parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"/api/members/{BIG}",
        "/api/members/-1",
        "/api/members/0",
        f"/api/members/{BIG * 10**6}",
        "/api/members?limit=0",
        "/api/members?limit=1001",
        f"/api/members?offset={10**9 + 1}",
        "/api/members?offset=-1",
        f"/api/centres?offset={BIG}",
        "/api/devices?limit=100000",
        "/api/devices?centre=Not%20A%20Centre",
        "/api/unknown-cards?limit=0",
        "/api/events?limit=1001",
        f"/api/events?offset={BIG}",
        "/api/events?centre=_centre",
        "/api/events?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
        "/api/events?since=10000-01-01T00:00:00",
        "/api/centres/UPPER",
        "/api/devices/-dash-first",
        "/api/commands/" + "a" * 65,
    ],
)
def test_out_of_bounds_parameters_are_a_422(server: TestClient, path: str) -> None:
    assert_error(client_like(server).get(path), 422)


@pytest.mark.parametrize("method", ["patch", "post"])
def test_huge_ids_in_write_paths_are_a_422(server: TestClient, method: str) -> None:
    client = client_like(server)
    if method == "patch":
        assert_error(client.patch(f"/api/members/{BIG}", json={"name": "x"}), 422, "member_id")
    else:
        assert_error(client.post(f"/api/badges/{BIG}/revoke"), 422, "badge_id")
        assert_error(client.post(f"/api/members/{BIG}/badges", json={"badge_hash": "a" * 64}), 422)


def test_the_largest_id_is_a_plain_404(server: TestClient) -> None:
    assert_error(server.get(f"/api/members/{BIG - 1}"), 404)


def test_paged_lists_say_their_page(server: TestClient) -> None:
    for path in ("/api/centres", "/api/devices", "/api/unknown-cards", "/api/members"):
        body = server.get(path, params={"limit": 1, "offset": 0}).json()
        assert set(body) >= {"total", "limit", "offset", "items"}, path
        assert body["limit"] == 1 and len(body["items"]) <= 1
    assert server.get("/api/centres", params={"offset": 5}).json()["items"] == []


def test_an_ordered_time_range_is_accepted(server: TestClient) -> None:
    response = server.get(
        "/api/events", params={"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}
    )
    assert response.status_code == 200, response.text


def test_an_unknown_centre_in_a_body_is_refused_and_nothing_is_stored(server: TestClient) -> None:
    assert_error(
        server.post("/api/members", json={"name": "Eve", "centres": ["nowhere"]}), 422, "nowhere"
    )
    assert server.get("/api/members").json()["total"] == 0
    created = server.post("/api/members", json={"name": "Eve", "centres": ["boitron"]}).json()
    assert_error(
        server.patch(f"/api/members/{created['id']}", json={"centres": ["boitron", "ailleurs"]}),
        422,
        "ailleurs",
    )
    assert server.get(f"/api/members/{created['id']}").json()["centres"] == ["boitron"]
    assert_error(server.put("/api/devices/x-01", json={"centre_id": "nowhere"}), 404, "nowhere")
    # An id that cannot be a centre at all is refused by its pattern.
    assert_error(server.post("/api/members", json={"name": "Eve", "centres": ["_centre/#"]}), 422)


def test_emails_and_validity_windows_are_checked(server: TestClient) -> None:
    assert_error(server.post("/api/members", json={"name": "A", "email": "not-an-email"}), 422)
    assert_error(server.post("/api/members", json={"name": "A", "email": "a@b@c.org"}), 422)
    assert_error(
        server.post("/api/members", json={"name": "A", "valid_from": 200.0, "valid_until": 100.0}),
        422,
        "valid_until",
    )
    assert_error(server.post("/api/members", json={"name": "A", "valid_from": -1}), 422)
    assert_error(server.post("/api/members", json={"name": "A", "valid_until": 1e300}), 422)
    ok = server.post("/api/members", json={"name": "A", "email": "anne.durand@example.org"})
    assert ok.status_code == 201 and ok.json()["email"] == "anne.durand@example.org"


# -- 3. NaN and Infinity -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ('{"name": "A", "valid_from": NaN}', "NaN"),
        ('{"name": "A", "valid_until": Infinity}', "Infinity"),
        ('{"name": "A", "valid_until": -Infinity}', "Infinity"),
        ('{"name": "A", "valid_until": 1e400}', "1e400"),
    ],
)
def test_non_finite_numbers_are_refused_in_json_bodies(
    server: TestClient, raw: str, word: str
) -> None:
    response = server.post(
        "/api/members", content=raw.encode(), headers={"content-type": "application/json"}
    )
    error = assert_error(response, 422)
    assert word in error
    assert server.get("/api/members").json()["total"] == 0


def test_nan_is_refused_on_every_route_with_a_body(server: TestClient) -> None:
    raw = b'{"door": "entree", "ttl_s": NaN}'
    response = server.post(
        "/api/devices/boitron-01/unlock", content=raw, headers={"content-type": "application/json"}
    )
    assert "NaN" in assert_error(response, 422)


# -- 4. Host header and security headers ----------------------------------------------------------


def test_an_unknown_host_is_refused(server: TestClient) -> None:
    evil = client_like(server, base_url="http://evil.example")
    assert_error(evil.get("/api/centres"), 400, "host")
    assert_error(evil.get("/healthz"), 400, "host")
    assert client_like(server, base_url="http://localhost:8000").get("/healthz").status_code in (
        200,
        503,
    )


def test_host_names_are_compared_without_their_port() -> None:
    assert host_name("LocalHost:8000") == "localhost"
    assert host_name("[::1]:8000") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"


@pytest.mark.parametrize(
    "path", ["/", "/docs", "/openapi.json", "/api/centres", "/api/members/abc", "/nowhere"]
)
def test_every_response_has_the_security_headers(server: TestClient, path: str) -> None:
    headers = client_like(server).get(path).headers
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] in ("no-referrer", "strict-origin")


def test_refusals_by_the_middleware_have_the_headers_too(server: TestClient) -> None:
    headers = client_like(server, base_url="http://evil.example").get("/").headers
    assert headers["content-security-policy"] == CSP


def test_the_page_script_and_style_are_served_as_files(server: TestClient) -> None:
    page = server.get("/")
    assert page.status_code == 200
    assert "<script>" not in page.text and "<style>" not in page.text
    for asset, kind in (("/static/app.js", "javascript"), ("/static/app.css", "text/css")):
        response = server.get(asset)
        assert response.status_code == 200 and kind in response.headers["content-type"]
    for vendored in ("htmx.min.js", "htmx-ext-sse.min.js"):
        assert server.get(f"/static/vendor/{vendored}").status_code == 200
    assert 'sse-connect="/live/stream"' in page.text


# -- 5 and 6. OpenAPI and /docs ----------------------------------------------------------------


def test_docs_are_served_from_the_package_without_any_network(server: TestClient) -> None:
    page = server.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text)
    assert not re.search(r"<script>\S", page.text) and "<style" not in page.text
    for src in re.findall(r"""(?:src|href)="([^"]+)\"""", page.text):
        asset = server.get(src)
        assert asset.status_code == 200, src
        assert len(asset.content) > 100, src
    assert "SwaggerUIBundle" in server.get("/static/docs.js").text
    assert server.get("/redoc").status_code == 404  # nothing left that would use a CDN
    licence = files("server").joinpath("web/static/swagger/LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence


def test_openapi_documents_the_error_shape_for_every_operation(server: TestClient) -> None:
    schema = server.get("/openapi.json").json()
    assert schema["components"]["schemas"]["Error"]["required"] == ["ok", "error", "status"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    ref = {"$ref": "#/components/schemas/Error"}
    operations = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            operations += 1
            responses = operation["responses"]
            errors = {int(code) for code in responses if int(code) >= 400}
            assert 500 in errors, (method, path)
            if operation.get("parameters") or "requestBody" in operation:
                assert 422 in errors, (method, path)
            if "requestBody" in operation:
                assert 413 in errors, (method, path)
            if "{" in path:
                assert 404 in errors, (method, path)
            for code in errors:
                assert responses[str(code)]["content"]["application/json"]["schema"] == ref
            for code, response in responses.items():
                json_body = response.get("content", {}).get("application/json")
                if code.startswith("2") and json_body is not None:  # not SSE or CSV
                    body = json_body["schema"]
                    assert body != {} and (body.get("$ref") or body.get("items")), (method, path)
    assert operations >= 15
    unlock = schema["paths"]["/api/devices/{device_id}/unlock"]["post"]["responses"]
    assert {"409", "503", "504"} <= set(unlock)


def test_the_error_hook_fills_a_route_declared_status() -> None:
    schema = {
        "paths": {
            "/api/login": {
                "post": {"responses": {"200": {"description": "ok"}, "429": {"description": ""}}}
            }
        }
    }
    openapi.document_errors(schema)
    responses = schema["paths"]["/api/login"]["post"]["responses"]
    assert responses["429"]["description"].startswith("Too many")
    assert responses["429"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
