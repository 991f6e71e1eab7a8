"""`ironlayer audit verify`, `ironlayer credentials set|list` and `ironlayer rotate-keys`.

Credentials are encrypted with the keys in IRONLAYER_CREDENTIAL_KEYS (comma-separated Fernet keys, the
newest first: it encrypts, every key decrypts). To rotate: put a new key first, run `rotate-keys` (every
credential is re-encrypted under it), then drop the old key. Values are read from standard input and
never printed or logged.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shared_core.cli._runtime import actor, settings, tenant, with_store
from shared_core.core.errors import CoreError
from shared_core.services.audit import record_audit, verify_audit

__all__ = ["COMMANDS", "add_commands", "cipher", "record_audit", "verify_audit"]

EXIT_OK, EXIT_FAILED = 0, 1


class SecurityCommandError(CoreError):
    """A security command cannot run as asked."""


def add_commands(commands: Any) -> None:
    audit = commands.add_parser("audit", help="the tenant's tamper-evident audit log")
    audit.add_argument("action", choices=["verify", "show"])
    credentials = commands.add_parser("credentials", help="encrypted credentials (Databricks, GitHub, ...)")
    credentials.add_argument("action", choices=["set", "list"])
    credentials.add_argument("name", nargs="?", help="credential name, e.g. databricks_token (for set)")
    commands.add_parser("rotate-keys", help="re-encrypt every credential under the first IRONLAYER_CREDENTIAL_KEYS key")


def cipher() -> Any:
    from shared_core.security.cipher import CredentialCipher, parse_key_list

    keys = settings().credential_keys
    if not keys:
        raise SecurityCommandError(
            "IRONLAYER_CREDENTIAL_KEYS is not set; generate a key with `python -c 'from cryptography.fernet "
            "import Fernet; print(Fernet.generate_key().decode())'`"
        )
    return CredentialCipher(parse_key_list(keys))


def cmd_audit(args: argparse.Namespace) -> int:
    if args.action == "verify":
        report = with_store(lambda store: verify_audit(store, tenant()))
        if report.ok:
            print(f"ok: the audit chain of tenant {tenant()} is intact ({report.checked} entries)")
            return EXIT_OK
        print(f"error: audit chain of tenant {tenant()} broken at entry {report.first_broken_seq}: {report.reason}",
              file=sys.stderr)
        return EXIT_FAILED
    rows, _ = with_store(lambda store: store.audit_rows(tenant()))
    for row in rows:
        print(f"{row['seq']:>6}  {row['at']:%Y-%m-%d %H:%M:%S}Z  {row['actor']} ({row['role']})  {row['action']}"
              f"  {row['target']}")
    return EXIT_OK


def cmd_credentials(args: argparse.Namespace) -> int:
    from shared_core.security.cipher import credential_name, redact

    if args.action == "list":
        names = with_store(lambda store: store.list_credentials(tenant()))
        for name, _ in names:
            print(name)
        return EXIT_OK
    if not args.name:
        raise SecurityCommandError("credentials set needs a NAME, e.g. `ironlayer credentials set databricks_token`")
    value = sys.stdin.readline().rstrip("\n")
    if not value:
        raise SecurityCommandError("no value on standard input; pipe it in, e.g. `printf %s \"$TOKEN\" | ...`")
    box = cipher()
    token = box.encrypt(credential_name(tenant(), args.name), value)

    async def store_it(store: Any) -> None:
        await store.set_credential(tenant(), args.name, token)
        await record_audit(store, tenant(), actor=actor(), role="admin", action="credential.set",
                           target=args.name, details={"value": redact(value)})

    with_store(store_it)
    print(f"stored credential {args.name} for tenant {tenant()} (encrypted)")
    return EXIT_OK


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    from shared_core.security.cipher import credential_name

    box = cipher()

    async def rotate(store: Any) -> int:
        rotated = 0
        for name, token in await store.list_credentials(tenant()):
            if box.needs_rotation(token):
                await store.set_credential(tenant(), name, box.rotate(token, name=credential_name(tenant(), name)))
                rotated += 1
        await record_audit(store, tenant(), actor=actor(), role="admin", action="credential.rotated",
                           target="*", details={"rotated": rotated})
        return rotated

    count = with_store(rotate)
    print(f"re-encrypted {count} credential{'s' if count != 1 else ''} of tenant {tenant()} under the first key")
    return EXIT_OK


COMMANDS = {"audit": cmd_audit, "credentials": cmd_credentials, "rotate-keys": cmd_rotate_keys}
