"""Roles: the whole role-by-endpoint matrix against a table written out by hand, and separation of duties."""

from __future__ import annotations

import pytest

from functions.http.errors import status_of
from shared_core.core.errors import AuthorizationError, CoreError
from shared_core.security.roles import (
    HUMAN_ROLES,
    POLICY,
    ROLES,
    allows,
    authorize,
    check_separation,
    is_role,
    lower_role,
)

# The expected matrix, written out cell by cell (not derived from POLICY): Y allowed, . refused.
# Columns: viewer operator engineer admin service
EXPECTED = """
list_plans          Y Y Y Y .
get_plan            Y Y Y Y .
list_runs           Y Y Y Y .
list_jobs           Y Y Y Y .
health              Y Y Y Y Y
audit_verify        Y Y Y Y .
telemetry           Y Y Y Y .
usage               Y Y Y Y .
quota               Y Y Y Y .
cancel_job          . Y Y Y .
approve_plan        . Y Y Y .
reject_plan         . Y Y Y .
manage_credentials  . . . Y .
manage_settings     . . . Y .
manage_tenants      . . . Y .
configure_repository . . . Y .
manage_identities   . . . Y .
"""
COLUMNS = ("viewer", "operator", "engineer", "admin", "service")
MATRIX = {
    (line.split()[0], role): mark == "Y"
    for line in EXPECTED.strip().splitlines()
    for role, mark in zip(COLUMNS, line.split()[1:], strict=True)
}
ENDPOINTS = sorted({endpoint for endpoint, _ in MATRIX})


def test_the_expected_table_names_every_declared_endpoint_and_role() -> None:
    assert sorted(POLICY) == ENDPOINTS
    assert set(ROLES) == set(COLUMNS)
    assert len(MATRIX) == 17 * 5


@pytest.mark.parametrize(("endpoint", "role"), sorted(MATRIX))
def test_role_by_endpoint_matrix(endpoint: str, role: str) -> None:
    assert allows(role, endpoint) is MATRIX[endpoint, role]
    if MATRIX[endpoint, role]:
        authorize(role, endpoint)
        return
    with pytest.raises(AuthorizationError) as caught:
        authorize(role, endpoint)
    assert status_of(caught.value) == 403
    assert isinstance(caught.value, CoreError)
    message = str(caught.value)
    assert endpoint in message and repr(role) in message
    assert POLICY[endpoint].min_role in message  # names the role needed
    assert "\n" not in message


def test_human_roles_are_ordered_and_each_includes_the_ones_below() -> None:
    assert HUMAN_ROLES == ("viewer", "operator", "engineer", "admin")
    for endpoint in ENDPOINTS:
        granted = [MATRIX[endpoint, role] for role in HUMAN_ROLES]
        assert granted == sorted(granted), endpoint  # once allowed, every higher role is allowed too


@pytest.mark.parametrize("role", ["", "root", "Admin", "ADMIN", " admin", "admin ", "superuser", "viewer,admin"])
def test_unknown_roles_are_refused_everywhere(role: str) -> None:
    assert not is_role(role)
    for endpoint in ENDPOINTS:
        assert not allows(role, endpoint)
        with pytest.raises(AuthorizationError) as caught:
            authorize(role, endpoint)
        assert "not an IronLayer role" in str(caught.value)


def test_an_undeclared_endpoint_is_a_programming_error_not_a_refusal() -> None:
    with pytest.raises(ValueError, match="not declared"):
        authorize("admin", "drop_everything")
    with pytest.raises(ValueError, match="not declared"):
        allows("viewer", "")


def test_the_policy_table_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        POLICY["manage_settings"] = POLICY["health"]  # type: ignore[index]  # proving the mapping is read-only


@pytest.mark.parametrize(
    ("approver_login", "author", "allow_self", "refused"),
    [
        ("alice", "bob", False, False),
        ("alice", "alice", False, True),
        ("alice", "Alice", False, True),  # case-insensitive, as GitHub logins are
        ("alice", " ALICE ", False, True),  # surrounding whitespace does not hide the pusher
        ("alice", "alice", True, False),  # the tenant allows self-approval
        ("alice", "", False, False),  # no human pusher (scheduled runs): any registered identity may approve
        (None, "bob", False, True),  # no GitHub login mapped: cannot be told apart from the pusher, fail closed
        (None, "bob", True, False),
        (None, "", False, False),
        ("alice", "alice2", False, False),
        ("alice-2", "alice", False, False),
    ],
)
def test_separation_of_duties_compares_github_logins(approver_login: str | None, author: str, allow_self: bool,
                                                     refused: bool) -> None:
    if not refused:
        check_separation("api/someone", approver_login, author, allow_self_approval=allow_self)
        return
    with pytest.raises(AuthorizationError) as caught:
        check_separation("api/someone", approver_login, author, allow_self_approval=allow_self)
    assert status_of(caught.value) == 403
    assert "api/someone" in str(caught.value) and "pushed this change" in str(caught.value)


@pytest.mark.parametrize(
    ("role", "cap", "expected"),
    [
        ("admin", "operator", "operator"), ("operator", "admin", "operator"), ("viewer", "admin", "viewer"),
        ("engineer", None, "engineer"), ("admin", "service", ""), ("root", None, ""), ("admin", "root", ""),
    ],
)
def test_a_decision_gets_the_lower_of_the_registered_and_the_token_role(role: str, cap: str | None,
                                                                         expected: str) -> None:
    assert lower_role(role, cap) == expected
