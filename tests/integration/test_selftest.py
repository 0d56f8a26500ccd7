"""``telecentre-edge selftest`` as a technician runs it after wiring: against a private
mosquitto with the production config (TLS, accounts, ACL) and the real server, which
publishes its badge key's fingerprint and the centre's signed list; on MockFactory pins
and, for the reader, the real mfrc522 code on the simulated chip.

Every check runs whatever failed before it; a failure names its cause.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from gpiozero.pins.mock import MockFactory

from edge import config as edge_config
from edge.cli import main
from edge.hardware.build import build
from edge.hardware.simchip import SimulatedMfrc522, install
from edge.selftest import SelfTest
from protocol.badges import key_fingerprint
from protocol.signing import Signer
from server.broker import LocalBroker
from tests.conftest import unit_toml, wait_until
from tests.edge.support import CONTACT_PIN, MOTION_PIN, RELAY_PIN

EXIT_PIN = 5
TAMPER_PIN = 6

Make = Callable[..., SelfTest]


def write_config(
    tmp_path: Path,
    broker: LocalBroker,
    key_file: Path,
    server_key: str,
    *,
    reader: str = "fake",
    top: str = "",
    mqtt: Callable[[str], str] = lambda text: text,
) -> Path:
    text = unit_toml(
        broker=broker,
        key_file=key_file,
        data_dir=tmp_path / "unit",
        server_key=server_key,
        reader=reader,
    )
    text = text.replace("[mqtt]", f"tamper_pin = {TAMPER_PIN}\n{top}\n[mqtt]", 1).replace(
        'direction = "toggle"', f'direction = "toggle"\nexit_button_pin = {EXIT_PIN}'
    )
    head, sep, rest = text.partition("[mqtt]")
    path = tmp_path / "unit.toml"
    path.write_text(head + sep + mqtt(rest))
    return path


@pytest.fixture
def make_test(
    tmp_path: Path, broker: LocalBroker, key_file: Path, server_key: str
) -> Iterator[Make]:
    made: list[SelfTest] = []

    def make(*, door_shut: bool = True, synced: bool = True, **options: object) -> SelfTest:
        config_options = {
            k: options.pop(k) for k in ("reader", "top", "mqtt", "key", "signing") if k in options
        }
        conf = write_config(
            tmp_path,
            broker,
            config_options.pop("key", key_file),  # type: ignore[arg-type]
            config_options.pop("signing", server_key),  # type: ignore[arg-type]
            **config_options,  # type: ignore[arg-type]
        )
        cfg = edge_config.load(conf)
        factory = MockFactory()
        errors: dict[str, str] = {}
        hardware = build(cfg, pin_factory=factory, errors=errors)
        if door_shut:
            factory.pin(CONTACT_PIN).drive_low()
        factory.pin(TAMPER_PIN).drive_low()  # the enclosure is shut
        test = SelfTest(
            cfg,
            hardware=hardware,
            hardware_errors=errors,
            synced=lambda: synced,
            prompt=lambda text: None,
            **options,  # type: ignore[arg-type]
        )
        test.factory = factory  # type: ignore[attr-defined]
        made.append(test)
        return test

    yield make
    for test in made:
        test.close()


def table(test: SelfTest) -> dict[str, tuple[str, str]]:
    return {c.name: (c.outcome, c.detail) for c in test.run()}


def wait_for_list(server: TestClient) -> None:
    store = server.app.state.runtime.store  # type: ignore[attr-defined]
    wait_until(lambda: store.list_state("boitron"), what="boitron's list published")


def test_a_unit_wired_right_passes_every_check(
    server: TestClient, make_test: Make, badge_key: bytes
) -> None:
    wait_for_list(server)
    test = make_test()
    checks = table(test)
    assert not test.failed, checks
    assert list(checks) == [
        "config",
        "badge key",
        "server keys",
        "unit tamper switch",
        "door entree card reader",
        "door entree relay",
        "door entree contact",
        "door entree exit button",
        "room visio motion sensor",
        "broker",
        "clock",
    ]
    assert {outcome for outcome, _ in checks.values()} == {"ok"}
    assert (
        checks["badge key"][1] == f"fingerprint {key_fingerprint(badge_key)} matches the server's"
    )
    assert "verify the centre's list" in checks["server keys"][1]
    assert checks["broker"][1].endswith("logged in as boitron-01 over TLS, subscribed")


def test_a_wrong_badge_key_fails_and_every_other_check_still_runs(
    server: TestClient, make_test: Make, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wait_for_list(server)
    other = tmp_path / "other.key"
    other.write_text(secrets.token_hex(32))
    test = make_test(key=other)
    checks = table(test)
    assert test.failed
    outcome, detail = checks["badge key"]
    assert outcome == "FAIL"
    assert "is not the network's key, every card would read as unknown" in detail
    assert [name for name, (o, _) in checks.items() if o == "FAIL"] == ["badge key"]


def test_a_wrong_broker_password_fails_naming_the_settings_to_check(
    server: TestClient, make_test: Make, tmp_path: Path, badge_key: bytes
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not the password")

    def swap(text: str) -> str:
        return "\n".join(
            f'password_file = "{wrong}"' if line.startswith("password_file") else line
            for line in text.splitlines()
        )

    fingerprint = f'badge_key_fingerprint = "{key_fingerprint(badge_key)}"'
    test = make_test(mqtt=swap, top=fingerprint)
    checks = table(test)
    outcome, detail = checks["broker"]
    assert outcome == "FAIL"
    assert "not authorised" in detail and "mqtt.username / mqtt.password_file" in detail
    # Without the broker, the key is still checked against the config's fingerprint.
    assert checks["badge key"] == (
        "ok",
        f"fingerprint {key_fingerprint(badge_key)} matches the config's badge_key_fingerprint",
    )
    assert checks["server keys"][0] == "warn"  # no list to check them against


def test_a_broker_certificate_from_another_ca_fails_naming_the_certificate(
    server: TestClient, make_test: Make, tmp_path: Path
) -> None:
    from server.broker.tls import make_tls

    other_ca = make_tls(tmp_path / "other-ca", ["127.0.0.1"]).ca_cert  # not the broker's CA

    def swap(text: str) -> str:
        return "\n".join(
            f'ca_file = "{other_ca}"' if line.startswith("ca_file") else line
            for line in text.splitlines()
        )

    checks = table(make_test(mqtt=swap))
    outcome, detail = checks["broker"]
    assert outcome == "FAIL" and "certificate did not verify" in detail


def test_a_wrong_server_public_key_fails_against_the_signed_list(
    server: TestClient, make_test: Make
) -> None:
    wait_for_list(server)
    checks = table(make_test(signing=Signer.generate().public_hex))
    outcome, detail = checks["server keys"]
    assert outcome == "FAIL"
    assert "server_public_keys is not the server's" in detail


def test_an_open_door_is_a_warning_not_a_failure(server: TestClient, make_test: Make) -> None:
    test = make_test(door_shut=False)
    checks = table(test)
    assert checks["door entree contact"] == ("warn", f"GPIO {CONTACT_PIN}: the door is open")
    assert not test.failed


def test_an_unsynchronised_clock_fails(server: TestClient, make_test: Make) -> None:
    test = make_test(synced=False)
    assert table(test)["clock"][0] == "FAIL"
    assert test.failed


def test_pulse_clicks_the_relay_once_and_leaves_it_locked(
    server: TestClient, make_test: Make
) -> None:
    test = make_test(pulse=True)
    assert table(test)["door entree relay"][0] == "ok"
    relay = test.factory.pin(RELAY_PIN)  # type: ignore[attr-defined]
    levels = [bool(s.state) for s in relay.states][1:]  # after the pin was set up
    # Active-low board: high is locked. Locked at start, one pulse, locked again.
    assert levels == [True, False, True]


def test_inputs_waits_for_each_one_and_names_the_one_that_did_not_change(
    server: TestClient, make_test: Make
) -> None:
    worked: list[str] = []

    def technician(test: SelfTest) -> Callable[[str], None]:
        pins = test.factory.pin  # type: ignore[attr-defined]

        def act(text: str) -> None:
            worked.append(text)
            if text.startswith("open door entree"):
                pins(CONTACT_PIN).drive_high()
                pins(CONTACT_PIN).drive_low()
            elif text.startswith("press door entree's exit button"):
                pins(EXIT_PIN).drive_low()
                pins(EXIT_PIN).drive_high()
            elif text.startswith("walk in front of room visio"):
                pins(MOTION_PIN).drive_high()
            # The unit's tamper switch: the technician forgot it.

        return act

    test = make_test(inputs=True, input_timeout_s=0.5)
    test.prompt = technician(test)
    checks = table(test)
    assert checks["door entree contact"] == ("ok", f"GPIO {CONTACT_PIN}: opened")
    assert checks["door entree exit button"] == ("ok", f"GPIO {EXIT_PIN}: pressed")
    assert checks["room visio motion sensor"] == ("ok", f"GPIO {MOTION_PIN}: saw motion")
    outcome, detail = checks["unit tamper switch"]
    assert outcome == "FAIL"
    assert detail == f"GPIO {TAMPER_PIN}: did not change within 0.5 s: check its wiring"
    assert len(worked) == 4


def test_a_dead_reader_fails_naming_it_and_the_rest_is_still_checked(
    server: TestClient, make_test: Make
) -> None:
    chip = SimulatedMfrc522()
    chip.responsive = False
    with install(chip):
        checks = table(make_test(reader="mfrc522"))
    outcome, detail = checks["door entree card reader"]
    assert outcome == "FAIL" and "is not answering (VersionReg reads 0x00)" in detail
    assert checks["door entree relay"][0] == "ok" and checks["broker"][0] == "ok"


def test_a_live_reader_tells_its_chip_version(server: TestClient, make_test: Make) -> None:
    with install(SimulatedMfrc522()):
        outcome, detail = table(make_test(reader="mfrc522"))["door entree card reader"]
    assert outcome == "ok" and detail.startswith("MFRC522 v2.0 (VersionReg 0x92)")


def test_the_command_prints_a_table_and_exits_1_on_a_failure(
    server: TestClient,
    tmp_path: Path,
    broker: LocalBroker,
    server_key: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = tmp_path / "other.key"
    other.write_text(secrets.token_hex(32))
    conf = write_config(tmp_path, broker, other, server_key)
    assert main(["selftest", "-c", str(conf)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["check", "result", "detail"]
    rows = {line.split("  ")[0].strip(): line for line in lines[1:-1]}
    assert " FAIL " in rows["badge key"]
    assert " ok " in rows["broker"]
    assert lines[-1].startswith(f"{len(rows)} checks: ")


def test_no_gpio_at_all_fails_one_line_and_the_other_checks_still_run(
    server: TestClient,
    tmp_path: Path,
    broker: LocalBroker,
    key_file: Path,
    server_key: str,
) -> None:
    import importlib.util

    if importlib.util.find_spec("lgpio") is not None:
        pytest.skip("lgpio is installed (a Pi): its GPIO chip would answer")
    conf = write_config(tmp_path, broker, key_file, server_key)
    conf.write_text(conf.read_text().replace('pin_factory = "mock"', 'pin_factory = "lgpio"'))
    test = SelfTest(edge_config.load(conf), synced=lambda: True)  # lgpio: not on this machine
    try:
        checks = table(test)
    finally:
        test.close()
    outcome, detail = checks["GPIO"]
    assert outcome == "FAIL" and "no input or output can be checked" in detail
    assert checks["broker"][0] == "ok" and checks["badge key"][0] == "ok"
    assert not any(name.startswith("door ") for name in checks)
