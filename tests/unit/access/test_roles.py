"""Roles × permissions (every pair, against the contract's table) and tenant scopes."""

import pytest

from receiver.access.roles import BOOTSTRAP, Forbidden, Permission, Principal, Role, may
from receiver.errors import NotFound, ReceiverError

P = Permission
# The contract's "Operators" table, written out pair by pair so that a change to GRANTS shows here.
EXPECTED = {
    (Role.VIEWER, P.READ): True,
    (Role.VIEWER, P.RECORD_OPT_OUT): False,
    (Role.VIEWER, P.DECIDE_REVIEW): False,
    (Role.VIEWER, P.REPLAY): False,
    (Role.VIEWER, P.LINKS): False,
    (Role.VIEWER, P.ERASURE): False,
    (Role.VIEWER, P.EXPORT): False,
    (Role.VIEWER, P.MANAGE_OPERATORS): False,
    (Role.AGENT, P.READ): True,
    (Role.AGENT, P.RECORD_OPT_OUT): True,
    (Role.AGENT, P.DECIDE_REVIEW): True,
    (Role.AGENT, P.REPLAY): False,
    (Role.AGENT, P.LINKS): False,
    (Role.AGENT, P.ERASURE): False,
    (Role.AGENT, P.EXPORT): False,
    (Role.AGENT, P.MANAGE_OPERATORS): False,
    (Role.ADMIN, P.READ): True,
    (Role.ADMIN, P.RECORD_OPT_OUT): True,
    (Role.ADMIN, P.DECIDE_REVIEW): True,
    (Role.ADMIN, P.REPLAY): True,
    (Role.ADMIN, P.LINKS): True,
    (Role.ADMIN, P.ERASURE): True,
    (Role.ADMIN, P.EXPORT): True,
    (Role.ADMIN, P.MANAGE_OPERATORS): True,
}


def principal(role: Role, *tenants: str) -> Principal:
    return Principal("desk@grand.example", role, frozenset(tenants) if tenants else None)


def test_the_table_covers_every_role_and_permission():
    assert set(EXPECTED) == {(role, permission) for role in Role for permission in Permission}


@pytest.mark.parametrize(("role", "permission"), sorted(EXPECTED))
def test_may(role, permission):
    assert may(role, permission) is EXPECTED[(role, permission)]


@pytest.mark.parametrize(("role", "permission"), sorted(EXPECTED))
def test_require_on_own_tenant_allows_or_is_403(role, permission):
    who = principal(role) if role is Role.ADMIN else principal(role, "grand")
    if EXPECTED[(role, permission)]:
        who.require(permission, "grand")
        who.require(permission)
    else:
        with pytest.raises(Forbidden) as refused:
            who.require(permission, "grand")
        assert refused.value.status == 403
        assert isinstance(refused.value, ReceiverError)  # so the one error handler answers it


@pytest.mark.parametrize("role", [Role.VIEWER, Role.AGENT])
@pytest.mark.parametrize("permission", list(Permission))
def test_another_tenant_is_404_whatever_the_role_may_do(role, permission):
    who = principal(role, "grand", "annex")
    with pytest.raises(NotFound) as refused:
        who.require(permission, "seaside")
    assert refused.value.status == 404
    assert refused.value.field == "tenant"
    assert not isinstance(refused.value, Forbidden)


def test_scoped_operator_sees_only_their_tenants():
    who = principal(Role.AGENT, "grand", "annex")
    assert who.can_see("grand") and who.can_see("annex")
    assert not who.can_see("seaside")
    assert who.visible(["seaside", "annex", "grand", "lodge"]) == ["annex", "grand"]


def test_admin_and_bootstrap_see_every_tenant():
    for who in (principal(Role.ADMIN), BOOTSTRAP):
        assert who.can_see("seaside")
        assert who.visible(["seaside", "grand"]) == ["seaside", "grand"]
        who.require(Permission.ERASURE, "seaside")
    assert BOOTSTRAP.name == "bootstrap admin" and BOOTSTRAP.role is Role.ADMIN


def test_only_an_admin_is_for_every_tenant_and_always_is():
    with pytest.raises(ValueError, match="needs at least one tenant"):
        principal(Role.AGENT)
    with pytest.raises(ValueError, match="needs at least one tenant"):
        Principal("v@grand.example", Role.VIEWER, frozenset())
    with pytest.raises(ValueError, match="every tenant"):
        principal(Role.ADMIN, "grand")


def test_role_and_permission_names_are_the_contracts_words():
    assert [role.value for role in Role] == ["viewer", "agent", "admin"]
    assert Role("agent") is Role.AGENT
    with pytest.raises(ValueError):
        Role("owner")
