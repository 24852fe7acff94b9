"""The four opt-out states (Experience CRM's vocabulary) and where each one is delivered."""

MAIL_BAN = "mail_ban"
MARKETING_DECLINE = "marketing_decline"
SMS_BAN = "sms_ban"
MARKETING_DECLINE_SMS = "marketing_decline_sms"

STATES = (MAIL_BAN, MARKETING_DECLINE, SMS_BAN, MARKETING_DECLINE_SMS)
EMAIL_STATES = frozenset({MAIL_BAN, MARKETING_DECLINE})
SMS_STATES = frozenset({SMS_BAN, MARKETING_DECLINE_SMS})

# What an SMS re-consent (START / UNSTOP / YES) lifts.
SMS_OPT_IN_REMOVES = frozenset({SMS_BAN, MARKETING_DECLINE_SMS})

# Which CRM takes which newly added state (contract, "Where each state goes").
EXPERIENCE = "experience"
CRMTEXT = "crmtext"
CRMS = (EXPERIENCE, CRMTEXT)
DELIVERED_TO = {
    MAIL_BAN: (EXPERIENCE,),
    MARKETING_DECLINE: (EXPERIENCE,),
    SMS_BAN: (EXPERIENCE, CRMTEXT),
    MARKETING_DECLINE_SMS: (EXPERIENCE,),
}

# What a sender may send while these states are in force (contract, "Operator API").
CHANNELS = {
    "marketing_email": frozenset({MAIL_BAN, MARKETING_DECLINE}),
    "transactional_email": frozenset({MAIL_BAN}),
    "marketing_sms": frozenset({SMS_BAN, MARKETING_DECLINE_SMS}),
    "transactional_sms": frozenset({SMS_BAN}),
}


def may_receive(states) -> dict[str, bool]:
    """{"marketing_email": …, "transactional_email": …, "marketing_sms": …, "transactional_sms": …}."""
    held = set(states)
    return {channel: not (held & blocking) for channel, blocking in CHANNELS.items()}


def identity_for(state: str, email: str | None, phone: str | None) -> str | None:
    """Whose a state is: email states belong to the email, SMS states to the phone, each falling back to the other."""
    if state in EMAIL_STATES:
        return email or phone
    return phone or email
