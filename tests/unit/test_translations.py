"""The French catalog is complete and its compiled .mo matches the .po (``make translations``)."""

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "receiver" / "translations"
METHODS = [("receiver/**.py", "python"), ("receiver/web/templates/**.html", "jinja2")]


def catalog(name: str):
    path = TRANSLATIONS / "fr" / "LC_MESSAGES" / name
    with path.open("rb") as f:
        return read_po(f) if name.endswith(".po") else read_mo(f)


def test_every_string_in_the_code_is_translated_to_french():
    in_code = {message for _, _, message, _, _ in extract_from_dir(
        ROOT, METHODS, keywords={"_": None, "gettext": None, "lazy_gettext": None})}
    po = catalog("messages.po")
    assert in_code  # the extraction found the strings
    missing = sorted(m for m in in_code if not (po.get(m) and po.get(m).string))
    assert missing == [], "run make translations and translate these"


def test_the_compiled_catalog_matches_the_po():
    po, mo = catalog("messages.po"), catalog("messages.mo")
    assert {m.id: m.string for m in po if m.id} == {m.id: m.string for m in mo if m.id}
