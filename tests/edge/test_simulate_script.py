"""``telecentre-edge simulate`` with a script: tap a card at a door, motion in a room, open
the door, press exit, tamper... on the mock pins, fake readers and the simulated chip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import config as edge_config
from edge.cli import main
from edge.simulate import ScriptError, ScriptRunner, parse_script
from protocol.signing import Signer
from server.broker import free_port
from tests.edge.support import FakeTime, unit_toml
from tests.edge.wired import Wired, install_list, wire


@pytest.fixture
def wired(tmp_path: Path, key_file: Path, signer: Signer, fake_time: FakeTime) -> Iterator[Wired]:
    made = Wired(tmp_path, key_file, signer, fake_time)
    yield made
    made.close()


def config_file(tmp_path: Path, key_file: Path, *, reader: str = "fake") -> Path:
    text = wire(
        unit_toml(
            key_file=key_file,
            data_dir=tmp_path / "data",
            server_keys=(Signer.generate().public_hex,),
            port=free_port(),  # nothing listens: the unit works offline
        )
    )
    if reader != "fake":
        text = text.replace('kind = "fake"', f'kind = "{reader}"', 1)
    path = tmp_path / "unit.toml"
    path.write_text(text)
    return path


def test_a_script_plays_a_story_at_the_door(wired: Wired, badge_key: bytes) -> None:
    agent = wired.make()
    install_list(agent, badge_key)
    script = """
    open entree          # forced: nobody badged
    close entree
    # Alice comes in, uses the visio room, leaves by the exit reader
    tap entree 04:A1:B2:C3
    motion visio
    tap-out entree 04a1b2c3
    exit entree          # someone lets themself out
    tamper entree
    tamper-clear entree
    tamper
    tamper-clear
    """
    lines: list[str] = []
    runner = ScriptRunner(agent, parse_script(script, agent.config), out=lines.append)
    agent.start()

    runner.run()

    kinds = [(e.kind, e.door, e.room_state, e.direction) for e in runner.events]
    assert kinds == [
        ("room", None, "free", None),  # the room's state at boot
        ("door_forced", "entree", None, None),
        ("door_closed", "entree", None, None),
        ("access", "entree", None, "in"),
        ("room", None, "occupied", None),
        ("access", "entree", None, "out"),
        ("exit", "entree", None, None),
        ("tamper", "entree", None, None),
        ("tamper_cleared", "entree", None, None),
        ("tamper", None, None, None),
        ("tamper_cleared", None, None, None),
    ]
    assert lines[0].startswith("event #1 room")
    assert "> tap entree 04:A1:B2:C3" in lines
    assert any("access door=entree granted=true reason=granted direction=in" in x for x in lines)


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("tap entree", "line 1: tap takes DOOR UID"),
        ("\n\nknock entree", "line 3: unknown step 'knock'"),
        ("tap cave 04a1b2c3", "line 1: no door 'cave' (doors: entree)"),
        ("motion salon", "line 1: no room 'salon' (rooms: visio)"),
        ("motion visio maybe", "line 1: motion is 'on' or 'off'"),
        ("tap entree zz", "line 1: bad UID 'zz'"),
        ("wait soon", "line 1: wait takes seconds"),
    ],
)
def test_a_bad_script_line_is_named_before_anything_runs(
    tmp_path: Path, key_file: Path, script: str, message: str
) -> None:
    cfg = edge_config.load(config_file(tmp_path, key_file))
    with pytest.raises(ScriptError) as info:
        parse_script(script, cfg)
    assert str(info.value).startswith(message), str(info.value)


def test_a_step_needs_the_device_it_acts_on(tmp_path: Path, key_file: Path) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text(
        unit_toml(key_file=key_file, data_dir=tmp_path / "d", server_keys=("ab" * 32,))
    )
    cfg = edge_config.load(plain)
    for step, missing in [
        ("exit entree", "door 'entree' has no exit button"),
        ("tap-out entree 04a1b2c3", "door 'entree' has no exit reader"),
        ("tamper", "the unit has no tamper switch"),
    ]:
        with pytest.raises(ScriptError, match=missing):
            parse_script(step, cfg)


def test_simulate_runs_steps_from_the_command_line_offline(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, key_file)
    script = tmp_path / "story.txt"
    script.write_text("exit entree\nwait 0\n")

    code = main(
        [
            "simulate",
            "-c",
            str(config),
            "--script",
            str(script),
            "--step",
            "tamper",
            "--drain-s",
            "0",
        ]
    )

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert "> exit entree" in out and "> tamper" in out
    assert "event #2 exit door=entree" in out
    assert (
        out[-1]
        == "done: 3 events recorded, 3 not yet acknowledged by the server (kept in the outbox)"
    )


def test_simulate_taps_through_the_real_library_on_the_simulated_chip(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, key_file, reader="mfrc522")

    code = main(["simulate", "-c", str(config), "--step", "tap entree 04a1b2c3", "--drain-s", "0"])

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    # Not in any list and no server to ask: refused, and reported for enrolment.
    assert "event #2 access door=entree granted=false reason=server_timeout" in out


def test_simulate_says_which_script_line_is_wrong(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, key_file)
    script = tmp_path / "story.txt"
    script.write_text("tap entree 04a1b2c3\nopen cave\n")

    assert main(["simulate", "-c", str(config), "--script", str(script)]) == 2
    err = capsys.readouterr().err
    assert f"script error: {script}: line 2: no door 'cave'" in err
    assert main(["simulate", "-c", str(config), "--step", "wait", "--step", "jump"]) == 2
    assert "script error: --step 1: wait takes SECONDS" in capsys.readouterr().err
    assert main(["simulate", "-c", str(config)]) == 2
    assert "give either --members" in capsys.readouterr().err
