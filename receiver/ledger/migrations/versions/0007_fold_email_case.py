"""emails compare case-insensitively: lower-case every stored email, merging what now collides

Until now only an email's domain was lower-cased, so ``Guest@example.com`` and
``guest@example.com`` were two identities and an opt-out of one missed the other. Every place
an email is an identity is folded the way receiver.identities.fold_email does (Python's
``str.lower``, the same on SQLite and PostgreSQL, whose ``lower()`` differ beyond ASCII):

- ``consent``: rows that now share (tenant, identity, state) become one, keeping the earliest
  ``since`` (the state has held since then) and that row's ``signal_id``, so that a later delivery
  of the same state is owed no more, as if the second signal had found it in force; unless one of
  the rows' signals still has a delivery to that identity pending (or else dead): its
  ``signal_id`` is kept, so that delivery still reaches its CRM instead of being skipped;
- ``identity_links``: rows that now share (tenant, email, phone) become one, keeping the latest
  ``created_at`` (the most recent link names the email of a phone);
- ``signals.email`` and the emails of ``signals.changes`` (the audit trail is looked up by
  them, and reconcile reads a re-consent's lifted states from them), ``deliveries.identity``,
  and the ``email`` of the payload of deliveries still to be sent (pending or dead: a replay
  resends it).

What was answered stays as it was: the receipts (their signed answers).
Downgrading leaves the folded rows as they are: merged rows cannot be told apart again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 17:45:00
"""
from alembic import op

from receiver.ledger.fold import fold_stored_emails

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The worker runs the same fold now and then: old processes of a rolling deploy still store upper case.
    fold_stored_emails(op.get_bind())


def downgrade() -> None:
    pass
