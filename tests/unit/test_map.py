"""docs/map.md names the modules a newcomer follows: every path it names must exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_path_the_map_names_exists():
    text = (ROOT / "docs" / "map.md").read_text()
    paths = set(re.findall(r"`((?:receiver|docs|tests)/[\w/.-]+)`", text))
    assert len(paths) > 30
    missing = sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists())
    assert missing == []
