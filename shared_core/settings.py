"""The settings of IronLayer: read from the environment once into a frozen value, for the CLI and the Functions.

Every setting either reads is listed here (and in local.settings.sample.json with a safe local value). The
Functions take plain values from `get_settings()` (read once per worker); the CLI reads `load_settings()` once
per command. Nothing else reads the environment.

The Functions app fails closed: `check_app_settings` (called when the app is loaded) refuses to start it
without authentication, or with state on the worker's own disk, unless `IRONLAYER_ENVIRONMENT` says
`development` or `test` explicitly; an unset environment is production to the app. The CLI is a local
tool and takes an unset environment as it is.

Local state (the embedded PostgreSQL, the default warehouse and blob folder) lives in one folder per project,
`home`: IRONLAYER_HOME when set; else `ironlayer/` in the git directory of the project's repository (the
repository a command names, else the one around the current directory; worktrees share their repository's),
so it is never an untracked file in a work tree and never a second copy in some other folder; outside any
repository, the user's `$XDG_STATE_HOME/ironlayer` (`~/.local/state/ironlayer`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from shared_core.core.errors import SettingsError
from shared_core.core.telemetry import parse_engine_rates

#: The values of IRONLAYER_ENVIRONMENT; unset is none of them (the app treats it as production).
ENVIRONMENTS = ("development", "test", "production")
#: The environments in which the app may run without authentication and with state on the local disk.
LOCAL_ENVIRONMENTS = frozenset({"development", "test"})


@dataclass(frozen=True)
class Settings:
    environment: str  # IRONLAYER_ENVIRONMENT: development | test | production, or "" when unset
    tenant_id: str  # IRONLAYER_TENANT: the tenant of this deployment's repository
    repository: str  # IRONLAYER_REPOSITORY: owner/name of the connected repository
    branches: frozenset[str]  # IRONLAYER_BRANCHES: comma list of branches that are planned
    github_webhook_secret: str  # IRONLAYER_GITHUB_WEBHOOK_SECRET
    github_token: str  # IRONLAYER_GITHUB_TOKEN: reads trees/blobs and writes commit statuses
    github_api_url: str  # IRONLAYER_GITHUB_API_URL
    local_repo: str  # IRONLAYER_LOCAL_REPO: read models from this local git repository instead of GitHub
    database_url: str  # IRONLAYER_DATABASE_URL: the application role (empty: the embedded PostgreSQL)
    migration_database_url: str  # IRONLAYER_MIGRATION_DATABASE_URL: the owner role that runs migrations
    home: Path  # IRONLAYER_HOME, else the project's `<git dir>/ironlayer`, else ~/.local/state/ironlayer
    blob_connection_string: str  # IRONLAYER_BLOB_CONNECTION_STRING (Azure Blob / Azurite)
    blob_account_url: str  # IRONLAYER_BLOB_ACCOUNT_URL (Azure Blob with DefaultAzureCredential)
    blob_container: str  # IRONLAYER_BLOB_CONTAINER
    blob_dir: Path  # IRONLAYER_BLOB_DIR: local folder when no Azure Blob setting is given
    approval_secret: str  # IRONLAYER_APPROVAL_SECRET: signs approval links (at least 32 bytes)
    approval_ttl_hours: int  # IRONLAYER_APPROVAL_TTL_HOURS: default 24, at most 168
    public_base_url: str  # IRONLAYER_PUBLIC_BASE_URL: where approval links point
    auto_approve: bool  # IRONLAYER_AUTO_APPROVE: development only
    schedule_auto_approve: bool  # IRONLAYER_SCHEDULE_AUTO_APPROVE
    engine: str  # IRONLAYER_ENGINE: duckdb | databricks
    warehouse: Path  # IRONLAYER_WAREHOUSE: the DuckDB file of the development default (see services/tenancy)
    warehouse_dir: Path  # IRONLAYER_WAREHOUSE_DIR: onboarded repositories' DuckDB files, in <dir>/<tenant_id>/
    databricks_host: str  # IRONLAYER_DATABRICKS_HOST, else DATABRICKS_HOST (scheme and trailing slash dropped)
    databricks_http_path: str  # DATABRICKS_HTTP_PATH: the SQL warehouse (CLI and development default only)
    databricks_catalog: str  # IRONLAYER_DATABRICKS_CATALOG: written to (empty: the workspace's default catalog)
    databricks_token: str = field(repr=False)  # DATABRICKS_TOKEN: a personal access token
    databricks_client_id: str  # DATABRICKS_CLIENT_ID: a service principal (OAuth machine-to-machine) ...
    databricks_client_secret: str = field(repr=False)  # DATABRICKS_CLIENT_SECRET: ... and its secret
    max_body_bytes: int  # IRONLAYER_MAX_BODY_BYTES
    step_retries: int  # IRONLAYER_STEP_RETRIES
    auth_mode: str  # IRONLAYER_AUTH_MODE: dev | jwt | oidc (default: dev in development and test, else oidc)
    auth_secret: str  # IRONLAYER_AUTH_SECRET: the HS256 secret of jwt mode (at least 32 bytes)
    auth_issuer: str  # IRONLAYER_AUTH_ISSUER: required `iss` of API tokens
    auth_audience: str  # IRONLAYER_AUTH_AUDIENCE: required `aud` of API tokens
    oidc_jwks_url: str  # IRONLAYER_OIDC_JWKS_URL: the identity provider's keys (oidc mode)
    rate_limit_user: int  # IRONLAYER_RATE_LIMIT_USER: requests per minute per user and endpoint
    rate_limit_tenant: int  # IRONLAYER_RATE_LIMIT_TENANT: requests per minute per tenant
    credential_keys: str  # IRONLAYER_CREDENTIAL_KEYS: Fernet keys, newest first, for stored credentials
    cache_dir: Path | None  # IRONLAYER_CACHE_DIR: the CLI's analysis cache (unset: inside the repository's git dir)
    actor: str  # IRONLAYER_ACTOR, else USER, else "cli": who the CLI's audit entries name
    app_service_auth: bool  # IRONLAYER_APP_SERVICE_AUTH: App Service Authentication is on; trust X-MS-CLIENT-PRINCIPAL
    engine_rates: tuple[tuple[str, float], ...]  # IRONLAYER_ENGINE_RATES: engine=US dollars per engine hour (cost)
    stripe_api_key: str  # IRONLAYER_STRIPE_API_KEY: the secret (or restricted) key that sends meter events
    stripe_api_base: str  # IRONLAYER_STRIPE_API_BASE: Stripe's API (default https://api.stripe.com)
    stripe_webhook_secret: str  # IRONLAYER_STRIPE_WEBHOOK_SECRET: whsec_... of the webhook endpoint
    stripe_meter_plans: str  # IRONLAYER_STRIPE_METER_PLANS: the meter event name of generated plans
    stripe_meter_steps: str  # IRONLAYER_STRIPE_METER_STEPS: the meter event name of executed steps
    stripe_meter_compute: str  # IRONLAYER_STRIPE_METER_COMPUTE: the meter event name of compute seconds
    applicationinsights_connection_string: str  # APPLICATIONINSIGHTS_CONNECTION_STRING: export traces and logs

    @property
    def production(self) -> bool:
        """IRONLAYER_ENVIRONMENT=production, said explicitly."""
        return self.environment == "production"

    @property
    def local(self) -> bool:
        """IRONLAYER_ENVIRONMENT is development or test, said explicitly: the app may use local state."""
        return self.environment in LOCAL_ENVIRONMENTS


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise SettingsError(f"{name}={value!r} is not a boolean; use true or false")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise SettingsError(f"{name}={raw!r} must be a whole number from {low} to {high}")
    return int(raw)


def repository_state_dir(folder: Path) -> Path | None:
    """The git directory of the repository `folder` is in (a worktree's: its repository's), or None.

    Found on the file system, without running git: the first `.git` folder (or `.git` file of a worktree or
    submodule, read to its common directory) in `folder` or above it, or `folder` itself when it is a bare
    repository.
    """
    start = folder.resolve()
    for candidate in (start, *start.parents):
        dot_git = candidate / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():
            return _linked_git_dir(candidate, dot_git)
        if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir() and (candidate / "refs").is_dir():
            return candidate  # a bare repository (or a git directory itself)
    return None


def _linked_git_dir(work_tree: Path, dot_git: Path) -> Path | None:
    """The common git directory named by a `.git` file (`gitdir: PATH`), following a worktree's `commondir`."""
    try:
        line = dot_git.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not line.startswith("gitdir:"):
        return None
    git_dir = (work_tree / line.partition(":")[2].strip()).resolve()
    try:
        common = (git_dir / "commondir").read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return git_dir
    return (git_dir / common).resolve()


def default_home(environ: Mapping[str, str], *, repository: Path | None, cwd: Path) -> Path:
    """Where local state lives when IRONLAYER_HOME is not set (see the module docstring)."""
    for folder in (repository, cwd):
        if folder is not None and (git_dir := repository_state_dir(folder)) is not None:
            return git_dir / "ironlayer"
    state = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".local" / "state")
    return Path(state) / "ironlayer"


def _host(value: str) -> str:
    """A workspace host as the Databricks tools write it (`https://adb-1.2.azuredatabricks.net/`) -> the host.

    >>> _host("https://adb-1.2.azuredatabricks.net/"), _host("dbc-a1.cloud.databricks.com")
    ('adb-1.2.azuredatabricks.net', 'dbc-a1.cloud.databricks.com')
    """
    return value.strip().removeprefix("https://").removeprefix("http://").rstrip("/")


def load_settings(
    environ: Mapping[str, str] | None = None, *, repository: Path | None = None, cwd: Path | None = None,
) -> Settings:
    """Read every setting from `environ` (default: the process environment).

    Args:
        environ: the environment (default: the process's).
        repository: the repository the command works on (its git directory holds local state); default
            IRONLAYER_LOCAL_REPO, else the repository around `cwd`.
        cwd: the working directory (default: the process's).

    Raises:
        SettingsError: a value is invalid, or auto-approval is on in production.
    """
    values = os.environ if environ is None else environ
    env = values.get
    local_repo = env("IRONLAYER_LOCAL_REPO", "")
    if repository is None and local_repo:
        repository = Path(local_repo)
    home = Path(env("IRONLAYER_HOME") or default_home(values, repository=repository, cwd=cwd or Path.cwd()))
    environment = env("IRONLAYER_ENVIRONMENT", "").strip().lower()
    if environment and environment not in ENVIRONMENTS:
        raise SettingsError(f"IRONLAYER_ENVIRONMENT={environment[:40]!r}; use development, test or production")
    engine = env("IRONLAYER_ENGINE", "duckdb").strip().lower()
    if engine not in ("duckdb", "databricks"):
        raise SettingsError(f"IRONLAYER_ENGINE={engine!r}; use duckdb or databricks")
    settings = Settings(
        environment=environment,
        tenant_id=env("IRONLAYER_TENANT", "local"),
        repository=env("IRONLAYER_REPOSITORY", ""),
        branches=frozenset(b.strip() for b in env("IRONLAYER_BRANCHES", "main").split(",") if b.strip()),
        github_webhook_secret=env("IRONLAYER_GITHUB_WEBHOOK_SECRET", ""),
        github_token=env("IRONLAYER_GITHUB_TOKEN", ""),
        github_api_url=env("IRONLAYER_GITHUB_API_URL", "https://api.github.com"),
        local_repo=local_repo,
        database_url=env("IRONLAYER_DATABASE_URL", ""),
        migration_database_url=env("IRONLAYER_MIGRATION_DATABASE_URL", ""),
        home=home,
        blob_connection_string=env("IRONLAYER_BLOB_CONNECTION_STRING", ""),
        blob_account_url=env("IRONLAYER_BLOB_ACCOUNT_URL", ""),
        blob_container=env("IRONLAYER_BLOB_CONTAINER", "ironlayer"),
        blob_dir=Path(env("IRONLAYER_BLOB_DIR") or home / "blobs"),
        approval_secret=env("IRONLAYER_APPROVAL_SECRET", ""),
        approval_ttl_hours=_int(values, "IRONLAYER_APPROVAL_TTL_HOURS", 24, 1, 168),
        public_base_url=env("IRONLAYER_PUBLIC_BASE_URL", "http://localhost:7071").rstrip("/"),
        auto_approve=_flag(values, "IRONLAYER_AUTO_APPROVE"),
        schedule_auto_approve=_flag(values, "IRONLAYER_SCHEDULE_AUTO_APPROVE"),
        engine=engine,
        warehouse=Path(env("IRONLAYER_WAREHOUSE") or home / "warehouse.duckdb"),
        warehouse_dir=Path(env("IRONLAYER_WAREHOUSE_DIR") or home / "warehouses"),
        databricks_host=_host(env("IRONLAYER_DATABRICKS_HOST", "") or env("DATABRICKS_HOST", "")),
        databricks_http_path=env("DATABRICKS_HTTP_PATH", "").strip(),
        databricks_catalog=env("IRONLAYER_DATABRICKS_CATALOG", "").strip(),
        databricks_token=env("DATABRICKS_TOKEN", "").strip(),
        databricks_client_id=env("DATABRICKS_CLIENT_ID", "").strip(),
        databricks_client_secret=env("DATABRICKS_CLIENT_SECRET", "").strip(),
        max_body_bytes=_int(values, "IRONLAYER_MAX_BODY_BYTES", 5 * 1024 * 1024, 1024, 25 * 1024 * 1024),
        step_retries=_int(values, "IRONLAYER_STEP_RETRIES", 3, 1, 10),
        auth_mode=env("IRONLAYER_AUTH_MODE", "dev" if environment in LOCAL_ENVIRONMENTS else "oidc").strip().lower(),
        auth_secret=env("IRONLAYER_AUTH_SECRET", ""),
        auth_issuer=env("IRONLAYER_AUTH_ISSUER", ""),
        auth_audience=env("IRONLAYER_AUTH_AUDIENCE", ""),
        oidc_jwks_url=env("IRONLAYER_OIDC_JWKS_URL", ""),
        rate_limit_user=_int(values, "IRONLAYER_RATE_LIMIT_USER", 120, 1, 100_000),
        rate_limit_tenant=_int(values, "IRONLAYER_RATE_LIMIT_TENANT", 1200, 1, 1_000_000),
        credential_keys=env("IRONLAYER_CREDENTIAL_KEYS", ""),
        cache_dir=Path(env("IRONLAYER_CACHE_DIR", "")) if env("IRONLAYER_CACHE_DIR") else None,
        actor=env("IRONLAYER_ACTOR") or env("USER") or "cli",
        app_service_auth=_flag(values, "IRONLAYER_APP_SERVICE_AUTH"),
        engine_rates=tuple(sorted(parse_engine_rates(env("IRONLAYER_ENGINE_RATES", "duckdb=0,databricks=0")).items())),
        stripe_api_key=env("IRONLAYER_STRIPE_API_KEY", ""),
        stripe_api_base=env("IRONLAYER_STRIPE_API_BASE", "https://api.stripe.com").rstrip("/"),
        stripe_webhook_secret=env("IRONLAYER_STRIPE_WEBHOOK_SECRET", ""),
        stripe_meter_plans=env("IRONLAYER_STRIPE_METER_PLANS", "ironlayer_plans"),
        stripe_meter_steps=env("IRONLAYER_STRIPE_METER_STEPS", "ironlayer_steps"),
        stripe_meter_compute=env("IRONLAYER_STRIPE_METER_COMPUTE", "ironlayer_compute_seconds"),
        applicationinsights_connection_string=env("APPLICATIONINSIGHTS_CONNECTION_STRING", ""),
    )
    if settings.production and settings.auth_mode == "dev":
        raise SettingsError("IRONLAYER_AUTH_MODE=dev (no authentication) is refused in production; use jwt or oidc")
    if settings.production and settings.auto_approve:
        raise SettingsError("IRONLAYER_AUTO_APPROVE is for development only; unset it in production")
    return settings


def app_settings_problems(settings: Settings) -> list[str]:
    """What the Functions app must not start with in `settings.environment` (empty: it may start).

    Outside an explicit development or test environment (production, or IRONLAYER_ENVIRONMENT unset), the
    app refuses to run without authentication, to approve by itself, and to keep anything on the worker's
    own disk, which Flex Consumption recycles and never shares between instances: the embedded
    PostgreSQL, a local repository, the local blob folder and a DuckDB warehouse file.

    >>> app_settings_problems(load_settings({"IRONLAYER_ENVIRONMENT": "development"}))
    []
    >>> app_settings_problems(load_settings({"IRONLAYER_AUTH_MODE": "dev"}))[0].split(";")[0]
    'IRONLAYER_AUTH_MODE=dev turns authentication off and needs IRONLAYER_ENVIRONMENT=development (or test)'
    """
    if settings.local:
        return []
    problems = []
    if settings.auth_mode == "dev":
        problems.append("IRONLAYER_AUTH_MODE=dev turns authentication off and needs IRONLAYER_ENVIRONMENT="
                        "development (or test); set that explicitly, or use jwt or oidc")
    if settings.auto_approve:
        problems.append("IRONLAYER_AUTO_APPROVE is for development only; unset it")
    if not settings.database_url:
        problems.append("IRONLAYER_DATABASE_URL is empty, which starts an embedded PostgreSQL on the worker's disk; "
                        "set the URL of the PostgreSQL server")
    if settings.local_repo:
        problems.append("IRONLAYER_LOCAL_REPO reads models from the worker's disk; unset it so that GitHub is read")
    if not (settings.blob_connection_string or settings.blob_account_url):
        problems.append("no IRONLAYER_BLOB_ACCOUNT_URL or IRONLAYER_BLOB_CONNECTION_STRING: plans would be kept "
                        "in the local folder IRONLAYER_BLOB_DIR; set one of them")
    if settings.engine == "duckdb":
        problems.append("IRONLAYER_ENGINE=duckdb keeps the warehouse in the local file IRONLAYER_WAREHOUSE; "
                        "use IRONLAYER_ENGINE=databricks")
    return problems


def check_app_settings(settings: Settings) -> None:
    """Refuse to start the Functions app with `settings` (see `app_settings_problems`).

    Raises:
        SettingsError: one line naming every setting at fault and what to do.
    """
    problems = app_settings_problems(settings)
    if problems:
        where = f"IRONLAYER_ENVIRONMENT={settings.environment}" if settings.environment else (
            "IRONLAYER_ENVIRONMENT unset (production)")
        raise SettingsError(f"the app refuses to start with {where}: " + "; ".join(problems))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this worker, read once and reused while it is warm."""
    return load_settings()
