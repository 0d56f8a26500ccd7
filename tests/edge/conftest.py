"""Fixtures of the edge tests: an agent built from a v2 unit config, a test server key."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from edge import config as edge_config
from edge.agent import EdgeAgent
from edge.hardware.build import build
from protocol.signing import Signer
from tests.edge.support import CONTACT_PIN, FakeTime, Published, unit_toml


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "badge.key"
    path.write_text(secrets.token_hex(32))
    return path


@pytest.fixture
def badge_key(key_file: Path) -> bytes:
    return bytes.fromhex(key_file.read_text())


@pytest.fixture
def broker() -> Iterator[Any]:
    from server.broker import LocalBroker

    with LocalBroker() as running:
        yield running


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make_agent(
    tmp_path: Path, key_file: Path, signer: Signer, fake_time: FakeTime
) -> Iterator[Callable[..., EdgeAgent]]:
    """Builds (does not start) an agent on MockFactory pins, trusting ``signer``.

    Calling it again with the same ``data`` name gives an agent on the same outbox file
    (a restart). Its ``link.publish`` is replaced by a recorder, ``agent.published``.
    """
    agents: list[EdgeAgent] = []

    def make(*, data: str = "unit", ttl: int | None = None, **toml: Any) -> EdgeAgent:
        conf = tmp_path / f"{data}-{len(agents)}.toml"
        conf.write_text(
            unit_toml(
                key_file=key_file,
                data_dir=tmp_path / data,
                server_keys=(signer.public_hex,),
                ttl=ttl,
                **toml,
            )
        )
        cfg = edge_config.load(conf)
        factory = MockFactory()
        factory.pin(CONTACT_PIN).drive_low()  # the door is shut
        agent = EdgeAgent(
            cfg,
            build(cfg, pin_factory=factory),
            clock=fake_time.time,
            synced=fake_time.synced,
            monotonic=fake_time.monotonic,
        )
        published = Published()
        agent.link.publish = published  # type: ignore[method-assign]
        agent.published = published  # type: ignore[attr-defined]
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.stop()
