"""The ledger's read side reads only: operators' writes (replay) live in ledger/actions.py."""

import inspect
import re

from receiver.ledger import actions, queries


def test_queries_only_read():
    source = inspect.getsource(queries)
    assert not re.search(r"\b(update|insert|delete)\(|\.begin\(\)", source)
    assert re.search(r"\bupdate\(", inspect.getsource(actions.replay_delivery))
