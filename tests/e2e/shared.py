"""The shared stack's config: the union of what its modules need (tenants and sources named so none clash)."""

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

SITE = "https://www.resort.example"
PARTNER_SECRET = "whsec_" + base64.b64encode(b"partner-secret-0123456789abcdef").decode()
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(SENDGRID_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
MAILGUN_KEY = "mailgun-signing-key"
POSTMARK_AUTH = ("hooks", "postmark-password")

# test_email: behind a pretend router (proxy_hops = 1); every other module's form posts stay under the limit.
SERVICE_CONFIG = "proxy_hops = 1\nforms_rate_limit = 5"
EXTRA_CONFIG = f"""
[tenants.resort]
display_name = "Seaside Resort"
experience = {{ base_url = "SANDBOX_URL/experience", partner_token = "partner", hotel_token = "resort-hotel" }}
forms_origins = ["{SITE}"]

[tenants.inn]
experience = {{ base_url = "SANDBOX_URL/experience", partner_token = "partner", hotel_token = "inn-hotel" }}
forms_return_url = "https://www.inn.example/unsubscribed"

[sources.booking-engine]
kind = "standard-webhooks"
tenant = "grand"
secret = "{PARTNER_SECRET}"

[sources.sendgrid]
kind = "sendgrid"
tenant = "grand"
public_key = "{SENDGRID_PUBLIC}"

[sources.mailgun]
kind = "mailgun"
tenant = "grand"
signing_key = "{MAILGUN_KEY}"
complaint = "mail_ban"

[sources.postmark]
kind = "postmark"
tenant = "grand"
basic_auth = "{POSTMARK_AUTH[0]}:{POSTMARK_AUTH[1]}"
"""
