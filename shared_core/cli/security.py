"""`ironlayer audit verify|show`, `ironlayer credentials set|list` and `ironlayer rotate-keys`.

Credentials are encrypted with the keys in IRONLAYER_CREDENTIAL_KEYS (comma-separated Fernet keys, the
newest first: it encrypts, every key decrypts). To rotate: put a new key first, run `rotate-keys` (every
credential is re-encrypted under it), then drop the old key. Values are read from standard input and
never printed or logged. The work is done by `shared_core.services.audit` and `.credentials`.
"""

from __future__ import annotations

import argparse
import sys

from shared_core.cli._runtime import CommandParsers, actor, settings, tenant, with_store
from shared_core.core.errors import SecurityCommandError
from shared_core.services.audit import list_audit, verify_audit
from shared_core.services.credentials import credential_cipher, credential_names, rotate_credentials, set_credential

EXIT_OK, EXIT_FAILED = 0, 1


def add_commands(commands: CommandParsers) -> None:
    """Register the security commands on the `ironlayer` sub-command parser."""
    audit = commands.add_parser("audit", help="the tenant's tamper-evident audit log")
    audit.add_argument("action", choices=["verify", "show"])
    credentials = commands.add_parser("credentials", help="encrypted credentials (Databricks, GitHub, ...)")
    credentials.add_argument("action", choices=["set", "list"])
    credentials.add_argument("name", nargs="?", help="credential name, e.g. databricks_token (for set)")
    commands.add_parser("rotate-keys", help="re-encrypt every credential under the first IRONLAYER_CREDENTIAL_KEYS key")


def cmd_audit(args: argparse.Namespace) -> int:
    """Verify the tenant's audit chain (exit 1 when broken), or list its entries."""
    if args.action == "verify":
        report = with_store(lambda store: verify_audit(store, tenant()))
        if report.ok:
            print(f"ok: the audit chain of tenant {tenant()} is intact ({report.checked} entries)")
            return EXIT_OK
        print(f"error: audit chain of tenant {tenant()} broken at entry {report.first_broken_seq}: {report.reason}",
              file=sys.stderr)
        return EXIT_FAILED
    rows = with_store(lambda store: list_audit(store, tenant()))
    for row in rows:
        print(f"{row['seq']:>6}  {row['at']:%Y-%m-%d %H:%M:%S}Z  {row['actor']} ({row['role']})  {row['action']}"
              f"  {row['target']}")
    return EXIT_OK


def cmd_credentials(args: argparse.Namespace) -> int:
    """List the tenant's credential names, or store one read from standard input."""
    if args.action == "list":
        for name in with_store(lambda store: credential_names(store, tenant())):
            print(name)
        return EXIT_OK
    if not args.name:
        raise SecurityCommandError("credentials set needs a NAME, e.g. `ironlayer credentials set databricks_token`")
    value = sys.stdin.readline().rstrip("\n")
    if not value:
        raise SecurityCommandError("no value on standard input; pipe it in, e.g. `printf %s \"$TOKEN\" | ...`")
    cipher = credential_cipher(settings().credential_keys)
    with_store(lambda store: set_credential(store, tenant(), args.name, value, cipher=cipher, actor=actor(),
                                            role="admin"))
    print(f"stored credential {args.name} for tenant {tenant()} (encrypted)")
    return EXIT_OK


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    """Re-encrypt every credential of the tenant under the first key of IRONLAYER_CREDENTIAL_KEYS."""
    cipher = credential_cipher(settings().credential_keys)
    count = with_store(lambda store: rotate_credentials(store, tenant(), cipher=cipher, actor=actor(),
                                                        role="admin"))
    print(f"re-encrypted {count} credential{'s' if count != 1 else ''} of tenant {tenant()} under the first key")
    return EXIT_OK


COMMANDS = {"audit": cmd_audit, "credentials": cmd_credentials, "rotate-keys": cmd_rotate_keys}
