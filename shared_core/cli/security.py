"""`ironlayer audit verify|show`, `ironlayer credentials set|list`, `ironlayer rotate-keys` and `ironlayer identities`.

Credentials are encrypted with the keys in IRONLAYER_CREDENTIAL_KEYS (comma-separated Fernet keys, the
newest first: it encrypts, every key decrypts). To rotate: put a new key first, run `rotate-keys` (every
credential is re-encrypted under it), then drop the old key. Values are read from standard input and
never printed or logged. `identities set|remove|list` manages who may decide plans (an API token subject,
or an App Service Authentication principal by its ID), with the tenant's role and GitHub login for each.
The work is done by `shared_core.services.audit`, `.credentials` and `.identities`.
"""

from __future__ import annotations

import argparse
import json
import sys

from shared_core.cli._runtime import CommandParsers, actor, examples, settings, tenant, with_store
from shared_core.core.errors import SecurityCommandError
from shared_core.core.wording import plural
from shared_core.security.audit import format_at
from shared_core.services.audit import list_audit, verify_audit
from shared_core.services.credentials import credential_cipher, credential_names, rotate_credentials, set_credential
from shared_core.services.identities import list_identities, remove_identity, set_identity

EXIT_OK, EXIT_FAILED = 0, 1


def add_commands(commands: CommandParsers) -> None:
    """Register the security commands on the `ironlayer` sub-command parser."""
    audit = commands.add_parser("audit", help="the tenant's tamper-evident audit log",
                                epilog=examples("ironlayer audit verify", "ironlayer audit show --json"))
    audit.add_argument("action", choices=["verify", "show"])
    audit.add_argument("repo", nargs="?", help="the project (a git repository) whose local state to read "
                       "(default: the current directory's)")
    audit.add_argument("--json", action="store_true", help="print the result (or the entries) as JSON")
    credentials = commands.add_parser(
        "credentials", help="encrypted credentials (Databricks, GitHub, ...)",
        epilog=examples('printf %s "$DATABRICKS_TOKEN" | ironlayer credentials set databricks_token',
                        "ironlayer credentials list"))
    credentials.add_argument("action", choices=["set", "list"])
    credentials.add_argument("name", nargs="?", help="credential name, e.g. databricks_token (for set)")
    commands.add_parser("rotate-keys", help="re-encrypt every credential under the first IRONLAYER_CREDENTIAL_KEYS key",
                        epilog=examples('IRONLAYER_CREDENTIAL_KEYS="$NEW_KEY,$OLD_KEY" ironlayer rotate-keys'))
    identities = commands.add_parser(
        "identities", help="who may decide plans: identities, roles, GitHub logins",
        epilog=examples("ironlayer identities set api alice --role operator --github-login alice-gh",
                        "ironlayer identities list"))
    identities.add_argument("action", choices=["set", "remove", "list"])
    identities.add_argument("provider", nargs="?", help="api (an API token's sub) or appservice:<idp>, e.g. "
                            "appservice:aad (an App Service Authentication principal)")
    identities.add_argument("subject", nargs="?", help="the token's sub, or the principal's X-MS-CLIENT-PRINCIPAL-ID")
    identities.add_argument("--role", help="viewer, operator, engineer or admin (for set)")
    identities.add_argument("--github-login", help="the person's GitHub login: separation of duties compares it")
    identities.add_argument("--name", default="", help="a display name (shown, never compared)")


def cmd_audit(args: argparse.Namespace) -> int:
    """Verify the tenant's audit chain (exit 1 when broken), or list its entries."""
    if args.action == "verify":
        report = with_store(lambda store: verify_audit(store, tenant()))
        if args.json:
            print(json.dumps({"tenant": tenant(), **report.to_dict()}, indent=2, sort_keys=True))
            return EXIT_OK if report.ok else EXIT_FAILED
        if report.ok:
            print(f"ok: the audit chain of tenant {tenant()} is intact ({plural(report.checked, 'entry')})")
            return EXIT_OK
        print(f"error: audit chain of tenant {tenant()} broken at entry {report.first_broken_seq}: {report.reason}",
              file=sys.stderr)
        return EXIT_FAILED
    rows = with_store(lambda store: list_audit(store, tenant()))
    if args.json:
        print(json.dumps([{**row, "at": format_at(row["at"])} for row in rows], indent=2, sort_keys=True))
        return EXIT_OK
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
    print(f"re-encrypted {plural(count, 'credential')} of tenant {tenant()} under the first key")
    return EXIT_OK


def cmd_identities(args: argparse.Namespace) -> int:
    """Register, change, remove or list the identities that may decide the tenant's plans (audited)."""
    if args.action == "list":
        for row in with_store(lambda store: list_identities(store, tenant())):
            login = row["github_login"] or "-"
            print(f"{row['provider']}/{row['subject']}  {row['role']}  github:{login}  {row['name']}".rstrip())
        return EXIT_OK
    if not args.provider or not args.subject:
        raise SecurityCommandError(f"identities {args.action} needs PROVIDER and SUBJECT, e.g. "
                                   "`ironlayer identities set api ann --role operator --github-login ann`")
    if args.action == "remove":
        with_store(lambda store: remove_identity(store, tenant(), provider=args.provider, subject=args.subject,
                                                 actor=actor(), actor_role="admin"))
        print(f"removed identity {args.provider}/{args.subject} of tenant {tenant()}")
        return EXIT_OK
    if not args.role:
        raise SecurityCommandError("identities set needs --role (viewer, operator, engineer or admin)")
    row = with_store(lambda store: set_identity(store, tenant(), provider=args.provider, subject=args.subject,
                                                role=args.role, github_login=args.github_login, name=args.name,
                                                actor=actor(), actor_role="admin"))
    print(f"identity {row['provider']}/{row['subject']} of tenant {tenant()}: role {row['role']}, "
          f"GitHub login {row['github_login'] or '(none: it may not approve pushed changes)'}")
    return EXIT_OK


COMMANDS = {"audit": cmd_audit, "credentials": cmd_credentials, "rotate-keys": cmd_rotate_keys,
            "identities": cmd_identities}
