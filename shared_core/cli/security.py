"""`ironlayer audit verify`, `ironlayer credentials set|list` and `ironlayer rotate-keys`.

Credentials are encrypted with the keys in IRONLAYER_CREDENTIAL_KEYS (comma-separated Fernet keys, the
newest first: it encrypts, every key decrypts). To rotate: put a new key first, run `rotate-keys` (every
credential is re-encrypted under it), then drop the old key. Values are read from standard input and
never printed or logged.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any

from shared_core.core.errors import CoreError

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

    keys = os.environ.get("IRONLAYER_CREDENTIAL_KEYS", "")
    if not keys:
        raise SecurityCommandError(
            "IRONLAYER_CREDENTIAL_KEYS is not set; generate a key with `python -c 'from cryptography.fernet "
            "import Fernet; print(Fernet.generate_key().decode())'`"
        )
    return CredentialCipher(parse_key_list(keys))


async def record_audit(store: Any, tenant_id: str, *, actor: str, role: str, action: str, target: str,
                       details: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Append one entry to the tenant's audit chain (the time never goes back past the chain's head)."""
    from dataclasses import replace

    from shared_core.security.audit import entry_from_row, entry_hash, entry_to_row, next_entry
    from shared_core.security.scrub import scrub_mapping

    moment = now or datetime.now(UTC)

    def build(previous_row: dict[str, Any] | None, head: str | None) -> dict[str, Any]:
        previous = entry_from_row(previous_row) if previous_row else None
        at = max(moment, previous.at) if previous else moment
        entry = next_entry(previous, tenant_id=tenant_id, at=at, actor=actor, role=role, action=action,
                           target=target, details=scrub_mapping(details))
        if head and entry.prev_hash != head:
            # The newest rows are gone (the head says so): chain to the head, so that the gap stays
            # visible to `verify_chain` instead of being papered over by this append.
            linked = replace(entry, prev_hash=head)
            entry = replace(linked, hash=entry_hash(linked))
        return entry_to_row(entry)

    row: dict[str, Any] = await store.append_audit(tenant_id, build)
    return row


async def verify_audit(store: Any, tenant_id: str) -> Any:
    """The `ChainReport` of the tenant's audit log, checked against the head kept on the tenant row."""
    from shared_core.security.audit import entry_from_row, verify_chain

    rows, head = await store.audit_rows(tenant_id)
    return verify_chain([entry_from_row(r) for r in rows], expected_head=head, tenant_id=tenant_id)


def cmd_audit(args: argparse.Namespace) -> int:
    from shared_core.cli.execution import tenant, with_store

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
    from shared_core.cli.execution import tenant, with_store
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
        await record_audit(store, tenant(), actor=_actor(), role="admin", action="credential.set",
                           target=args.name, details={"value": redact(value)})

    with_store(store_it)
    print(f"stored credential {args.name} for tenant {tenant()} (encrypted)")
    return EXIT_OK


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    from shared_core.cli.execution import tenant, with_store
    from shared_core.security.cipher import credential_name

    box = cipher()

    async def rotate(store: Any) -> int:
        rotated = 0
        for name, token in await store.list_credentials(tenant()):
            if box.needs_rotation(token):
                await store.set_credential(tenant(), name, box.rotate(token, name=credential_name(tenant(), name)))
                rotated += 1
        await record_audit(store, tenant(), actor=_actor(), role="admin", action="credential.rotated",
                           target="*", details={"rotated": rotated})
        return rotated

    count = with_store(rotate)
    print(f"re-encrypted {count} credential{'s' if count != 1 else ''} of tenant {tenant()} under the first key")
    return EXIT_OK


def _actor() -> str:
    return os.environ.get("IRONLAYER_ACTOR") or os.environ.get("USER") or "cli"


COMMANDS = {"audit": cmd_audit, "credentials": cmd_credentials, "rotate-keys": cmd_rotate_keys}
