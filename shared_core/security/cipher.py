"""Credentials at rest: Fernet encryption bound to the credential's name, with key rotation.

`CredentialCipher` wraps `cryptography.fernet.MultiFernet`: the first key encrypts, every key decrypts,
so keys rotate without downtime:

1. start with `[old]`;
2. deploy `[new, old]` (new credentials are written under `new`, old ones still read);
3. `rotate` every stored token (`ironlayer rotate-keys`; `needs_rotation` finds the ones left);
4. deploy `[new]`: every credential is still readable.

Fernet has no associated data, so the name is sealed inside the payload (`{"name", "value", "v"}`) and
checked on decryption: a ciphertext copied from one credential (or tenant) to another is refused. Bind
the tenant as well by naming credentials with `credential_name(tenant_id, name)`.

Fernet tokens carry their creation time and a random IV, so `encrypt` reads the clock and the OS's random
source; that is harmless (ciphertexts are never plan inputs), and `encrypt_at_time` pins the time for tests.
Nothing here logs, and no error message contains a key or a plaintext; `redact` is the only display form.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared_core.core.errors import CredentialError
from shared_core.core.project.models import canonical_json

PAYLOAD_VERSION = 1
MAX_NAME_CHARS = 200
REDACT_MIN_CHARS = 16  # shorter values show no characters at all: four would give away too much of them
GENERATE_KEY_HINT = (
    "generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)

_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")  # 32 bytes in url-safe base64, as Fernet.generate_key() writes them
_RETIRED = "wrong or retired key; add the old key back to the key list"


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 text) for the key list."""
    return Fernet.generate_key().decode("ascii")


def parse_key_list(text: str) -> list[str]:
    """Split a setting such as `IRONLAYER_CREDENTIAL_KEYS="new,old"` into keys, newest first.

    Commas and whitespace separate keys (neither occurs in a Fernet key).

    >>> parse_key_list(" k1, k2\\n")
    ['k1', 'k2']
    """
    return [part for part in re.split(r"[\s,]+", text) if part]


def credential_name(tenant_id: str, name: str) -> str:
    """The name to bind a tenant's credential to, so a ciphertext cannot move between tenants either.

    >>> credential_name("acme", "databricks_token")
    'acme/databricks_token'
    """
    return f"{tenant_id}/{name}"


def redact(value: str) -> str:
    """The display form of a secret: `****` and, for values of 16+ characters, their last 4.

    >>> redact("dapi0123456789abcdef")
    '****cdef'
    >>> redact("short")
    '****'
    """
    return "****" + value[-4:] if len(value) >= REDACT_MIN_CHARS else "****"


class CredentialCipher:
    """Encrypt and decrypt named credentials under an ordered key list (first encrypts, all decrypt)."""

    def __init__(self, keys: Sequence[str]) -> None:
        """Validate the keys and build the ciphers.

        Raises:
            CredentialError: no keys, a key that is not a Fernet key (named by position, never shown),
                or the same key listed twice.
        """
        if isinstance(keys, str | bytes):
            raise CredentialError(
                "give the credential keys as a list (newest first); split a setting with parse_key_list"
            )
        if not keys:
            raise CredentialError(f"the credential key list is empty; {GENERATE_KEY_HINT}")
        seen: dict[bytes, int] = {}
        fernets: list[Fernet] = []
        for position, key in enumerate(keys, start=1):
            raw = _decode_key(key, position, len(keys))
            if raw in seen:
                raise CredentialError(
                    f"credential keys #{seen[raw]} and #{position} of {len(keys)} are the same key; list each key once"
                )
            seen[raw] = position
            fernets.append(Fernet(base64.urlsafe_b64encode(raw)))
        self._first = fernets[0]
        self._multi = MultiFernet(fernets)
        self._count = len(fernets)

    def __repr__(self) -> str:
        return f"CredentialCipher(<{self._count} key(s)>)"

    def encrypt(self, name: str, plaintext: str) -> str:
        """A Fernet token (text) of `plaintext` bound to `name`, under the first key, stamped with now."""
        return self._multi.encrypt(_payload(name, plaintext)).decode("ascii")

    def encrypt_at_time(self, name: str, plaintext: str, at: datetime) -> str:
        """`encrypt` with the token's timestamp taken from `at` (whole seconds) instead of the clock."""
        if at.tzinfo is None:
            raise ValueError(f"at={at.isoformat()} has no time zone; pass an aware UTC datetime")
        return self._multi.encrypt_at_time(_payload(name, plaintext), int(at.timestamp())).decode("ascii")

    def decrypt(self, name: str, token: str) -> str:
        """The plaintext of `token`, which must have been encrypted for `name`.

        Raises:
            CredentialError: no key in the list opens the token (wrong or retired key, or an altered
                token), or it was encrypted for another credential.
        """
        _check_name(name)
        return self._open(token, name)

    def rotate(self, token: str, *, name: str | None = None) -> str:
        """`token` re-encrypted under the first key, same name binding and timestamp.

        Args:
            token: a stored token (under any key of the list).
            name: when given, the token must belong to this credential (and errors name it).

        Raises:
            CredentialError: as `decrypt`.
        """
        self._open(token, name)
        try:
            return self._multi.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:  # unreachable after _open succeeded; kept so no library error escapes
            raise CredentialError(_cannot_decrypt(name)) from None

    def needs_rotation(self, token: str) -> bool:
        """True when `token` opens under some key of the list but not under the first.

        Raises:
            CredentialError: no key of the list opens it.
        """
        data = _token_bytes(token, None)
        try:
            self._first.extract_timestamp(data)  # checks the token's HMAC under the first key
        except InvalidToken:
            try:
                self._multi.extract_timestamp(data)
            except InvalidToken:
                raise CredentialError(_cannot_decrypt(None)) from None
            return True
        return False

    def _open(self, token: str, name: str | None) -> str:
        if name is not None:
            _check_name(name)
        data = _token_bytes(token, name)
        try:
            payload = self._multi.decrypt(data)
        except InvalidToken:
            raise CredentialError(_cannot_decrypt(name)) from None
        try:
            content = json.loads(payload)
        except ValueError:
            content = None
        if (
            not isinstance(content, dict)
            or set(content) != {"name", "v", "value"}
            or content["v"] != PAYLOAD_VERSION
            or not isinstance(content["name"], str)
            or not isinstance(content["value"], str)
        ):
            raise CredentialError(f"credential {_label(name)} decrypts to an unknown payload; store it again")
        if name is not None and content["name"] != name:
            raise CredentialError(
                f"the token presented as credential {name!r} was encrypted for another credential; "
                "refusing it (ciphertexts are bound to their name): store the credential again"
            )
        value: str = content["value"]
        return value


def _decode_key(key: object, position: int, count: int) -> bytes:
    where = f"credential key #{position} of {count}"
    if not isinstance(key, str) or not _KEY.fullmatch(key.strip()):
        raise CredentialError(
            f"{where} is not a Fernet key (44 characters of url-safe base64 encoding 32 bytes); {GENERATE_KEY_HINT}"
        )
    try:
        return base64.urlsafe_b64decode(key.strip())
    except (binascii.Error, ValueError):  # the pattern already rules this out
        raise CredentialError(f"{where} is not valid url-safe base64; {GENERATE_KEY_HINT}") from None


def _payload(name: str, plaintext: str) -> bytes:
    _check_name(name)
    if not isinstance(plaintext, str):
        raise CredentialError(f"credential {name!r}: the value to encrypt must be text")
    return canonical_json({"name": name, "v": PAYLOAD_VERSION, "value": plaintext}).encode("utf-8")


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise CredentialError(f"credential name {str(name)[:80]!r} must be 1-{MAX_NAME_CHARS} printable characters")


def _token_bytes(token: object, name: str | None) -> bytes:
    if not isinstance(token, str) or not token.isascii():
        raise CredentialError(f"credential {_label(name)}: the stored token is not Fernet text; store it again")
    return token.encode("ascii")


def _label(name: str | None) -> str:
    return repr(name) if name is not None else "(unnamed)"


def _cannot_decrypt(name: str | None) -> str:
    return f"cannot decrypt credential {_label(name)}: {_RETIRED} (or the stored token was altered)"
