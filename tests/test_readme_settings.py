"""The README's configuration table and `Settings` cannot drift apart: every field is documented and
nothing is documented that is not a field."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from callcontrol.platform.config import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def documented_settings(text: str) -> list[str]:
    """The names in the first column of the table under "## Configuration"."""
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])]


def test_the_readme_table_names_every_setting_and_only_settings() -> None:
    documented = documented_settings(README.read_text(encoding="utf-8"))
    assert len(documented) == len(set(documented)), "a setting is documented twice"
    names = {f.name for f in fields(Settings)}
    assert sorted(names - set(documented)) == [], "settings missing from the README's table"
    assert sorted(set(documented) - names) == [], "README documents settings that do not exist"


def test_the_table_reader_sees_every_row() -> None:
    text = ("# Title\n\n## Configuration\n\n| setting | default |\n| --- | --- |\n| `a_b` | 1 |\n"
            "| `c`, `d` | `x`, `y` |\n\n## Logs\n\n| `e` | 2 |\n")
    assert documented_settings(text) == ["a_b", "c", "d"]
