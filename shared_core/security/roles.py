"""Roles and the endpoint policy: which role may call which API endpoint, and separation of duties.

Human roles are ordered, each including the ones below it: `viewer < operator < engineer < admin`.
Viewers read; operators also approve, reject and cancel; admins also manage credentials, settings and
their tenant's repositories and the identities that may decide (onboarding other tenants is for admins
of the deployment's operator tenant: the onboarding endpoint checks that beside the role).
Engineers plan and apply through pushes and the CLI, so no API endpoint needs them yet; they hold every
operator right. The `service` role (internal calls between IronLayer's own components) stands outside
that order: it is allowed exactly where an endpoint lists it, and nowhere else, whatever the endpoint's
minimum human role.

Every API endpoint declares its rule in `POLICY`, and `POLICY` lists only endpoints that exist (a test
compares it with the endpoints the API guards). An endpoint missing from it is a programming error, not
a refusal, so that a forgotten entry fails loudly in tests instead of quietly answering 403 (or worse, 200).
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from shared_core.core.errors import AuthorizationError

VIEWER, OPERATOR, ENGINEER, ADMIN, SERVICE = "viewer", "operator", "engineer", "admin", "service"
#: The ordered human roles, lowest first.
HUMAN_ROLES = (VIEWER, OPERATOR, ENGINEER, ADMIN)
#: Every role a token may carry.
ROLES = (*HUMAN_ROLES, SERVICE)
_RANK = {role: rank for rank, role in enumerate(HUMAN_ROLES)}


@dataclass(frozen=True)
class Permission:
    """One endpoint's rule: the lowest human role that may call it, and whether the service role may."""

    endpoint: str
    min_role: str
    service: bool = False

    def allows(self, role: str) -> bool:
        """Whether `role` may call this endpoint.

        >>> Permission("apply", ENGINEER, service=True).allows("admin"), Permission("apply", ENGINEER).allows("service")
        (True, False)
        """
        if role == SERVICE:
            return self.service
        return role in _RANK and _RANK[role] >= _RANK[self.min_role]


def _table(*rules: Permission) -> Mapping[str, Permission]:
    table = {rule.endpoint: rule for rule in rules}
    if len(table) != len(rules) or any(rule.min_role not in _RANK for rule in rules):
        raise ValueError("the endpoint policy lists an endpoint twice or names an unknown minimum role")
    return MappingProxyType(table)


#: Endpoint name -> its rule. Every API endpoint must appear here (see the module docstring).
POLICY: Mapping[str, Permission] = _table(
    Permission("health", VIEWER, service=True),
    Permission("list_plans", VIEWER),
    Permission("get_plan", VIEWER),
    Permission("list_runs", VIEWER),
    Permission("list_jobs", VIEWER),
    Permission("audit_verify", VIEWER),
    Permission("telemetry", VIEWER),
    Permission("usage", VIEWER),
    Permission("quota", VIEWER),
    Permission("approve_plan", OPERATOR),
    Permission("reject_plan", OPERATOR),
    Permission("cancel_job", OPERATOR),
    Permission("manage_credentials", ADMIN),
    Permission("manage_settings", ADMIN),
    Permission("manage_tenants", ADMIN),
    Permission("configure_repository", ADMIN),
    Permission("manage_identities", ADMIN),
)


def is_role(role: str) -> bool:
    """Whether `role` is one of the roles a token may carry.

    >>> is_role("engineer"), is_role("Engineer"), is_role("root")
    (True, False, False)
    """
    return role in ROLES


def allows(role: str, endpoint: str) -> bool:
    """Whether `role` may call `endpoint` (an unknown role may call nothing).

    Raises:
        ValueError: `endpoint` is not in `POLICY` (a programming error: declare the endpoint there).

    >>> allows("operator", "approve_plan"), allows("viewer", "approve_plan"), allows("service", "cancel_job")
    (True, False, False)
    """
    rule = POLICY.get(endpoint)
    if rule is None:
        raise ValueError(
            f"endpoint {endpoint[:80]!r} is not declared in shared_core.security.roles.POLICY; add its rule there"
        )
    return rule.allows(role)


def authorize(principal_role: str, endpoint: str) -> None:
    """Refuse the call unless `principal_role` may call `endpoint`.

    Args:
        principal_role: the role of the authenticated caller (`Principal.role`).
        endpoint: the endpoint's name in `POLICY`, e.g. `approve_plan`.

    Raises:
        AuthorizationError: the role may not call the endpoint; the message names the role needed.
        ValueError: `endpoint` is not declared in `POLICY`.

    >>> authorize("admin", "manage_settings")
    >>> try:
    ...     authorize("viewer", "cancel_job")
    ... except AuthorizationError as exc:
    ...     print(exc)
    role 'viewer' may not call cancel_job; it needs operator or higher, ask an admin
    """
    if allows(principal_role, endpoint):
        return
    rule = POLICY[endpoint]
    needed = f"{rule.min_role} or higher" if rule.min_role != ADMIN else ADMIN
    if not is_role(principal_role):
        raise AuthorizationError(
            f"role {principal_role[:40]!r} is not an IronLayer role, so it may not call {endpoint}; "
            f"it needs {needed}, ask an admin"
        )
    raise AuthorizationError(f"role {principal_role!r} may not call {endpoint}; it needs {needed}, ask an admin")


def lower_role(role: str, cap: str | None) -> str:
    """The lower of two human roles (`cap` None: `role` itself); anything but a human role counts as none.

    An API token and the tenant's registration of its subject each grant a role: a decision gets the lower.

    >>> lower_role("admin", "operator"), lower_role("operator", None), lower_role("admin", "service")
    ('operator', 'operator', '')
    """
    if role not in _RANK or (cap is not None and cap not in _RANK):
        return ""
    if cap is None:
        return role
    return role if _RANK[role] <= _RANK[cap] else cap


def check_separation(approver: str, approver_login: str | None, author_login: str, *,
                     allow_self_approval: bool) -> None:
    """Refuse an approval by the identity that pushed the change, unless the tenant allows self-approval.

    Identities are compared by GitHub login, the one identity both sides have: the pusher's comes from
    the push webhook, the approver's from the tenant's registration of its identity (lower-cased, as
    GitHub compares them). Display names are never compared. An empty `author_login` means the change
    has no human pusher (a scheduled run). An approver with no GitHub login mapped cannot be told apart
    from the pusher, so it is refused (fail closed) unless self-approval is allowed.

    Args:
        approver: how messages name the approver (its identity, e.g. `appservice:aad/0b4f...`).
        approver_login: the approver identity's GitHub login, or None when none is mapped.
        author_login: the GitHub login that pushed the change ('' for none).
        allow_self_approval: the tenant setting that lets pushers approve their own plans.

    Raises:
        AuthorizationError: the approver is the pusher, or cannot be told apart from it.

    >>> check_separation("api/ann", "ann", "bob", allow_self_approval=False)
    >>> check_separation("api/ann", "ann", "Ann", allow_self_approval=True)
    >>> check_separation("api/ann", None, "", allow_self_approval=False)
    >>> try:
    ...     check_separation("api/ann", "ann", "Ann", allow_self_approval=False)
    ... except AuthorizationError as exc:
    ...     print(exc)
    api/ann is GitHub user 'ann', who pushed this change, and may not approve it too; ask another operator
    """
    author = author_login.strip().casefold()
    if not author or allow_self_approval:
        return
    if approver_login is None:
        raise AuthorizationError(
            f"{approver[:120]} has no GitHub login mapped, so it cannot be told apart from {author_login[:40]!r}, "
            "who pushed this change; an admin maps its login (`ironlayer identities set ... --github-login`)"
        )
    if approver_login.strip().casefold() == author:
        raise AuthorizationError(f"{approver[:120]} is GitHub user {approver_login[:40]!r}, who pushed this change, "
                                 "and may not approve it too; ask another operator")
