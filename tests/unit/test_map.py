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


def test_the_map_names_every_folder_and_every_source_and_crm_module():
    """The other way round: a new folder, source kind or CRM module is not left off the map."""
    named = set(re.findall(r"`((?:receiver|docs|tests)/[\w/.-]+)`", (ROOT / "docs" / "map.md").read_text()))
    receiver = ROOT / "receiver"
    folders = sorted({str(path.parent.relative_to(ROOT)) for path in receiver.rglob("*.py")} - {"receiver"})
    unnamed = [folder for folder in folders if not any(path.startswith(folder + "/") for path in named)]
    modules = [str(path.relative_to(ROOT)) for folder in ("sources", "crm") for path in (receiver / folder).glob("*.py")
               if path.name != "__init__.py"]
    unnamed += sorted(module for module in modules if module not in named)
    assert unnamed == []
