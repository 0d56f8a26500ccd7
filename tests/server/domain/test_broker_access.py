"""The broker's password file and ACL, generated from the registry (pure)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from protocol import topics
from server.domain import broker_access as ba


def test_a_hash_is_mosquitto_passwd_format_and_verifies() -> None:
    h = ba.hash_password("s3cret", salt=b"\x01" * 12)
    prefix, _, iterations, salt, digest = h.split("$")
    assert (prefix, iterations) == ("", "101") and h.startswith("$7$101$")
    assert base64.b64decode(salt) == b"\x01" * 12 and len(base64.b64decode(digest)) == 64
    assert ba.verify_password(h, "s3cret") and not ba.verify_password(h, "other")
    assert ba.hash_password("s3cret") != ba.hash_password("s3cret")  # a new salt each time
    with pytest.raises(ba.BrokerAccessError):
        ba.hash_password("two\nlines")


def test_mosquitto_passwd_and_we_agree(tmp_path: Path) -> None:
    tool = Path("/usr/bin/mosquitto_passwd")
    if not tool.exists():
        pytest.skip("mosquitto_passwd is not installed")
    path = tmp_path / "pw"
    path.touch()
    subprocess.run([str(tool), "-b", str(path), "alice", "s3cret"], check=True)
    ours = path.read_text().strip().split(":", 1)[1]
    assert ba.verify_password(ours, "s3cret")


def test_a_unit_writes_only_its_edge_to_server_leaves_and_reads_only_its_own() -> None:
    grant = ba.unit_grant("boitron-01", "boitron", ba.hash_password("x"))
    assert set(grant.write) == {
        "telecentre/boitron-01/status",
        "telecentre/boitron-01/health",
        "telecentre/boitron-01/event",
        "telecentre/boitron-01/access/request",
        "telecentre/boitron-01/command/result",
    }
    assert set(grant.read) == {
        "telecentre/boitron-01/ack",
        "telecentre/boitron-01/access/response",
        "telecentre/boitron-01/command",
        "telecentre/_centre/boitron/list/head",
        "telecentre/_centre/boitron/list/segment/+",
        "telecentre/_centre/boitron/list/delta",
        "telecentre/_server/status",
    }
    # Every topic a unit subscribes to is readable: the ACL follows the contract.
    for name in [
        *topics.device_subscriptions("boitron-01", "boitron"),
        topics.segment_subscription("boitron"),
    ]:
        assert name in grant.read


def test_the_server_reads_every_units_reports_and_writes_everything_it_sends() -> None:
    grant = ba.server_grant("telecentre-server", ba.hash_password("x"))
    for spec in topics.ALL_TOPICS:
        if spec.direction is topics.Direction.SERVER_TO_EDGE:
            assert topics.acl_filter(spec) in grant.write
        else:
            assert topics.subscription(spec) in grant.read
    assert "telecentre/+/ack" in grant.write and "telecentre/+/event" not in grant.write


def test_the_files_have_one_line_per_account_and_separate_read_and_write_lines() -> None:
    grants = [
        ba.server_grant("telecentre-server", ba.hash_password("a")),
        ba.unit_grant("boitron-01", "boitron", ba.hash_password("b")),
    ]
    passwd = ba.password_file(grants).splitlines()
    assert [line.split(":")[0] for line in passwd] == ["telecentre-server", "boitron-01"]
    acl = ba.acl_file(grants)
    assert "readwrite" not in acl and "pattern" not in acl
    assert "#" not in acl.split("\n", 1)[1]  # no whole-tree wildcard past the header
    unit = acl.split("user boitron-01\n", 1)[1]
    assert "topic write telecentre/boitron-01/event\n" in unit
    assert "topic read telecentre/boitron-01/command\n" in unit
    assert all(
        line.startswith(("topic read ", "topic write ")) for line in unit.split("\n") if line
    )


@pytest.mark.parametrize("bad", ["", "a:b", "a b", "a#", "a+b"])
def test_unsafe_user_names_are_refused(bad: str) -> None:
    with pytest.raises(ba.BrokerAccessError):
        ba.password_file([ba.Grant(bad, ba.hash_password("x"), (), ())])


def test_a_user_listed_twice_or_a_foreign_hash_is_refused() -> None:
    g = ba.server_grant("s", ba.hash_password("x"))
    with pytest.raises(ba.BrokerAccessError):
        ba.password_file([g, g])
    with pytest.raises(ba.BrokerAccessError):
        ba.password_file([ba.Grant("s", "plain", (), ())])
