"""Who decides: the identities a tenant registers, and the principal App Service Authentication passes in.

A decision on a plan needs an identity the tenant registered (`identities` table): one row per way a
person signs in, keyed by `(provider, subject)`:

- `api`: the subject (`sub`) of an API access token (jwt or oidc mode, see `tokens.py`);
- `appservice:<idp>`: a principal signed in through Azure App Service Authentication ("Easy Auth"), by the
  stable ID the platform passes in `X-MS-CLIENT-PRINCIPAL-ID` (for Entra ID, the object ID), never by a
  display name.

Each row carries the tenant's role for that identity and, optionally, its GitHub login: separation of
duties compares that login with the pusher's (`roles.check_separation`), so two rows of one person
(API and App Service) are the same person to it. The headers are trusted only when the deployment says
App Service Authentication is enabled (IRONLAYER_APP_SERVICE_AUTH): the platform then strips any a
client sends and sets them itself; otherwise anyone could send them, and they are ignored.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared_core.core.errors import AuthenticationError, InputError
from shared_core.security.roles import HUMAN_ROLES

API = "api"
APP_SERVICE = "appservice"
PRINCIPAL_HEADER = "x-ms-client-principal"
PRINCIPAL_ID_HEADER = "x-ms-client-principal-id"
PRINCIPAL_NAME_HEADER = "x-ms-client-principal-name"
PRINCIPAL_IDP_HEADER = "x-ms-client-principal-idp"
MAX_PRINCIPAL_CHARS = 16 * 1024
MAX_SUBJECT_CHARS = 200

_PROVIDER = re.compile(r"^(api|appservice:[a-z0-9_.-]{1,40})$")
_IDP = re.compile(r"^[a-z0-9_.-]{1,40}$")
_LOGIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38})$")
# Claims that name a principal stably (object ID first: display names and e-mails can change hands).
_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid",
              "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier", "sub")


@dataclass(frozen=True)
class ExternalPrincipal:
    """A signed-in caller as an identity key: `(provider, subject)`, and a name to show."""

    provider: str
    subject: str
    name: str


def check_provider(provider: str) -> str:
    """`provider` if it is `api` or `appservice:<idp>`; else InputError.

    >>> check_provider("appservice:aad")
    'appservice:aad'
    """
    if not _PROVIDER.fullmatch(provider):
        raise InputError(f"provider {provider[:60]!r} must be 'api' or 'appservice:<idp>', e.g. appservice:aad")
    return provider


def check_subject(subject: str) -> str:
    """`subject` if it is 1-200 printable characters without surrounding spaces; else InputError."""
    if not subject or len(subject) > MAX_SUBJECT_CHARS or subject != subject.strip() or not subject.isprintable():
        raise InputError(f"subject must be 1-{MAX_SUBJECT_CHARS} printable characters without surrounding spaces")
    return subject


def check_role(role: str) -> str:
    """`role` if it is a human role (viewer, operator, engineer, admin); else InputError."""
    if role not in HUMAN_ROLES:
        raise InputError(f"role {role[:40]!r} must be one of {', '.join(HUMAN_ROLES)}")
    return role


def normalize_login(login: str | None) -> str | None:
    """A GitHub login, lower-cased (GitHub compares them case-insensitively), or None for none.

    >>> normalize_login("OctoCat"), normalize_login(""), normalize_login(None)
    ('octocat', None, None)
    """
    if login is None or not login.strip():
        return None
    value = login.strip().lower()
    if not _LOGIN.fullmatch(value) or value.endswith("-") or "--" in value:
        raise InputError(f"GitHub login {login[:60]!r} is not a GitHub login (letters, digits, single hyphens)")
    return value


def app_service_principal(headers: Mapping[str, str]) -> ExternalPrincipal | None:
    """The App Service Authentication principal of a request, or None when it carries none.

    Call it only when App Service Authentication is enabled for the app (see the module docstring).
    The subject is `X-MS-CLIENT-PRINCIPAL-ID`, or else the principal's object-ID (or name-identifier)
    claim; when both are present they must agree.

    Args:
        headers: the request headers, names lower-cased.

    Raises:
        AuthenticationError: the principal header is present but malformed, or names no stable subject.

    >>> import base64, json
    >>> raw = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles",
    ...        "claims": [{"typ": "oid", "val": "0b4f-11"}, {"typ": "name", "val": "Ann"}]}
    >>> encoded = base64.b64encode(json.dumps(raw).encode()).decode()
    >>> principal = app_service_principal({"x-ms-client-principal": encoded})
    >>> principal.provider, principal.subject, principal.name
    ('appservice:aad', '0b4f-11', 'Ann')
    """
    encoded = headers.get(PRINCIPAL_HEADER, "").strip()
    if not encoded:
        return None
    document = _decode_principal(encoded)
    idp = str(document.get("auth_typ", "")).strip().lower()
    if not _IDP.fullmatch(idp):
        raise _malformed("its auth_typ is missing or not a provider name")
    claims = _claims(document)
    claimed = next((claims[typ] for typ in _ID_CLAIMS if claims.get(typ)), "")
    subject = headers.get(PRINCIPAL_ID_HEADER, "").strip() or claimed
    if not subject:
        raise _malformed("it names no stable ID (X-MS-CLIENT-PRINCIPAL-ID or an object-ID claim)")
    if claimed and headers.get(PRINCIPAL_ID_HEADER, "").strip() and claimed != subject:
        raise _malformed("X-MS-CLIENT-PRINCIPAL-ID does not match the principal's ID claim")
    name_claim = str(document.get("name_typ") or "")
    name = headers.get(PRINCIPAL_NAME_HEADER, "").strip() or claims.get(name_claim, "") or subject
    try:
        return ExternalPrincipal(f"{APP_SERVICE}:{idp}", check_subject(subject), name[:MAX_SUBJECT_CHARS])
    except InputError:
        raise _malformed("its ID is not 1-200 printable characters") from None


def _decode_principal(encoded: str) -> dict[str, object]:
    if len(encoded) > MAX_PRINCIPAL_CHARS:
        raise _malformed("it is too long")
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        document = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):
        raise _malformed("it is not base64-encoded JSON") from None
    if not isinstance(document, dict):
        raise _malformed("it is not a JSON object")
    return document


def _claims(document: Mapping[str, object]) -> dict[str, str]:
    """The principal's claims as `type -> first value` (claims after the first of a type are ignored)."""
    claims = document.get("claims", [])
    if not isinstance(claims, list):
        raise _malformed("its claims are not a list")
    found: dict[str, str] = {}
    for claim in claims:
        if isinstance(claim, dict) and isinstance(claim.get("typ"), str) and isinstance(claim.get("val"), str):
            found.setdefault(claim["typ"], claim["val"].strip())
    return found


def _malformed(why: str) -> AuthenticationError:
    return AuthenticationError(f"the App Service Authentication principal cannot be read: {why}; sign in again")
