"""Server settings: one table of (name, default, help), read from TELECENTRE_* variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from protocol.errors import TelecentreError


class SettingsError(TelecentreError, ValueError):
    """A setting has a value the server cannot use; the message names it."""


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _setting(Path("data"), "Directory of the SQLite database.")
    database_url: str | None = _setting(
        None,
        "A postgresql:// URL: the store on PostgreSQL instead of the SQLite file in data_dir "
        "(needed by several server workers; see docs/performance.md, Scale-out).",
    )
    mqtt_share_group: str | None = _setting(
        None,
        "Several server workers share the units' messages as this MQTT shared subscription "
        "group ($share/<group>/...); needs database_url, and each worker its own broker "
        "account (`worker add`) and mqtt_client_id.",
    )
    badge_key_file: Path = _setting(
        Path("badge.key"), "File with the 64-hex-character badge HMAC key (outside the database)."
    )
    signing_key_file: Path = _setting(
        Path("signing.key"),
        "Ed25519 private key (PEM) that signs every message to the units; outside the database.",
    )
    mqtt_host: str = _setting("127.0.0.1", "MQTT broker host.")
    mqtt_port: int = _setting(8883, "MQTT broker port (the TLS listener).")
    mqtt_username: str | None = _setting(None, "MQTT user name of the server account.")
    mqtt_password_file: Path | None = _setting(None, "File holding the server's MQTT password.")
    mqtt_client_id: str = _setting("telecentre-server", "Fixed client id: keeps the session.")
    mqtt_tls: bool = _setting(True, "Connect to the broker over TLS (false only for tests).")
    mqtt_ca_file: Path | None = _setting(
        None, "CA certificate the broker's certificate is checked against (None: system CAs)."
    )
    ingest_process: bool = _setting(
        True,
        "Receive the units' events, and sign and publish their acks, in a process of "
        "their own, on the broker account "
        "mqtt_username + '.ingest' with the server's password (`broker sync` adds it); "
        "false: in the server's process.",
    )
    broker_password_file: Path = _setting(
        Path("broker/passwd"),
        "mosquitto password_file that `device add` and `device revoke` generate.",
    )
    broker_acl_file: Path = _setting(
        Path("broker/acl"), "mosquitto acl_file that `device add` and `device revoke` generate."
    )
    broker_pid_file: Path | None = _setting(
        Path("/run/mosquitto/mosquitto.pid"),
        "mosquitto's pid file: `device add` and `device revoke` send it SIGHUP to reload.",
    )
    max_stay_hours: float = _setting(14.0, "A member not seen leaving counts as gone after this.")
    late_event_s: float = _setting(
        60.0,
        "An event received this many seconds after its time (synchronised clock) is historical.",
    )
    future_margin_s: float = _setting(
        300.0,
        "An event dated this many seconds ahead of its arrival is flagged time_suspect.",
    )
    max_command_ttl_s: float = _setting(
        30.0, "Longest validity (ttl_s) an unlock command may ask for, in seconds."
    )
    command_wait_s: float = _setting(
        5.0, "How long an unlock request waits for the unit's answer before a 504."
    )
    max_body_bytes: int = _setting(
        1_048_576, "Largest request body accepted, in bytes; a bigger one is refused with 413."
    )
    allowed_hosts: str = _setting(
        "127.0.0.1,localhost,testserver",
        "Comma-separated host names the server answers to (Host header); * allows any.",
    )
    session_idle_minutes: float = _setting(
        30.0, "A login session ends after this many minutes without a request."
    )
    session_max_hours: float = _setting(
        12.0, "A login session ends this many hours after the login, used or not."
    )
    login_max_failures: int = _setting(
        5, "Failed logins of one account within login_window_minutes before a 429."
    )
    login_max_failures_per_address: int = _setting(
        20, "Failed logins from one address within login_window_minutes before a 429."
    )
    login_window_minutes: float = _setting(15.0, "The window failed logins are counted in.")
    token_max_days: int = _setting(365, "Longest validity of a personal API token, in days.")
    alarm_offline_after_s: float = _setting(
        300.0, "A unit offline for this many seconds raises a unit_offline alarm."
    )
    alarm_outbox_pending: int = _setting(
        500, "A unit reporting more events than this waiting in its outbox raises outbox_filling."
    )
    alarm_silent_after_s: float = _setting(
        30.0,
        "An online unit whose heartbeat (health, every 10 s by default) stopped this many "
        "seconds ago raises a unit_silent alarm: a network gone without a word.",
    )
    alarm_check_interval_s: float = _setting(
        5.0, "How often the server looks for units offline or silent past their thresholds."
    )
    # Privacy (docs/security.md, "Personal data"): how long raw data is kept.
    event_retention_days: int = _setting(
        92,
        "Raw access events and unknown cards are deleted after this many whole days "
        "(CNIL: 3 months for access-control logs); daily counts per centre are kept.",
    )
    visit_retention_days: int = _setting(
        3653,
        "Visits and day credits (invoicing records) are deleted after this many days "
        "(10 years: French accounting records, Code de commerce L123-22).",
    )
    retention_interval_minutes: float = _setting(
        60.0, "How often the running server applies the retention."
    )
    impact_kg_co2e_per_km: float = _setting(
        0.2156,
        "Impact report: kg CO2e per car-km (ADEME Base Carbone, average car, 2018 entry).",
    )

    @property
    def db_path(self) -> Path:
        return self.data_dir / "telecentre.db"

    @property
    def store_location(self) -> Path | str:
        """What ``Store`` opens: the PostgreSQL URL when set, else the SQLite file."""
        return self.database_url or self.db_path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then TELECENTRE_<NAME> variables, then explicit overrides."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"TELECENTRE_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def documentation(cls) -> list[tuple[str, Any, str]]:
        return [(f.name, f.default, f.metadata["help"]) for f in fields(cls)]


def _convert(name: str, type_name: Any, raw: str) -> Any:
    kind = str(type_name)
    if kind.startswith("bool"):
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"TELECENTRE_{name.upper()}: expected true or false, got {raw!r}")
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise SettingsError(f"TELECENTRE_{name.upper()}: expected a number, got {raw!r}") from None
    if "Path" in kind:
        return Path(raw)
    return raw
