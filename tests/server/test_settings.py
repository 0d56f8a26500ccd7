"""Server settings from TELECENTRE_* variables, and the key/serve commands of the CLI."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import uvicorn

from server import cli
from server.runtime import alarm_thresholds
from server.settings import Settings, SettingsError


def test_from_env_reads_telecentre_variables(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "TELECENTRE_DATA_DIR": str(tmp_path / "data"),
            "TELECENTRE_BADGE_KEY_FILE": str(tmp_path / "k.key"),
            "TELECENTRE_MQTT_HOST": "broker.local",
            "TELECENTRE_MQTT_PORT": "8883",
            "TELECENTRE_MQTT_USERNAME": "server",
            "TELECENTRE_MQTT_PASSWORD_FILE": str(tmp_path / "pw"),
            "TELECENTRE_MAX_STAY_HOURS": "10.5",
            "OTHER_MQTT_PORT": "1",  # not ours
        }
    )
    assert settings.data_dir == tmp_path / "data"
    assert settings.db_path == tmp_path / "data" / "telecentre.db"
    assert settings.badge_key_file == tmp_path / "k.key"
    assert settings.mqtt_host == "broker.local"
    assert settings.mqtt_port == 8883 and type(settings.mqtt_port) is int
    assert settings.mqtt_username == "server"
    assert settings.mqtt_password_file == tmp_path / "pw"
    assert settings.max_stay_hours == 10.5


def test_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELECENTRE_MQTT_PORT", "1999")
    monkeypatch.setenv("TELECENTRE_MQTT_HOST", "from-env")
    settings = Settings.from_env(mqtt_host="explicit", mqtt_username=None)
    assert settings.mqtt_port == 1999  # os.environ by default
    assert settings.mqtt_host == "explicit"  # an explicit value wins over the variable
    assert settings.mqtt_username is None
    assert Settings.from_env({}) == Settings()  # an empty environment: every default


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TELECENTRE_MQTT_PORT", "18a3"),
        ("TELECENTRE_MAX_STAY_HOURS", "ten"),
        ("TELECENTRE_MQTT_PORT", ""),
    ],
)
def test_a_bad_number_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable) as caught:
        Settings.from_env({variable: value})
    assert repr(value) in str(caught.value)


def test_every_setting_is_documented() -> None:
    docs = Settings.documentation()
    assert {name for name, _, _ in docs} == set(Settings.__dataclass_fields__)
    for name, _default, help_text in docs:
        assert help_text.strip(), name


def test_settings_command_lists_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["settings"]) == 0
    out = capsys.readouterr().out
    for name, _, _ in Settings.documentation():
        assert f"TELECENTRE_{name.upper()}" in out


def test_init_key_writes_a_private_hex_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "badge.key"
    assert cli.main(["init-key", str(path)]) == 0
    assert re.fullmatch(r"[0-9a-f]{64}", path.read_text().strip())
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0  # readable by its owner only

    other = tmp_path / "other.key"
    assert cli.main(["init-key", str(other)]) == 0
    assert other.read_text() != path.read_text()  # a fresh random key each time


def test_init_key_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "badge.key"
    path.write_text("a" * 64 + "\n")
    assert cli.main(["init-key", str(path)]) == 1
    assert path.read_text() == "a" * 64 + "\n"  # every enrolled badge still matches
    assert str(path) in capsys.readouterr().err


@pytest.mark.parametrize("content", [None, "not a key\n"])
def test_serve_without_a_usable_key_exits_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
) -> None:
    key = tmp_path / "missing" / "badge.key"
    if content is not None:
        key.parent.mkdir()
        key.write_text(content)
    monkeypatch.setenv("TELECENTRE_BADGE_KEY_FILE", str(key))
    monkeypatch.setenv("TELECENTRE_DATA_DIR", str(tmp_path / "data"))
    started: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(a))

    assert cli.main(["serve", "--port", "1"]) == 2
    assert started == []
    err = capsys.readouterr().err
    assert "badge_key_file" in err and str(key) in err
    assert not (tmp_path / "data").exists()  # nothing was created before the check


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("alarm_offline_after_s", 0.0, "alarm_offline_after_s: must be more than 0"),
        ("alarm_check_interval_s", -1.0, "alarm_check_interval_s: must be more than 0"),
        ("alarm_outbox_pending", -1, "alarm_outbox_pending: must be 0 or more"),
    ],
)
def test_alarm_thresholds_out_of_range_are_named(name: str, value: float, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        alarm_thresholds(Settings(**{name: value}))  # type: ignore[arg-type]
    assert alarm_thresholds(Settings()).outbox_pending == 500
