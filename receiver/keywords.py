"""SMS keyword classification: is an inbound text an opt-out, an opt-in, a help request or other?

The rule (documented only here; sources in docs/inbound-formats.md §1–2):

1. ``normalize``: Unicode NFKC, accents stripped (ARRÊT = arret), casefold, whitespace and
   hyphens collapsed to one space (OPT-OUT = opt out), then trailing ``.,!?;:``, emoji and
   other symbols, and quotes at either end, stripped until none is left ("STOP!!" = stop).
   Words are the runs of letters and digits in that text, apostrophes dropped (don't = dont).
2. First rule that applies wins:

   a. whole message equals an ``OPT_OUT_WORDS`` entry or a configured extra (normalized the
      same way) → opt-out;
   b. whole message equals an ``OPT_IN_WORDS`` / ``HELP_WORDS`` entry → opt-in / help
      (exact only: lifting a restriction must be unambiguous, so "yes please" is other);
   c. at most 5 words, led by a ``LEADING_OPT_OUT_WORDS`` entry ("Stop. Thank you",
      "unsubscribe me") → opt-out; the FCC's "reasonable person" test says err toward honouring.
      cancel, end and quit are whole-message only: guests text "cancel my booking";
   d. at most 12 words containing a ``REVOCATION_PHRASES`` entry ("no more texts") → opt-out;
   e. any other message containing an opt-out word, extra or revocation phrase → other with
      ``review`` set, for operators to judge ("stop by the pool at 5"); the rest → other.

``keyword`` names what matched: the normalized word, or the phrase as written in the table.
"""

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Intent(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    OTHER = "other"


@dataclass(frozen=True)
class Classification:
    intent: Intent
    keyword: str | None
    review: bool


# FCC per se keywords, Twilio's defaults (REVOKE/OPTOUT since May 2025), CTIA, Canada's
# CWTA (arret) and Twilio Proxy's French variants, US Spanish short codes (alto).
# "remove" is left out on purpose: only AWS lists it, and guests write "remove the late fee".
OPT_OUT_WORDS = frozenset({
    "stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "revoke",
    "optout", "opt out", "arret", "arrete", "arrett", "alto",
})
# The opt-out words that mean nothing else to a hotel guest when they open a short text.
LEADING_OPT_OUT_WORDS = frozenset({
    "stop", "stopall", "unsubscribe", "optout", "opt out", "revoke", "arret",
})
OPT_IN_WORDS = frozenset({"start", "unstop", "yes"})
HELP_WORDS = frozenset({"help", "info", "aide", "ayuda"})
REVOCATION_PHRASES = frozenset({
    "please stop texting me", "stop texting me", "stop messaging me", "stop sending me texts",
    "stop sending me messages", "stop contacting me", "no more texts", "no more messages",
    "don't text me", "do not text me", "don't message me", "do not message me",
    "don't contact me", "do not contact me", "take me off your list", "take me off the list",
    "remove me from your list", "remove me from the list", "remove me from this list",
    "i want to opt out", "i want to unsubscribe", "please unsubscribe me",
})
LEADING_MAX_WORDS = 5
PHRASE_MAX_WORDS = 12

_WHOLE_MESSAGE = {
    **{word: Intent.HELP for word in HELP_WORDS},
    **{word: Intent.OPT_IN for word in OPT_IN_WORDS},
    **{word: Intent.OPT_OUT for word in OPT_OUT_WORDS},
}
_QUOTES = "\"'`“”‘’«»„‚‹›"
_TRAILING_PUNCTUATION = ".,!?;:"
# Zero-width characters and emoji joiners (Cf), accents and enclosing keycaps (Mn, Me)
# carry no meaning for matching and would otherwise hide a keyword from an exact compare.
_DROPPED_CATEGORIES = frozenset({"Cf", "Mn", "Me"})
_WORD = re.compile(r"[^\W_]+")


def normalize(text: str) -> str:
    """Return ``text`` in the form keywords are compared in (step 1 of the module rule)."""
    decomposed = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text))
    kept = "".join(ch for ch in decomposed if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    folded = unicodedata.normalize("NFC", kept).casefold()
    spaced = "".join(" " if unicodedata.category(ch) == "Pd" else ch for ch in folded)
    result, previous = " ".join(spaced.split()), None
    while result != previous:
        previous = result
        result = result.strip(" ").lstrip(_QUOTES)
        if result and _strippable_at_end(result[-1]):
            result = result[:-1]
    return result


def classify(text: str, extra_opt_out: Iterable[str] = ()) -> Classification:
    """Classify one inbound SMS body; ``extra_opt_out`` are configured whole-message opt-outs."""
    whole = normalize(text)
    extras = {normalize(word) for word in extra_opt_out} - {""}
    if whole in extras:
        return Classification(Intent.OPT_OUT, whole, review=False)
    if whole in _WHOLE_MESSAGE:
        return Classification(_WHOLE_MESSAGE[whole], whole, review=False)

    words = _words(whole)
    if len(words) <= LEADING_MAX_WORDS:
        for keyword in sorted(LEADING_OPT_OUT_WORDS):
            if words[: len(_words(keyword))] == _words(keyword):
                return Classification(Intent.OPT_OUT, keyword, review=False)
    if len(words) <= PHRASE_MAX_WORDS:
        phrase = _find(words, REVOCATION_PHRASES)
        if phrase:
            return Classification(Intent.OPT_OUT, phrase, review=False)

    found = _find(words, REVOCATION_PHRASES) or _find(words, OPT_OUT_WORDS | extras)
    return Classification(Intent.OTHER, found, review=found is not None)


def _strippable_at_end(ch: str) -> bool:
    return ch in _TRAILING_PUNCTUATION or ch in _QUOTES or unicodedata.category(ch)[0] == "S"


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.replace("'", "").replace("’", "")))


def _find(words: tuple[str, ...], entries: Iterable[str]) -> str | None:
    """Return the entry found earliest in ``words`` (the longest one on a tie), if any."""
    hits = []
    for entry in entries:
        needle = _words(entry)
        for start in range(len(words) - len(needle) + 1):
            if words[start : start + len(needle)] == needle:
                hits.append((start, -len(needle), entry))
                break
    return min(hits)[2] if hits else None
