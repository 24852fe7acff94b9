"""Input limits are read from the ledger's columns, in one place (receiver/schemas.py)."""


def test_input_limits_are_the_ledger_s_column_lengths():
    # Issue 12.6: the 255 of the key columns was written again in the input rules; read from the model now.
    from receiver.ledger.models import RequestRecord, SignalRow
    from receiver.schemas import MAX_IDENTIFIER, MAX_TENANT
    from receiver.sources import postmark

    assert MAX_IDENTIFIER == SignalRow.__table__.c.event_id.type.length == RequestRecord.__table__.c.request_key.type.length
    assert MAX_TENANT == SignalRow.__table__.c.tenant.type.length
    # Postmark's dedup key (record type + 3 parts + 16-character digest + 4 colons) fits the column.
    assert postmark.MAX_RECORD_TYPE + 3 * postmark.MAX_PART + 16 + 4 <= MAX_IDENTIFIER
