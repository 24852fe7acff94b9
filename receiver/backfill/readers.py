"""The provider list reader a source's ``backfill`` option builds (options.py checks the option); Experience's
reader, built from the tenant's ``experience`` settings."""

from ..crm import experience as crm_experience
from ..settings import ExperienceConfig, SourceConfig, WorkerConfig
from . import experience, mailgun, postmark, sendgrid, twilio
from .pages import ListClient, RetryPolicy


def retry_policy(worker: WorkerConfig) -> RetryPolicy:
    """Reads are retried on the deliveries' schedule."""
    return RetryPolicy(worker.max_attempts, worker.backoff_base_seconds, worker.backoff_max_seconds)


def reader(config: SourceConfig, worker: WorkerConfig, **client_options):
    """The provider list reader of a source with a ``backfill`` option (its options already checked)."""
    options, kind = config.options["backfill"], config.kind
    retry = retry_policy(worker)

    def client(module, **auth) -> ListClient:
        return ListClient(module.PROVIDER, options.get("base_url") or module.BASE_URL, retry=retry,
                          **auth, **client_options)

    if kind == "twilio":
        token = config.options["auth_token"][0]  # the current token while rotating
        return twilio.TwilioBackfill(client(twilio, auth=(options["account_sid"], token)),
                                     options["account_sid"], options["to"])
    if kind == "sendgrid":
        return sendgrid.SendGridBackfill(client(sendgrid, headers=sendgrid.bearer(options["api_key"])))
    if kind == "mailgun":
        return mailgun.MailgunBackfill(client(mailgun, auth=("api", options["api_key"])), options["domain"])
    if kind == "postmark":
        return postmark.PostmarkBackfill(client(postmark, headers=postmark.server_token(options["server_token"])),
                                         options["stream"])
    raise LookupError(f"source kind {kind!r} has no backfill")


def experience_reader(config: ExperienceConfig, worker: WorkerConfig, **client_options) -> experience.ExperienceBackfill:
    """The reader of one hotel's Experience list, within the ``timeout`` its deliveries have."""
    client = ListClient(experience.PROVIDER, config.base_url, headers=crm_experience.bearer(config), deadline=config.timeout,
                        retry=retry_policy(worker), **client_options)
    return experience.ExperienceBackfill(client, config.retrieve_path)
