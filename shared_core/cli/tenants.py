"""`ironlayer tenants add|list` and `ironlayer repositories map|show`: onboard tenants and their repositories.

A job of a repository runs only with the resources its settings name (git source and token credential,
engine and warehouse, blob prefix, branches, commit-status target); see `shared_core.services.tenancy`.
These commands are the deployment operator's: they reach the state store directly, may map a repository
to any tenant, and are audited in that tenant's log. Settings given to `repositories map` replace the
stored ones whole (an option left out takes its default). Tokens are never given here: name the
credential that holds one, and store it with `IRONLAYER_TENANT=<tenant> ironlayer credentials set NAME`.
With IRONLAYER_ENVIRONMENT=production the commands refuse what keeps state on a worker's disk (a local
source, a DuckDB file); the app checks stored settings again by its own, stricter rule when it uses them.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from shared_core.cli._runtime import CommandParsers, actor, examples, settings, with_store

if TYPE_CHECKING:
    from shared_core.core.repository_settings import RepositorySettings
    from shared_core.core.state import RepositorySettingsRow
    from shared_core.ports import StateStore
    from shared_core.services.tenancy import Onboarded

EXIT_OK = 0


def add_commands(commands: CommandParsers) -> None:
    tenants = commands.add_parser("tenants", help="onboard tenants (the deployment operator's command)",
                                  epilog=examples("ironlayer tenants add acme --repository acme/models",
                                                  "ironlayer tenants list"))
    actions = tenants.add_subparsers(dest="tenants_action", required=True)
    add = actions.add_parser("add", help="create a tenant, map its repository and store the repository's settings")
    add.add_argument("tenant", help="tenant id: lower-case letters, digits, '-' and '_'")
    add.add_argument("--name", default="", help="display name (default: the tenant id)")
    add.add_argument("--repository", required=True, help="the GitHub repository owner/name whose pushes it plans")
    _settings_options(add)
    actions.add_parser("list", help="every tenant with its mapped repositories")

    repositories = commands.add_parser(
        "repositories", help="map repositories to tenants and show their settings",
        epilog=examples("ironlayer repositories map acme/models --tenant acme --branches main,release",
                        "ironlayer repositories show acme/models --json"))
    verbs = repositories.add_subparsers(dest="repositories_action", required=True)
    mapping = verbs.add_parser("map", help="map a repository to an existing tenant and store (replace) its settings")
    mapping.add_argument("repository", help="owner/name")
    mapping.add_argument("--tenant", required=True, help="the tenant it belongs to")
    _settings_options(mapping)
    show = verbs.add_parser("show", help="the settings of one repository, or of every repository of a tenant")
    show.add_argument("repository", nargs="?", help="owner/name (default: every repository of the tenant)")
    show.add_argument("--tenant", help="the tenant (default: the repository's, else IRONLAYER_TENANT)")
    show.add_argument("--json", action="store_true", help="print JSON")


def _settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--branches", default="main", help="comma list of planned branches (default main)")
    parser.add_argument("--github-token-credential", help="name of the tenant's credential holding the GitHub token")
    parser.add_argument("--engine", choices=["duckdb", "databricks"], default="duckdb")
    parser.add_argument("--warehouse", help="DuckDB file inside the tenant's warehouse folder (default "
                                            "warehouse.duckdb, under IRONLAYER_WAREHOUSE_DIR/<tenant>/)")
    parser.add_argument("--databricks-host", help="Databricks workspace host")
    parser.add_argument("--databricks-http-path", help="Databricks SQL warehouse HTTP path")
    parser.add_argument("--databricks-catalog", help="Databricks catalog")
    parser.add_argument("--databricks-token-credential", help="name of the credential holding the Databricks token")
    parser.add_argument("--blob-prefix", help="blob folder (default tenants/<tenant>/; must lie beneath it)")
    parser.add_argument("--status-repository", help="owner/name that gets commit statuses (default: the repository, "
                                                    "when a GitHub token credential is named)")
    parser.add_argument("--local-path", help="development only: read the repository from this local git path")


def _settings(args: argparse.Namespace, tenant_id: str, repository: str) -> RepositorySettings:
    from shared_core.core.repository_settings import repository_settings

    return repository_settings(
        tenant_id, repository, production=settings().production, local_path=args.local_path,
        github_token_credential=args.github_token_credential, engine=args.engine, warehouse=args.warehouse,
        databricks_host=args.databricks_host, databricks_http_path=args.databricks_http_path,
        databricks_catalog=args.databricks_catalog, databricks_token_credential=args.databricks_token_credential,
        blob_prefix=args.blob_prefix, branches=[b.strip() for b in args.branches.split(",") if b.strip()],
        status_repository=args.status_repository,
    )


def _report(onboarded: Onboarded, verb: str) -> None:
    stored = onboarded.settings
    print(f"{verb} repository {stored.repository} for tenant {stored.tenant_id}: {stored.source_kind} source, "
          f"engine {stored.engine}, branches {', '.join(stored.branches)}, blobs under {stored.blob_prefix}")
    for name in onboarded.missing_credentials:
        print(f"note: credential {name} is not stored yet; run `IRONLAYER_TENANT={stored.tenant_id} ironlayer "
              f"credentials set {name}`")


def cmd_tenants(args: argparse.Namespace) -> int:
    from shared_core.services.tenancy import onboard_tenant

    if args.tenants_action == "list":
        mappings = with_store(lambda store: store.repository_mappings())
        by_tenant: dict[str, list[str]] = {}
        for repository, tenant in mappings:
            by_tenant.setdefault(tenant, []).append(repository)
        for tenant, repositories in sorted(by_tenant.items()):
            print(f"{tenant}  {', '.join(repositories)}")
        if not by_tenant:
            print("No tenant has a repository yet; onboard one with `ironlayer tenants add`.")
        return EXIT_OK
    wanted = _settings(args, args.tenant, args.repository)
    onboarded = with_store(lambda store: onboard_tenant(store, wanted, name=args.name, actor=actor(), role="admin"))
    _report(onboarded, "onboarded")
    return EXIT_OK


def cmd_repositories(args: argparse.Namespace) -> int:
    from shared_core.services.tenancy import configure_repository

    if args.repositories_action == "map":
        wanted = _settings(args, args.tenant, args.repository)
        onboarded = with_store(lambda store: configure_repository(store, wanted, actor=actor(), role="admin",
                                                                  allow_new_mapping=True))
        _report(onboarded, "mapped" if onboarded.created_mapping else "updated")
        return EXIT_OK

    async def read(store: StateStore) -> list[RepositorySettingsRow]:
        tenant = args.tenant
        if tenant is None and args.repository:
            tenant = await store.tenant_for_repository(args.repository)
        rows = await store.list_repository_settings(tenant or settings().tenant_id)
        return [row for row in rows if not args.repository or row["repository"] == args.repository.lower()]

    rows = with_store(read)
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True, default=str))
        return EXIT_OK
    for row in rows:
        print(f"{row['repository']} (tenant {row['tenant_id']})")
        for key in ("source_kind", "source", "github_token_credential", "engine", "warehouse", "databricks_host",
                    "databricks_http_path", "databricks_catalog", "databricks_token_credential", "blob_prefix",
                    "branches", "status_repository"):
            value = row[key]
            if value not in (None, ""):
                print(f"  {key}: {', '.join(value) if isinstance(value, list) else value}")
    if not rows:
        print("No repository settings found.")
    return EXIT_OK


COMMANDS = {"tenants": cmd_tenants, "repositories": cmd_repositories}
