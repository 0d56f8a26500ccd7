"""The server in production: its settings file, nginx in front, its systemd watchdog."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server import envfile
from server.broker.tls import make_tls
from server.settings import Settings, SettingsError
from tests.deploy.support import ROOT, notify_socket

SITE = ROOT / "deploy" / "nginx" / "telecentre.conf"
ENV_EXAMPLE = ROOT / "deploy" / "server.env.example"


def test_an_environment_file_is_read_as_systemd_reads_it() -> None:
    text = """
# comment
; another
TELECENTRE_DATA_DIR=/var/lib/telecentre-server
export TELECENTRE_MQTT_HOST = "broker.example"
TELECENTRE_ALLOWED_HOSTS='a.example,127.0.0.1'
"""
    assert envfile.parse(text) == {
        "TELECENTRE_DATA_DIR": "/var/lib/telecentre-server",
        "TELECENTRE_MQTT_HOST": "broker.example",
        "TELECENTRE_ALLOWED_HOSTS": "a.example,127.0.0.1",
    }
    with pytest.raises(SettingsError, match="line 2: expected NAME=value"):
        envfile.parse("A=1\nnot a setting\n")


def test_variables_already_set_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "server.env"
    path.write_text("TELECENTRE_DATA_DIR=/from/file\nTELECENTRE_MQTT_PORT=8884\n")
    environ = {"TELECENTRE_DATA_DIR": "/from/command/line"}
    envfile.load(path, environ)
    settings = Settings.from_env(environ)
    assert settings.data_dir == Path("/from/command/line") and settings.mqtt_port == 8884
    with pytest.raises(SettingsError, match="cannot read"):
        envfile.load(tmp_path / "missing.env", {})


def test_the_shipped_example_names_only_real_settings_and_loads() -> None:
    values = envfile.parse(ENV_EXAMPLE.read_text())
    known = {f"TELECENTRE_{name.upper()}" for name, _, _ in Settings.documentation()}
    assert set(values) <= known, set(values) - known
    settings = Settings.from_env(values)
    assert settings.db_path == Path("/var/lib/telecentre-server/telecentre.db")
    assert (
        settings.badge_key_file.parent
        == settings.signing_key_file.parent
        == Path("/etc/telecentre/server")
    )
    assert "telecentre.example.org" in settings.allowed_hosts.split(",")


def nginx_prefix(tmp_path: Path) -> Path:
    """The site config inside a minimal nginx.conf, with a test certificate and this
    directory in place of the site's certificate and log paths."""
    tls = make_tls(tmp_path / "tls", ["telecentre.example.org"])
    site = SITE.read_text()
    site = site.replace("/etc/telecentre/tls/web.crt", str(tls.cert))
    site = site.replace("/etc/telecentre/tls/web.key", str(tls.key))
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    directives = [line for line in site.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in directives if "/etc/" in line or "/var/log" in line]
    (tmp_path / "site.conf").write_text(site)
    temp = " ".join(
        f"{kind}_temp_path {tmp_path}/{kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n {temp} uwsgi_temp_path {tmp_path}/uwsgi; scgi_temp_path {tmp_path}/scgi;\n"
        f" include {tmp_path}/site.conf;\n}}\n"
    )
    return tmp_path


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (`make setup` installs nginx-light as root)"
)
def test_the_nginx_site_passes_nginx_t(tmp_path: Path) -> None:
    prefix = nginx_prefix(tmp_path)
    done = subprocess.run(
        [NGINX, "-t", "-e", "stderr", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_the_nginx_site_proxies_to_the_server_unit_and_streams_the_live_page() -> None:
    site = SITE.read_text()
    unit = (ROOT / "systemd" / "telecentre-server.service").read_text()
    assert "--host 127.0.0.1 --port 8000" in unit and "server 127.0.0.1:8000;" in site
    stream = site[site.index("location = /api/occupancy/stream") :]
    assert "proxy_buffering off;" in stream.split("}")[0]
    for header in ("Host $host", "X-Forwarded-For", "X-Forwarded-Proto $scheme"):
        assert f"proxy_set_header {header}" in site
    assert "return 301 https://" in site


def test_the_running_server_tells_systemd_it_is_ready_and_feeds_its_watchdog(
    monkeypatch: pytest.MonkeyPatch,
    broker: object,
    tmp_path: Path,
    key_file: Path,
    signing_key_file: Path,
) -> None:
    from server.app import create_app

    with notify_socket() as systemd:
        monkeypatch.setenv("NOTIFY_SOCKET", str(systemd.path))
        monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a beat every 50 ms
        settings = Settings(
            data_dir=tmp_path / "server",
            badge_key_file=key_file,
            signing_key_file=signing_key_file,
            **broker.server_settings(),  # type: ignore[attr-defined]
        )
        with TestClient(create_app(settings)) as client:
            runtime = client.app.state.runtime  # type: ignore[attr-defined]
            assert systemd.wait_for("READY=1").startswith("READY=1")
            systemd.wait_for("WATCHDOG=1")
            runtime.retention.stop()  # a worker gone: no more pings, and systemd is told
            systemd.wait_for("STATUS=worker(s) dead: retention")
            pings_before = systemd.received.count("WATCHDOG=1")
        systemd.wait_for("STOPPING=1")
        assert systemd.received.count("WATCHDOG=1") == pings_before
