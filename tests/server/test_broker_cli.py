"""``telecentre-server tls init`` and ``broker config``: the files a small site needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from server.cli import main


def test_tls_init_makes_a_ca_and_a_server_certificate_for_the_hosts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "tls"
    assert (
        main(["tls", "init", "--dir", str(d), "--host", "broker.local", "--host", "10.0.0.5"]) == 0
    )
    assert "ca.crt" in capsys.readouterr().out
    assert (d / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (d / "server.key").stat().st_mode & 0o777 == 0o600
    ca = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((d / "server.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.local"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    # Never over an existing CA.
    assert main(["tls", "init", "--dir", str(d), "--host", "broker.local"]) == 1
    assert "exists" in capsys.readouterr().err


def test_broker_config_is_the_locked_down_production_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELECENTRE_BROKER_ACL_FILE", str(tmp_path / "acl"))
    assert main(["broker", "config", "--tls-dir", str(tmp_path / "tls")]) == 0
    lines = capsys.readouterr().out.splitlines()
    for expected in (
        "allow_anonymous false",
        f"acl_file {tmp_path / 'acl'}",
        "use_username_as_clientid true",
        "set_tcp_nodelay true",
        "listener 8883 0.0.0.0",
        f"certfile {tmp_path / 'tls' / 'server.crt'}",
        "persistence true",
    ):
        assert expected in lines
    assert "${" not in "\n".join(lines)
    assert not any(line.startswith("listener") and "8883" not in line for line in lines)
