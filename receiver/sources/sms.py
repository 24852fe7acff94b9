"""What every SMS source shares: the keyword rule's intents and the SMS state rule."""

from .. import keywords
from ..signals import HELP, OPT_IN, OPT_OUT, OTHER, Signal
from ..states import SMS_BAN, SMS_OPT_IN_REMOVES

INTENTS = {
    keywords.Intent.OPT_OUT: OPT_OUT,
    keywords.Intent.OPT_IN: OPT_IN,
    keywords.Intent.HELP: HELP,
    keywords.Intent.OTHER: OTHER,
}


MAX_REVIEW_TEXT = 1600  # Twilio's limit of one message's body


def sms_signal(event_id: str, phone: str, intent: str, *, keyword=None, review=False, text=None, **extra) -> Signal:
    """The SMS rule shared by every SMS source: opt-out bans SMS, opt-in lifts both SMS states.

    A text flagged for review keeps its words in the detail, for the person who must judge it.
    """
    if review and text:
        extra["detail"] = {**extra.get("detail", {}), "text": text[:MAX_REVIEW_TEXT]}
    return Signal(
        event_id=event_id,
        kind=intent,
        phone=phone,
        add=frozenset({SMS_BAN}) if intent == OPT_OUT else frozenset(),
        remove=SMS_OPT_IN_REMOVES if intent == OPT_IN else frozenset(),
        keyword=keyword,
        review=review,
        **extra,
    )


def classify(text: str, extra_opt_out=()) -> tuple[str, str | None, bool]:
    """(intent, keyword, review) of an SMS text by the rule in receiver.keywords."""
    found = keywords.classify(text, extra_opt_out)
    return INTENTS[found.intent], found.keyword, found.review
