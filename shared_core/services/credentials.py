"""Credentials of a tenant: store one encrypted, list their names, re-encrypt them all under the newest key.

Used by `ironlayer credentials|rotate-keys` and `PUT /api/credentials/{name}`. Values are encrypted with
the deployment's key list (IRONLAYER_CREDENTIAL_KEYS, newest first; see `shared_core.security.cipher`)
and bound to `tenant/name`, so a ciphertext cannot move between credentials or tenants. Every change is
audited with the value redacted; values are never returned, printed or logged.
"""

from __future__ import annotations

from datetime import datetime

from shared_core.core.errors import SettingsError
from shared_core.ports import SecurityStore
from shared_core.security.cipher import GENERATE_KEY_HINT, CredentialCipher, credential_name, parse_key_list, redact
from shared_core.services.audit import record_audit


def credential_cipher(keys: str) -> CredentialCipher:
    """The cipher over the configured key list (the text of IRONLAYER_CREDENTIAL_KEYS).

    Raises:
        SettingsError: no key is configured (the deployment's fault, not the caller's).
        CredentialError: a key is not a Fernet key, or one is listed twice.
    """
    parsed = parse_key_list(keys)
    if not parsed:
        raise SettingsError(f"IRONLAYER_CREDENTIAL_KEYS is not set; {GENERATE_KEY_HINT}")
    return CredentialCipher(parsed)


async def set_credential(store: SecurityStore, tenant_id: str, name: str, value: str, *, cipher: CredentialCipher,
                         actor: str, role: str, now: datetime | None = None) -> str:
    """Encrypt `value` under the newest key, store it as the tenant's credential `name`, and audit it.

    Args:
        store: the state store.
        tenant_id: whose credential.
        name: the credential's name, e.g. `databricks_token`.
        value: the secret; never returned, printed or logged.
        cipher: from `credential_cipher` (built before any I/O, so a missing key fails first).
        actor, role: who stores it, for the audit entry.
        now: the audit entry's time (the current time when not given).

    Returns:
        The redacted display form of the value (`****` and at most its last 4 characters).

    Raises:
        CredentialError: the name is invalid.
    """
    token = cipher.encrypt(credential_name(tenant_id, name), value)
    await store.set_credential(tenant_id, name, token)
    shown = redact(value)
    await record_audit(store, tenant_id, actor=actor, role=role, action="credential.set", target=name,
                       details={"value": shown}, now=now)
    return shown


async def credential_names(store: SecurityStore, tenant_id: str) -> list[str]:
    """The names of the tenant's credentials, sorted (never their values)."""
    return [name for name, _ in await store.list_credentials(tenant_id)]


async def rotate_credentials(store: SecurityStore, tenant_id: str, *, cipher: CredentialCipher, actor: str,
                             role: str, now: datetime | None = None) -> int:
    """Re-encrypt every credential of the tenant not yet under the newest key, and audit it; returns how many.

    Raises:
        CredentialError: a credential cannot be decrypted with any listed key (add the old key back).
    """
    rotated = 0
    for name, token in await store.list_credentials(tenant_id):
        if cipher.needs_rotation(token):
            await store.set_credential(tenant_id, name, cipher.rotate(token, name=credential_name(tenant_id, name)))
            rotated += 1
    await record_audit(store, tenant_id, actor=actor, role=role, action="credential.rotated", target="*",
                       details={"rotated": rotated}, now=now)
    return rotated
