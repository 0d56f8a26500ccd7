"""The example a technician copies must stay loadable as the config format evolves."""

from pathlib import Path

from edge import config

EXAMPLE = Path(__file__).parents[2] / "firmware-config" / "unit.example.toml"


def test_the_shipped_example_config_loads() -> None:
    cfg = config.load(EXAMPLE)
    assert cfg.device_id == "boitron-01"
    assert [d.id for d in cfg.doors] == ["entree"]
    assert cfg.doors[0].reader.kind == "mfrc522"
    assert cfg.mqtt.tls is True
    assert len(cfg.server_public_keys) == 1
    assert cfg.max_command_ttl_s == 30
