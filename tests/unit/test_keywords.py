"""SMS keyword classification: every table entry, its variants, and the near-misses."""

import pytest

from receiver.keywords import (
    HELP_WORDS,
    LEADING_MAX_WORDS,
    LEADING_OPT_OUT_WORDS,
    OPT_IN_WORDS,
    OPT_OUT_WORDS,
    PHRASE_MAX_WORDS,
    REVOCATION_PHRASES,
    Classification,
    Intent,
    classify,
    normalize,
)

OUT, IN, HELP, OTHER = Intent.OPT_OUT, Intent.OPT_IN, Intent.HELP, Intent.OTHER
WHOLE_MESSAGE = (
    [(word, OUT) for word in sorted(OPT_OUT_WORDS)]
    + [(word, IN) for word in sorted(OPT_IN_WORDS)]
    + [(word, HELP) for word in sorted(HELP_WORDS)]
)
# How guests dress up a bare keyword; each must still be an exact whole-message match.
VARIANTS = {
    "upper": str.upper,
    "title": str.title,
    "mixed": lambda w: "".join(c.upper() if i % 2 else c for i, c in enumerate(w)),
    "spaces": lambda w: f"  \t{w} \n",
    "bang": lambda w: f"{w}!!",
    "full stop": lambda w: f"{w}.",
    "question": lambda w: f"{w}?",
    "emoji": lambda w: f"{w} 🛑",
    "quoted": lambda w: f'"{w}"',
    "hyphenated": lambda w: w.replace(" ", "-"),
    "fullwidth": lambda w: "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in w),
}
# Words that are neither keywords nor parts of a revocation phrase.
FILLER = ("at", "the", "pool", "today", "thanks", "friend", "see", "you", "soon", "ok", "bye", "now")
WHOLE_ONLY_OPT_OUT = sorted(
    word for word in OPT_OUT_WORDS - LEADING_OPT_OUT_WORDS
    if word.split()[0] not in LEADING_OPT_OUT_WORDS
)


def _padded(words: list[str], total: int) -> str:
    return " ".join(words + list(FILLER[: total - len(words)]))


# --- the tables themselves ---------------------------------------------------------------


def test_tables_hold_only_normalized_entries():
    entries = OPT_OUT_WORDS | OPT_IN_WORDS | HELP_WORDS | LEADING_OPT_OUT_WORDS
    assert [e for e in entries if normalize(e) != e] == []
    assert [p for p in REVOCATION_PHRASES if normalize(p) != p] == []


def test_tables_are_disjoint_and_leading_words_are_opt_outs():
    assert OPT_OUT_WORDS & OPT_IN_WORDS == set()
    assert OPT_OUT_WORDS & HELP_WORDS == set()
    assert OPT_IN_WORDS & HELP_WORDS == set()
    assert LEADING_OPT_OUT_WORDS <= OPT_OUT_WORDS


def test_documented_keywords_are_present():
    assert OPT_OUT_WORDS >= {
        "stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "revoke",
        "optout", "opt out", "arret", "arrete", "arrett", "alto",
    }
    assert LEADING_OPT_OUT_WORDS == {
        "stop", "stopall", "unsubscribe", "optout", "opt out", "revoke", "arret",
    }
    assert OPT_IN_WORDS == {"start", "unstop", "yes"}
    assert HELP_WORDS == {"help", "info", "aide", "ayuda"}
    assert "remove" not in OPT_OUT_WORDS
    assert {"cancel", "end", "quit"} <= set(WHOLE_ONLY_OPT_OUT)


def test_intent_values_are_the_wire_names():
    assert [i.value for i in Intent] == ["opt_out", "opt_in", "help", "other"]


# --- normalize ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("STOP", "stop"),
        ("  Stop  ", "stop"),
        ("STOP!!", "stop"),
        ("stop 🛑", "stop"),
        ("stop…", "stop"),
        ("stop ?!.,;:", "stop"),
        ("stop 👍🏽", "stop"),
        ("stop ❤️‍🔥", "stop"),
        ('"Stop."', "stop"),
        ("“STOP”", "stop"),
        ("'stop'", "stop"),
        ("«stop»", "stop"),
        ("ARRÊT", "arret"),
        ("Arrête", "arrete"),
        ("ＳＴＯＰ", "stop"),
        ("s\u200btop", "stop"),
        ("OPT-OUT", "opt out"),
        ("opt – out", "opt out"),
        ("opt\t\n  out", "opt out"),
        ("Stop. Thank you", "stop. thank you"),
        ("don't text me", "don't text me"),
        ("🛑 stop", "🛑 stop"),
        ("", ""),
        ("  \t\n", ""),
        ("🛑!!", ""),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


# --- whole-message keywords --------------------------------------------------------------


@pytest.mark.parametrize(("word", "intent"), WHOLE_MESSAGE)
def test_whole_message_keyword(word, intent):
    assert classify(word) == Classification(intent, word, False)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("word", "intent"), WHOLE_MESSAGE)
def test_whole_message_keyword_variants(word, intent, variant):
    assert classify(VARIANTS[variant](word)) == Classification(intent, word, False)


@pytest.mark.parametrize(
    ("text", "intent", "keyword"),
    [
        ("STOP", OUT, "stop"),
        ("Stop", OUT, "stop"),
        ("sToP", OUT, "stop"),
        (" stop ", OUT, "stop"),
        ("STOP!!", OUT, "stop"),
        ("stop 🛑", OUT, "stop"),
        ("ARRÊT", OUT, "arret"),
        ("OPT-OUT", OUT, "opt out"),
        ("Opt Out.", OUT, "opt out"),
        ("STOP ALL", OUT, "stop all"),
        ("Quit", OUT, "quit"),
        ("cancel", OUT, "cancel"),
        ("END!", OUT, "end"),
        ("Alto", OUT, "alto"),
        ("Start", IN, "start"),
        ("YES!", IN, "yes"),
        ("unstop", IN, "unstop"),
        ("Help?", HELP, "help"),
        ("AYUDA", HELP, "ayuda"),
        ("Aide", HELP, "aide"),
        ("info", HELP, "info"),
    ],
)
def test_explicit_whole_messages(text, intent, keyword):
    assert classify(text) == Classification(intent, keyword, False)


# --- leading opt-out words ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("Stop. Thank you", "stop"),
        ("STOP please", "stop"),
        ("stop, all", "stop"),
        ("unsubscribe me", "unsubscribe"),
        ("stop texting me", "stop"),
        ("Opt-out please!", "opt out"),
        ("Revoke my consent", "revoke"),
        ("Arrêt svp", "arret"),
        ("stopall thanks", "stopall"),
        ("optout now 🙏", "optout"),
        ("🛑 stop", "stop"),
        ("STOP STOP STOP STOP STOP", "stop"),
    ],
)
def test_short_message_leading_with_opt_out(text, keyword):
    assert classify(text) == Classification(OUT, keyword, False)


@pytest.mark.parametrize("word", sorted(LEADING_OPT_OUT_WORDS))
def test_every_leading_word_up_to_the_word_limit(word):
    text = _padded(word.split(), LEADING_MAX_WORDS)
    assert len(text.split()) == LEADING_MAX_WORDS
    assert classify(text) == Classification(OUT, word, False)


@pytest.mark.parametrize("word", sorted(LEADING_OPT_OUT_WORDS))
def test_every_leading_word_past_the_word_limit_is_only_flagged(word):
    text = _padded(word.split(), LEADING_MAX_WORDS + 1)
    assert classify(text) == Classification(OTHER, word, True)


@pytest.mark.parametrize("word", WHOLE_ONLY_OPT_OUT)
def test_whole_only_opt_out_leading_a_short_message_is_only_flagged(word):
    assert classify(f"{word} my booking") == Classification(OTHER, word, True)


# --- revocation phrases ------------------------------------------------------------------


@pytest.mark.parametrize("phrase", sorted(REVOCATION_PHRASES))
def test_every_revocation_phrase_inside_a_short_message(phrase):
    text = f"hello there, {phrase} thanks"
    assert classify(text) == Classification(OUT, phrase, False)


@pytest.mark.parametrize("phrase", sorted(REVOCATION_PHRASES))
def test_every_revocation_phrase_shouting_with_smart_apostrophes(phrase):
    text = f"Hi! {phrase.upper().replace(chr(39), '’')}!!!"
    assert classify(text) == Classification(OUT, phrase, False)


@pytest.mark.parametrize("phrase", sorted(REVOCATION_PHRASES))
def test_every_revocation_phrase_up_to_the_word_limit(phrase):
    text = _padded(["hello", *phrase.split()], PHRASE_MAX_WORDS)
    assert len(text.split()) == PHRASE_MAX_WORDS
    assert classify(text) == Classification(OUT, phrase, False)


@pytest.mark.parametrize("phrase", sorted(REVOCATION_PHRASES))
def test_every_revocation_phrase_past_the_word_limit_is_only_flagged(phrase):
    text = _padded(["hello", *phrase.split()], PHRASE_MAX_WORDS + 1)
    assert classify(text) == Classification(OTHER, phrase, True)


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("Please stop texting me", "please stop texting me"),
        ("can you stop messaging me", "stop messaging me"),
        ("hey, stop sending me texts ok", "stop sending me texts"),
        ("No more texts!", "no more texts"),
        ("Don't text me", "don't text me"),
        ("don’t text me", "don't text me"),
        ("do not text me again", "do not text me"),
        ("Take me off your list", "take me off your list"),
        ("please remove me from your list", "remove me from your list"),
        ("I want to opt out", "i want to opt out"),
        ("I want to opt-out.", "i want to opt out"),
        ("please unsubscribe me", "please unsubscribe me"),
    ],
)
def test_explicit_revocation_phrases(text, keyword):
    assert classify(text) == Classification(OUT, keyword, False)


# --- near-misses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("stop by the pool at 5", "stop"),
        ("stop by the front desk when you arrive please", "stop"),
        ("cancel my booking", "cancel"),
        ("Can I cancel my booking?", "cancel"),
        ("quit smoking tips?", "quit"),
        ("the end", "end"),
        ("what time does breakfast end", "end"),
        ("the bar is alto", "alto"),
        ("please unsubscribe my husband from the newsletter", "unsubscribe"),
        ("We'd like to opt out of the breakfast plan", "opt out"),
    ],
)
def test_message_merely_containing_an_opt_out_word_is_flagged(text, keyword):
    assert classify(text) == Classification(OTHER, keyword, True)


@pytest.mark.parametrize(
    "text",
    [
        "yes please",
        "Yes, see you at 5",
        "start time for the tour?",
        "help me find the spa",
        "more info on parking",
        "unstopped",
        "stopped by the lobby",
        "the weekend was great",
        "remove the late fee",
        "thanks!",
        "",
        "   ",
        "\n\t",
        "🛑",
        "!!!",
    ],
)
def test_ordinary_messages_are_other_without_review(text):
    assert classify(text) == Classification(OTHER, None, False)


# --- configured extras -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "extras", "expected"),
    [
        ("BAJA", ["baja"], Classification(OUT, "baja", False)),
        ("baja!", ["BAJA"], Classification(OUT, "baja", False)),
        ("parar", ["  Párar! "], Classification(OUT, "parar", False)),
        ("no-text", ["No Text"], Classification(OUT, "no text", False)),
        ("yes", ["yes"], Classification(OUT, "yes", False)),
        ("baja", [], Classification(OTHER, None, False)),
        ("baja california trip", ["baja"], Classification(OTHER, "baja", True)),
        ("", ["", "   "], Classification(OTHER, None, False)),
        ("stop", ["baja"], Classification(OUT, "stop", False)),
    ],
)
def test_extra_opt_out_words(text, extras, expected):
    assert classify(text, extra_opt_out=extras) == expected


def test_extra_opt_out_accepts_any_iterable():
    assert classify("Baja", extra_opt_out=(w for w in ("baja",))) == Classification(OUT, "baja", False)
