"""The execution settings of one mapped repository: validated values, their defaults, and where they point.

A job of a repository runs only with what these settings name: its git source (the repository on GitHub,
or a local path in development), the credential holding its GitHub token, the engine and its target (a
DuckDB file inside the tenant's own warehouse folder, or a Databricks workspace), the blob prefix (inside
`tenants/<tenant_id>/`), the branches that are planned and the repository that gets commit statuses. The
rules that keep tenants apart are checked here, before anything is stored:

- a GitHub source is the mapped repository itself (the tenant's token decides what it may read);
- a DuckDB warehouse is a relative path, resolved under `<warehouse folder>/<tenant_id>/`, so no value can
  name another tenant's file; a blob prefix lies under `tenants/<tenant_id>/`;
- outside development and test (`production`), nothing may keep state on the worker's disk, as for the app
  itself (`shared_core.settings.app_settings_problems`): a local source and a DuckDB file are refused.

Pure: values in, values out; `resolve_warehouse` joins paths without touching the file system.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from shared_core.core.errors import RepositorySettingsError
from shared_core.core.state import EngineName, RepositorySettingsFields, SourceKind

DEFAULT_BRANCHES = ("main",)
DEFAULT_WAREHOUSE = "warehouse.duckdb"
ENGINES: tuple[EngineName, ...] = ("duckdb", "databricks")
SOURCE_KINDS: tuple[SourceKind, ...] = ("github", "local")

REPOSITORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")
CREDENTIAL = re.compile(r"[a-z0-9_.-]{1,100}")
TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_BRANCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
_HTTP_PATH = re.compile(r"/[A-Za-z0-9._/-]{1,300}")
_CATALOG = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def check_repository(repository: str, *, what: str = "repository") -> str:
    """`repository` when it is a GitHub `owner/name`.

    >>> check_repository("Octo-Org/models.dbt")
    'Octo-Org/models.dbt'

    Raises:
        RepositorySettingsError: it is not `owner/name`.
    """
    if not REPOSITORY.fullmatch(repository) or repository.endswith((".", "/..")) or "/.." in repository:
        raise RepositorySettingsError(f"{what} {repository[:120]!r} is not a GitHub repository; give it as owner/name")
    return repository


def check_tenant(tenant_id: str) -> str:
    """`tenant_id` when it is a valid tenant ID (lower-case letters, digits, '-' and '_', at most 63).

    >>> check_tenant("acme-analytics")
    'acme-analytics'
    """
    if not TENANT.fullmatch(tenant_id):
        raise RepositorySettingsError(
            f"tenant id {tenant_id[:80]!r} is invalid; use lower-case letters, digits, '-' and '_' (at most 63)"
        )
    return tenant_id


def default_blob_prefix(tenant_id: str) -> str:
    """The blob prefix of a tenant's repositories unless their settings name a folder beneath it.

    >>> default_blob_prefix("acme")
    'tenants/acme/'
    """
    return f"tenants/{tenant_id}/"


def resolve_warehouse(root: Path, tenant_id: str, warehouse: str) -> Path:
    """The DuckDB file of a tenant's repository: `warehouse` (relative) inside `<root>/<tenant_id>/`.

    >>> resolve_warehouse(Path("/srv/warehouses"), "acme", "sales/main.duckdb").as_posix()
    '/srv/warehouses/acme/sales/main.duckdb'

    Raises:
        RepositorySettingsError: the tenant ID or the relative path is invalid (a stored value is checked again).
    """
    return root / check_tenant(tenant_id) / PurePosixPath(_check_relative(warehouse, "warehouse"))


@dataclass(frozen=True)
class RepositorySettings:
    """The validated execution settings of one repository of one tenant (see the module docstring)."""

    tenant_id: str
    repository: str  # owner/name, lower-case: the key it is mapped under
    source_kind: SourceKind
    source: str  # github: owner/name (the mapped repository, in its own case); local: a repository path
    github_token_credential: str | None
    engine: EngineName
    warehouse: str | None  # duckdb: relative to the tenant's warehouse folder
    databricks_host: str | None
    databricks_http_path: str | None
    databricks_catalog: str | None
    databricks_token_credential: str | None
    blob_prefix: str
    branches: tuple[str, ...]
    status_repository: str | None  # None: commit statuses are only logged

    def fields(self) -> RepositorySettingsFields:
        """The values as the state store writes them."""
        return RepositorySettingsFields(
            repository=self.repository, source_kind=self.source_kind, source=self.source,
            github_token_credential=self.github_token_credential, engine=self.engine, warehouse=self.warehouse,
            databricks_host=self.databricks_host, databricks_http_path=self.databricks_http_path,
            databricks_catalog=self.databricks_catalog, databricks_token_credential=self.databricks_token_credential,
            blob_prefix=self.blob_prefix, branches=list(self.branches), status_repository=self.status_repository,
        )

    def credentials(self) -> tuple[str, ...]:
        """The names of the credentials these settings use, sorted."""
        names = {self.github_token_credential, self.databricks_token_credential}
        return tuple(sorted(name for name in names if name))

    def describe(self) -> dict[str, object]:
        """A plain summary for people (CLI, API, audit): every setting, credentials by name only."""
        return {"tenant_id": self.tenant_id, **self.fields()}


def repository_settings(
    tenant_id: str,
    repository: str,
    *,
    production: bool,
    local_path: str | None = None,
    github_token_credential: str | None = None,
    engine: str = "duckdb",
    warehouse: str | None = None,
    databricks_host: str | None = None,
    databricks_http_path: str | None = None,
    databricks_catalog: str | None = None,
    databricks_token_credential: str | None = None,
    blob_prefix: str | None = None,
    branches: Sequence[str] | None = None,
    status_repository: str | None = None,
) -> RepositorySettings:
    """Validate the settings of `repository` for `tenant_id`, filling in the defaults.

    Defaults: the source is the repository on GitHub (a `local_path` instead, in development only); the
    DuckDB warehouse `warehouse.duckdb` of the tenant's folder; the blob prefix `tenants/<tenant_id>/`;
    the branch `main`; commit statuses on the repository itself when a GitHub token credential is named
    (without one they are only logged).

    Args:
        tenant_id: the tenant the repository is mapped to.
        repository: its GitHub `owner/name` (the webhook's `repository.full_name`).
        production: whether local state is refused: true for the app anywhere but an explicit development or
            test environment (a local source and a DuckDB warehouse file live on the worker's disk).
        local_path: read the repository from this local git path instead of GitHub (development only).
        github_token_credential: the name of the tenant's credential holding the GitHub token.
        engine: `duckdb` or `databricks`.
        warehouse: the DuckDB file, relative to the tenant's warehouse folder.
        databricks_host, databricks_http_path, databricks_catalog, databricks_token_credential: the
            Databricks workspace, SQL warehouse, catalog (None: the workspace's default) and the credential
            holding its token or service principal (`{"client_id": ..., "client_secret": ...}`).
        blob_prefix: where the repository's plans and cached blobs go, inside `tenants/<tenant_id>/`.
        branches: the branches whose pushes are planned.
        status_repository: the `owner/name` that gets commit statuses (needs a token credential).

    Raises:
        RepositorySettingsError: naming the first invalid setting and what to give instead.
    """
    check_tenant(tenant_id)
    name = check_repository(repository)
    source_kind: SourceKind = "local" if local_path else "github"
    source = name
    if local_path:
        if production:
            raise RepositorySettingsError(
                f"repository {name}: a local source ({local_path[:120]}) is for development only; in production "
                "jobs read the repository from GitHub: drop the local path"
            )
        if "\0" in local_path or not local_path.strip():
            raise RepositorySettingsError(f"repository {name}: local path {local_path[:120]!r} is not a path")
        source = local_path
    token = _credential(github_token_credential, "GitHub token credential")
    if engine not in ENGINES:
        raise RepositorySettingsError(f"repository {name}: engine {engine[:40]!r} is unknown; use duckdb or databricks")
    engine_name: EngineName = "duckdb" if engine == "duckdb" else "databricks"
    if engine_name == "duckdb" and production:
        raise RepositorySettingsError(
            f"repository {name}: engine duckdb keeps the warehouse in a file on the worker's disk, which is for "
            "development and test only; use engine databricks"
        )
    if engine_name == "duckdb":
        if any((databricks_host, databricks_http_path, databricks_catalog, databricks_token_credential)):
            raise RepositorySettingsError(f"repository {name}: Databricks settings given for engine duckdb; "
                                          "choose engine databricks or drop them")
        warehouse = _check_relative(warehouse or DEFAULT_WAREHOUSE, "warehouse")
    else:
        if warehouse:
            raise RepositorySettingsError(f"repository {name}: a DuckDB warehouse given for engine databricks; "
                                          "drop it")
        databricks_host = _databricks(name, databricks_host, _HOST, "host", "e.g. adb-123.4.azuredatabricks.net")
        databricks_http_path = _databricks(name, databricks_http_path, _HTTP_PATH, "HTTP path",
                                           "e.g. /sql/1.0/warehouses/abc123")
        if databricks_catalog is not None and not _CATALOG.fullmatch(databricks_catalog):
            raise RepositorySettingsError(f"repository {name}: Databricks catalog {databricks_catalog[:80]!r} is "
                                          "not an identifier")
        databricks_token_credential = _credential(databricks_token_credential, "Databricks token credential")
        if databricks_token_credential is None:
            raise RepositorySettingsError(f"repository {name}: engine databricks needs the name of the credential "
                                          "holding its token (store it with `ironlayer credentials set NAME`)")
    prefix = _blob_prefix(tenant_id, blob_prefix)
    planned = tuple(dict.fromkeys(branches or DEFAULT_BRANCHES))
    for branch in planned:
        if not _BRANCH.fullmatch(branch) or ".." in branch or "//" in branch or branch.endswith(("/", ".lock")):
            raise RepositorySettingsError(f"repository {name}: branch {branch[:80]!r} is not a branch name")
    if status_repository is not None:
        check_repository(status_repository, what="commit-status repository")
        if token is None:
            raise RepositorySettingsError(f"repository {name}: commit statuses on {status_repository} need a GitHub "
                                          "token credential; name one")
    elif token is not None and source_kind == "github":
        status_repository = repository
    return RepositorySettings(
        tenant_id=tenant_id, repository=name.lower(), source_kind=source_kind, source=source,
        github_token_credential=token, engine=engine_name, warehouse=warehouse if engine_name == "duckdb" else None,
        databricks_host=databricks_host, databricks_http_path=databricks_http_path,
        databricks_catalog=databricks_catalog, databricks_token_credential=databricks_token_credential,
        blob_prefix=prefix, branches=planned, status_repository=status_repository,
    )


def settings_from_row(tenant_id: str, row: RepositorySettingsFields, *, production: bool) -> RepositorySettings:
    """The stored settings of a repository, checked again as they are read (a row written by hand, or by an
    older release, gets no more reach than a validated one).

    Raises:
        RepositorySettingsError: a stored value breaks the rules; the message names it.
    """
    settings = repository_settings(
        tenant_id, row["source"] if row["source_kind"] == "github" else row["repository"], production=production,
        local_path=row["source"] if row["source_kind"] == "local" else None,
        github_token_credential=row["github_token_credential"], engine=row["engine"], warehouse=row["warehouse"],
        databricks_host=row["databricks_host"], databricks_http_path=row["databricks_http_path"],
        databricks_catalog=row["databricks_catalog"], databricks_token_credential=row["databricks_token_credential"],
        blob_prefix=row["blob_prefix"], branches=row["branches"], status_repository=row["status_repository"],
    )
    if settings.repository != row["repository"].lower():
        raise RepositorySettingsError(f"repository {row['repository']}: its GitHub source {row['source']} is "
                                      "another repository; store its settings again")
    return replace(settings, status_repository=row["status_repository"])


def _check_relative(value: str, what: str) -> str:
    parts = value.split("/")
    if len(value) > 255 or not all(_PATH_PART.fullmatch(part) for part in parts) or ".." in parts:
        raise RepositorySettingsError(
            f"{what} {value[:120]!r} must be a relative path inside the tenant's folder (parts of letters, digits, "
            "'.', '_' and '-'; no '..', no leading '/')"
        )
    return value


def _credential(value: str | None, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not CREDENTIAL.fullmatch(value):
        raise RepositorySettingsError(f"{what} {value[:80]!r} must be 1-100 of a-z, 0-9, '.', '_' or '-'")
    return value


def _databricks(repository: str, value: str | None, pattern: re.Pattern[str], what: str, example: str) -> str:
    if not value or not pattern.fullmatch(value):
        shown = repr(value[:120]) if value else "missing"
        raise RepositorySettingsError(f"repository {repository}: Databricks {what} {shown} is invalid; {example}")
    return value


def _blob_prefix(tenant_id: str, value: str | None) -> str:
    home = default_blob_prefix(tenant_id)
    if value is None or value == "":
        return home
    prefix = value if value.endswith("/") else value + "/"
    if not prefix.startswith(home) or (prefix != home and not _is_relative(prefix[len(home):-1])):
        raise RepositorySettingsError(f"blob prefix {value[:120]!r} must be {home} or a folder beneath it")
    return prefix


def _is_relative(value: str) -> bool:
    parts = value.split("/")
    return all(_PATH_PART.fullmatch(part) for part in parts) and ".." not in parts
