"""Who decides: the App Service Authentication principal read from its headers, and identity fields checked."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.http.errors import status_of
from shared_core.core.errors import AuthenticationError, InputError
from shared_core.security.identities import (
    app_service_principal,
    check_provider,
    check_role,
    check_subject,
    normalize_login,
)

OID = "http://schemas.microsoft.com/identity/claims/objectidentifier"


def encoded(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def principal(**fields: Any) -> dict[str, Any]:
    document = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles",
                "claims": [{"typ": OID, "val": "oid-1"}, {"typ": "name", "val": "Ann Example"}]}
    document.update(fields)
    return document


def test_the_principal_is_its_provider_and_its_stable_id_never_its_name() -> None:
    found = app_service_principal({"x-ms-client-principal": encoded(principal()), "x-ms-client-principal-id": "oid-1",
                                   "x-ms-client-principal-name": "ann@example.com"})
    assert found is not None
    assert (found.provider, found.subject, found.name) == ("appservice:aad", "oid-1", "ann@example.com")
    github = app_service_principal({"x-ms-client-principal": encoded(principal(
        auth_typ="GitHub", claims=[{"typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
                                    "val": "583231"}, {"typ": "name", "val": "octocat"}]))})
    assert github is not None and (github.provider, github.subject, github.name) == ("appservice:github", "583231",
                                                                                     "octocat")
    unpadded = encoded(principal()).rstrip("=")
    assert app_service_principal({"x-ms-client-principal": unpadded}) == app_service_principal(
        {"x-ms-client-principal": encoded(principal())})


def test_no_principal_header_is_no_principal() -> None:
    assert app_service_principal({}) is None
    assert app_service_principal({"x-ms-client-principal": "  ", "x-ms-client-principal-id": "oid-1"}) is None


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"x-ms-client-principal": "%%%"}, "not base64-encoded JSON"),
        ({"x-ms-client-principal": encoded([1, 2])}, "not a JSON object"),
        ({"x-ms-client-principal": encoded(principal(auth_typ=""))}, "auth_typ"),
        ({"x-ms-client-principal": encoded(principal(auth_typ="a/b"))}, "auth_typ"),
        ({"x-ms-client-principal": encoded(principal(claims={"typ": "oid"}))}, "claims are not a list"),
        ({"x-ms-client-principal": encoded(principal(claims=[]))}, "names no stable ID"),
        ({"x-ms-client-principal": encoded(principal()), "x-ms-client-principal-id": "oid-2"}, "does not match"),
        ({"x-ms-client-principal": encoded(principal(claims=[{"typ": OID, "val": "x" * 201}]))}, "printable"),
        ({"x-ms-client-principal": "A" * (16 * 1024 + 1)}, "too long"),
    ],
)
def test_a_malformed_principal_is_refused_with_401(headers: dict[str, str], why: str) -> None:
    with pytest.raises(AuthenticationError) as caught:
        app_service_principal(headers)
    assert why in str(caught.value) and status_of(caught.value) == 401


@given(st.text(max_size=300))
def test_any_principal_header_is_a_principal_or_a_401_never_a_crash(value: str) -> None:
    with contextlib.suppress(AuthenticationError):
        app_service_principal({"x-ms-client-principal": value})


@pytest.mark.parametrize(("login", "expected"), [("OctoCat", "octocat"), (" ann ", "ann"), ("a-b-9", "a-b-9"),
                                                 ("", None), (None, None)])
def test_github_logins_are_lower_cased(login: str | None, expected: str | None) -> None:
    assert normalize_login(login) == expected


@pytest.mark.parametrize("login", ["-ann", "ann-", "a--b", "a_b", "a" * 40, "ann smith", "ann@example.com"])
def test_what_is_not_a_github_login_is_refused(login: str) -> None:
    with pytest.raises(InputError, match="not a GitHub login"):
        normalize_login(login)


def test_identity_fields_are_checked() -> None:
    assert check_provider("api") == "api" and check_provider("appservice:aad") == "appservice:aad"
    assert check_subject("0b4f-11") == "0b4f-11" and check_role("operator") == "operator"
    for bad in ("API", "appservice:", "appservice:AAD", "ldap", "appservice:a/b"):
        with pytest.raises(InputError, match="provider"):
            check_provider(bad)
    for bad in ("", " x", "x ", "a\nb", "x" * 201):
        with pytest.raises(InputError, match="subject"):
            check_subject(bad)
    for bad in ("service", "root", "Operator"):
        with pytest.raises(InputError, match="role"):
            check_role(bad)
