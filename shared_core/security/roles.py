"""Roles and the endpoint policy: which role may call which API endpoint, and separation of duties.

Human roles are ordered, each including the ones below it: `viewer < operator < engineer < admin`.
Viewers read; operators also approve, reject and cancel; admins also manage credentials, settings and
their tenant's repositories (onboarding other tenants is for admins of the deployment's operator tenant:
the onboarding endpoint checks that beside the role).
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
    Permission("approve_plan", OPERATOR),
    Permission("reject_plan", OPERATOR),
    Permission("cancel_job", OPERATOR),
    Permission("manage_credentials", ADMIN),
    Permission("manage_settings", ADMIN),
    Permission("manage_tenants", ADMIN),
    Permission("configure_repository", ADMIN),
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


def check_separation(approver: str, author: str, *, allow_self_approval: bool) -> None:
    """Refuse an approval by the author of the change it approves, unless the tenant allows self-approval.

    Names are compared case-insensitively (GitHub logins are), ignoring surrounding whitespace. An empty
    `author` means the change has no human author (e.g. a scheduled run) and anyone may approve; an empty
    `approver` is always refused, because every approval must be attributable to someone.

    Args:
        approver: who is deciding (the approval token's `sub`, or the API principal's subject).
        author: who pushed the change that the plan was built from.
        allow_self_approval: the tenant setting that lets authors approve their own plans.

    Raises:
        AuthorizationError: the approver is the author and self-approval is off, or the approver is empty.

    >>> check_separation("alice", "bob", allow_self_approval=False)
    >>> check_separation("Alice", "alice", allow_self_approval=True)
    >>> try:
    ...     check_separation("Alice", "alice", allow_self_approval=False)
    ... except AuthorizationError as exc:
    ...     print(exc)
    'Alice' pushed this change and may not approve it too; ask another operator
    """
    who = approver.strip()
    if not who:
        raise AuthorizationError("an approval needs a named approver; sign in, or open a link issued to a person")
    if not allow_self_approval and who.casefold() == author.strip().casefold():
        raise AuthorizationError(f"{who[:80]!r} pushed this change and may not approve it too; ask another operator")
