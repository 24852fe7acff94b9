"""One name per thing: a *receipt* is the signed answer (receipts.py); the ledger's row of a request is a RequestRecord."""

from receiver import receipts
from receiver.ledger import models


def test_the_request_table_is_not_called_a_receipt_in_python():
    assert not hasattr(models, "Receipt")
    assert models.RequestRecord.__tablename__ == "receipts"  # kept: renaming the table needs a migration
    assert hasattr(receipts, "ReceiptSigner")
