"""Operators' passwords (Argon2id) and API tokens: hashing, verification, rehash, constant time."""

import hashlib
import hmac
import re

import pytest
from argon2 import PasswordHasher, Type, extract_parameters, profiles

from receiver.access import credentials
from receiver.access.credentials import (
    Passwords,
    check_new_password,
    new_token,
    token_hash,
    token_matches,
)
from receiver.errors import BadRequest

PASSWORD = "correct horse battery staple"


class CountingHasher(PasswordHasher):
    """The cheapest parameters (fast tests), counting the hashes each verification is run against."""

    def __init__(self, **parameters):
        super().__init__(**{**_cheapest(), **parameters})
        self.verified: list[str] = []

    def verify(self, hash, password):
        self.verified.append(hash)
        return super().verify(hash, password)


def _cheapest() -> dict:
    p = profiles.CHEAPEST
    return {"time_cost": p.time_cost, "memory_cost": p.memory_cost, "parallelism": p.parallelism,
            "hash_len": p.hash_len, "salt_len": p.salt_len, "type": p.type}


@pytest.fixture
def passwords() -> Passwords:
    return Passwords(CountingHasher())


def test_default_is_argon2id_at_least_owasps_parameters():
    stored = Passwords().hash(PASSWORD)
    parameters = extract_parameters(stored)
    assert stored.startswith("$argon2id$")
    assert parameters.type is Type.ID
    assert parameters.memory_cost >= 19 * 1024 and parameters.time_cost >= 2
    assert parameters == profiles.RFC_9106_LOW_MEMORY


def test_hash_and_verify(passwords):
    stored = passwords.hash(PASSWORD)
    assert PASSWORD not in stored
    assert stored != passwords.hash(PASSWORD)  # salted
    assert passwords.verify(stored, PASSWORD) is True


@pytest.mark.parametrize("wrong", ["", "correct horse battery stapl", "Correct horse battery staple"])
def test_wrong_password(passwords, wrong):
    assert passwords.verify(passwords.hash(PASSWORD), wrong) is False


def test_corrupt_stored_hash_is_a_mismatch_not_an_error(passwords):
    assert passwords.verify("$argon2id$garbage", PASSWORD) is False
    assert passwords.verify("plain text", PASSWORD) is False


def test_unknown_email_runs_one_full_verification_like_a_wrong_password(passwords):
    hasher = passwords.hasher
    stored = passwords.hash(PASSWORD)
    assert passwords.verify(stored, "wrong password here") is False
    assert passwords.verify(None, PASSWORD) is False
    assert passwords.verify("", PASSWORD) is False
    assert len(hasher.verified) == 3
    assert hasher.verified[0] == stored
    dummy = hasher.verified[1]
    assert dummy != stored and hasher.verified[2] == dummy
    assert extract_parameters(dummy) == extract_parameters(stored)  # the same cost as a real one


def test_needs_rehash_when_the_parameters_change():
    old = Passwords(CountingHasher())
    stored = old.hash(PASSWORD)
    assert old.needs_rehash(stored) is False
    stronger = Passwords(CountingHasher(time_cost=2))
    assert stronger.needs_rehash(stored) is True
    assert stronger.verify(stored, PASSWORD) is True  # an old hash still signs in, then is replaced
    assert stronger.needs_rehash(stronger.hash(PASSWORD)) is False


def test_unicode_forms_of_one_password_match(passwords):
    composed, decomposed = "mot de passe d\u00e9j\u00e0 vu 2026", "mot de passe de\u0301ja\u0300 vu 2026"
    assert composed != decomposed
    assert passwords.verify(passwords.hash(composed), decomposed) is True


def test_new_password_length():
    check_new_password("x" * 15)
    check_new_password("x" * 1024)
    for bad in ("", "x" * 14, "x" * 1025):
        with pytest.raises(BadRequest) as refused:
            check_new_password(bad)
        assert refused.value.field == "password"
        assert "xxxxxxxxxx" not in refused.value.message  # a password is never echoed


def test_new_token_is_shown_once_and_only_its_hash_is_kept():
    token, stored = new_token()
    assert re.fullmatch(r"rcv_[A-Za-z0-9_-]{43}", token)  # 32 random bytes, urlsafe base64
    assert stored == hashlib.sha256(token.encode()).hexdigest() == token_hash(token)
    assert token not in stored
    other, other_stored = new_token()
    assert other != token and other_stored != stored


def test_token_matches():
    token, stored = new_token()
    assert token_matches(token, stored) is True
    assert token_matches(token[:-1], stored) is False
    assert token_matches("", stored) is False
    assert token_matches(token, new_token()[1]) is False
    assert token_matches("rcv_\u00e9t\u00e9", stored) is False  # non-ASCII input is no error


def test_token_matches_compares_in_constant_time(monkeypatch):
    calls, compare = [], hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(credentials.hmac, "compare_digest", spy)
    token, stored = new_token()
    assert token_matches(token, stored) is True
    assert calls == [(stored.encode(), stored.encode())]
