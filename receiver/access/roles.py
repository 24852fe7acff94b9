"""Roles and permissions as one plain table, and the Principal a request acts as, scoped to tenants."""

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from ..errors import Forbidden, NotFound

__all__ = ["BOOTSTRAP", "Forbidden", "GRANTS", "Permission", "Principal", "Role", "may"]


class Role(StrEnum):
    VIEWER = "viewer"
    AGENT = "agent"
    ADMIN = "admin"


class Permission(StrEnum):
    READ = "read"  # consent, events, deliveries, clocks, proof, the review queue
    RECORD_OPT_OUT = "record_opt_out"  # POST /v1/opt-outs
    DECIDE_REVIEW = "decide_review"  # POST /v1/review/<event_id>
    REPLAY = "replay"
    LINKS = "links"
    ERASURE = "erasure"
    EXPORT = "export"
    MANAGE_OPERATORS = "manage_operators"


# The contract's table, verbatim: a reader checks it against the contract without reading code.
GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.AGENT: frozenset({Permission.READ, Permission.RECORD_OPT_OUT, Permission.DECIDE_REVIEW}),
    Role.ADMIN: frozenset(Permission),
}

BOOTSTRAP_NAME = "bootstrap admin"


def may(role: Role, permission: Permission) -> bool:
    return permission in GRANTS[role]


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: ``name`` goes into the audit trail; ``tenants`` None means every tenant.

    Only an admin is for every tenant, and an admin always is ("everything, on every tenant"):
    a tenant-scoped admin could otherwise create an unscoped one and leave its scope.
    """

    name: str
    role: Role
    tenants: frozenset[str] | None

    def __post_init__(self):
        if self.role is Role.ADMIN and self.tenants is not None:
            raise ValueError("an admin is for every tenant: give no tenants")
        if self.role is not Role.ADMIN and not self.tenants:
            raise ValueError(f"a {self.role} needs at least one tenant")

    def can_see(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants

    def visible(self, tenants: Iterable[str]) -> list[str]:
        """The tenants a list may hold, in the given order: lists hold only the principal's own."""
        return [tenant for tenant in tenants if self.can_see(tenant)]

    def require(self, permission: Permission, tenant: str | None = None) -> None:
        """Refuse unless allowed; ``tenant`` is the one the request names or the resource belongs to.

        Another tenant answers exactly like a tenant that does not exist (404), checked before the
        role, so that no answer tells a hotel's staff which other hotels or guests are there.
        """
        if tenant is not None and not self.can_see(tenant):
            raise NotFound(f"tenant: {tenant!r} not found", field="tenant")
        if not may(self.role, permission):
            raise Forbidden(f"{self.role} may not {permission.replace('_', ' ')}")


BOOTSTRAP = Principal(BOOTSTRAP_NAME, Role.ADMIN, None)
