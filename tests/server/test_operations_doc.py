"""docs/operations.md must list every server setting the code has, with its default."""

from pathlib import Path

from server.settings import Settings

DOC = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()


def test_every_setting_is_documented_with_its_default() -> None:
    for name, default, help_text in Settings.documentation():
        row = next(
            (
                line
                for line in DOC.splitlines()
                if line.startswith(f"| `TELECENTRE_{name.upper()}` |")
            ),
            None,
        )
        assert row is not None, f"TELECENTRE_{name.upper()} is missing from operations.md"
        assert f"`{default}`" in row and help_text in row
