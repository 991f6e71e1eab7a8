"""The state store's vocabulary: the typed rows its reads return and the values its writes take.

Pure (types only): `shared_core.ports` declares the store's Protocols over these names, the PostgreSQL
adapter returns them, and the services read them. Rows are `TypedDict`s, so callers keep `row["status"]`.
Statuses are the `Literal`s the database's CHECK constraints allow (migrations 0001-0006); `JSONValue`
is the only loose type, used where a column holds JSON (tenant settings, telemetry attributes).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal, Protocol, TypeAlias, TypedDict

JSONValue: TypeAlias = str | int | float | bool | list["JSONValue"] | dict[str, "JSONValue"] | None
"""A value JSON can hold: what a JSON column stores and returns."""

PlanStatus = Literal[
    "planned", "awaiting_approval", "approved", "rejected", "expired", "running", "succeeded", "failed", "cancelled"
]
RunStatus = Literal["pending", "running", "success", "failed", "skipped", "cancelled"]
JobStatus = Literal["queued", "running", "awaiting_approval", "succeeded", "failed", "cancelled"]
JobKind = Literal["push", "schedule"]
SourceKind = Literal["github", "local"]
EngineName = Literal["duckdb", "databricks"]

QualityResult: TypeAlias = tuple[str, str, bool, int]
"""One quality test of a batch: `(test, severity, passed, failing_rows)`; severity is BLOCK or WARN."""

CompletedBatch: TypeAlias = tuple[str, datetime, datetime, str, str, bool]
"""A batch that enters the ledger with its run: `(model, start, end, plan_id, step_id, reset)`."""

ModelVersion: TypeAlias = tuple[str, str, str, str, str, Mapping[str, str], str]
"""A deployed model version: `(name, kind, materialization, content_hash, canonical_sql, header, tests)`;
`tests` is the model's quality tests as `Header.meta_fields()` renders them (deployed with the version)."""

DecisionOutcome = Literal["recorded", "token_used", "not_awaiting"]
"""What recording a decision did: recorded it, or found the link used or the job no longer awaiting approval."""

RateState: TypeAlias = tuple[datetime, int, int]
"""A rate-limit bucket as stored: `(window_start, count, previous_count)`."""


class RateDecision(Protocol):
    """What a rate-limit decision must carry for the store: the bucket state to keep."""

    @property
    def new_state(self) -> RateState:
        """The bucket to store, in the same transaction that read the previous one."""
        ...


class PlanSummaryRow(TypedDict):
    """One stored plan, without its bytes (`list_plans`)."""

    plan_id: str
    base: str
    target: str
    as_of: datetime
    status: PlanStatus
    created_at: datetime
    updated_at: datetime


class RunRow(TypedDict):
    """One run of one batch of a step, with the number of its failed quality tests (`list_runs`)."""

    run_id: int
    plan_id: str
    step_id: str
    model: str
    batch_start: datetime | None
    batch_end: datetime | None
    attempt: int
    status: RunStatus
    started_at: datetime | None
    finished_at: datetime | None
    rows_written: int | None
    error: str | None
    failed_tests: int


class JobRow(TypedDict):
    """One orchestration job (`get_job`, `job_for_plan`, `list_jobs`)."""

    tenant_id: str
    instance_id: str
    kind: JobKind
    plan_id: str | None
    repository: str
    target: str
    status: JobStatus
    detail: str | None
    created_at: datetime
    updated_at: datetime
    author: str


class AuditRow(TypedDict):
    """One audit-log entry as stored; `details` is the canonical JSON text exactly as it was hashed."""

    tenant_id: str
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str
    details: str
    prev_hash: str
    hash: str


class RepositorySettingsFields(TypedDict):
    """The execution resources of one mapped repository, as written (`set_repository_settings`).

    Tokens are named, never held: `*_credential` is the name of an encrypted credential of the same tenant.
    """

    repository: str  # owner/name as mapped (stored lower-case)
    source_kind: SourceKind
    source: str  # github: owner/name; local: a repository path (development only)
    github_token_credential: str | None
    engine: EngineName
    warehouse: str | None  # duckdb: a file path relative to the tenant's warehouse folder
    databricks_host: str | None
    databricks_http_path: str | None
    databricks_catalog: str | None
    databricks_token_credential: str | None
    blob_prefix: str  # tenants/<tenant_id>/ or a folder beneath it
    branches: list[str]
    status_repository: str | None  # owner/name that gets commit statuses; None: statuses are only logged


class RepositorySettingsRow(RepositorySettingsFields):
    """The stored settings of one repository (`repository_settings`, migration 0004), with their tenant."""

    tenant_id: str
    updated_at: datetime
class DeployedVersion(TypedDict):
    """A model's current deployed version (`deployed_versions`): what the last successful step wrote."""

    content_hash: str
    tests: str | None  # the quality tests deployed with it; None when not recorded (before migration 0006)
    plan_id: str | None  # the plan that deployed it


class IdentityRow(TypedDict):
    """One identity a tenant registered for deciding (`find_identity`, `list_identities`).

    `provider` is `api` (an API token's subject) or `appservice:<idp>` (an App Service Authentication
    principal, by its stable ID); `github_login` (lower-case) is what separation of duties compares.
    """

    provider: str
    subject: str
    role: str
    github_login: str | None
    name: str
    created_at: datetime
    updated_at: datetime


class DecisionRecord(TypedDict):
    """What one decision changes, in the transaction that also delivers its event (`record_decision`)."""

    plan_id: str
    instance_id: str
    token_id: str | None  # the approval link's jti, used once; None for a decision made through the API
    token_action: str  # recorded with the used link: `approve` or `reject`
    token_subject: str  # recorded with the used link: who used it
    job_status: JobStatus | None  # the job's new status (None: unchanged, the orchestrator ends it)
    job_detail: str
    plan_status: PlanStatus
