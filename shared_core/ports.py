"""Every seam of IronLayer as a `Protocol`: git source, blob store, query analysis, engine, commit statuses,
durable orchestrations, the state store.

Services and the core talk to these; `shared_core.adapters` implements them (`LocalGitSource`,
`GitHubSource`, `LocalBlobStore`, `AzureBlobStore`, `CachedAnalyzer`, `DuckDBExecutor`, `DatabricksExecutor`,
`GitHubStatusPublisher`, `PostgresStateStore`, `StripeMeterClient`; the Durable client is the
`Orchestrations`). The state store is split by concern (`LedgerStore`, `PlanStore`, `RunStore`, `JobStore`,
`SecurityStore`, `RepositoryStore`, `IdentityStore`, `DecisionStore`, `DeploymentStore`, `TelemetryStore`,
`BillingStore`) so that a use case can ask for exactly what it touches; `StateStore` is all of them. The
rows they return are the `TypedDict`s of `shared_core.core.state`, re-exported here, as are the planner's
`QueryAnalyzer` and `InlineAnalyzer` (defined in the pure `shared_core.core.sql.analysis`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from shared_core.core.sql.analysis import InlineAnalyzer, QueryAnalyzer
from shared_core.core.state import (
    AuditRow,
    CompletedBatch,
    DecisionOutcome,
    DecisionRecord,
    DeployedVersion,
    IdentityRow,
    JobKind,
    JobRow,
    JobStatus,
    JSONValue,
    ModelVersion,
    PlanStatus,
    PlanSummaryRow,
    QualityResult,
    RateDecision,
    RateState,
    RepositorySettingsFields,
    RepositorySettingsRow,
    RunRow,
    RunStatus,
)

if TYPE_CHECKING:
    from shared_core.core.billing import SubscriptionRow, UsageEventRow, UsageSummary
    from shared_core.core.planning.intervals import Range
    from shared_core.core.planning.markers import BatchMarker, CommittedBatch
    from shared_core.core.planning.plan import Plan
    from shared_core.core.project.models import Model
    from shared_core.core.telemetry import StepSample, TelemetryRecord
    from shared_core.services.messages import JobMessage

__all__ = [
    "ApprovalStore",
    "AuditRow",
    "BatchAnalyzer",
    "BatchOutcome",
    "BillingStore",
    "BlobStore",
    "CompletedBatch",
    "DecisionOutcome",
    "DecisionRecord",
    "DecisionStore",
    "DeployedVersion",
    "DeploymentStore",
    "Executor",
    "GitSource",
    "IdentityRow",
    "IdentityStore",
    "InlineAnalyzer",
    "JSONValue",
    "JobKind",
    "JobRow",
    "JobStatus",
    "JobStore",
    "LedgerStore",
    "MeterClient",
    "MeterResult",
    "ModelVersion",
    "OrchestrationStatus",
    "Orchestrations",
    "PlanStatus",
    "PlanStore",
    "PlanSummaryRow",
    "QualityOutcome",
    "QualityResult",
    "QueryAnalyzer",
    "RaiseEvent",
    "RateDecision",
    "RateState",
    "RepositorySettingsFields",
    "RepositorySettingsRow",
    "RepositoryStore",
    "RunRow",
    "RunStatus",
    "RunStore",
    "SecurityStore",
    "StateStore",
    "StatementOutcome",
    "StatusPublisher",
    "TelemetryStore",
    "WorkingFiles",
]

DecisionT = TypeVar("DecisionT", bound=RateDecision)
QuotaT = TypeVar("QuotaT")


class GitSource(Protocol):
    """Reads commits and files of one repository without a checkout."""

    def resolve(self, ref: str) -> str:
        """The full commit SHA of `ref`. Raises SourceError for an unknown ref."""
        ...

    def commit_time(self, sha: str) -> datetime:
        """The commit's committer time (UTC)."""
        ...

    def read_file(self, sha: str, path: str) -> str | None:
        """The text of `path` at commit `sha`, or None when it does not exist."""
        ...

    def list_files(self, sha: str, folder: str, suffix: str) -> list[tuple[str, str]]:
        """`(path, blob_id)` of every file under `folder` ending in `suffix`, sorted by path."""
        ...

    def read_blobs(self, blob_ids: Sequence[str]) -> dict[str, bytes]:
        """The bytes of each blob, by blob id."""
        ...


class WorkingFiles(Protocol):
    """The files of a project as a user is editing them (a working tree), not at a commit."""

    label: str  # how a report names them, e.g. "the working tree of ."

    def read_file(self, path: str) -> str | None:
        """The text of `path`, or None when it does not exist. Raises SourceError if it is not UTF-8."""
        ...

    def list_files(self, folder: str, suffix: str) -> list[str]:
        """The paths of the files under `folder` ending in `suffix`, sorted."""
        ...

    def read_bytes(self, paths: Sequence[str]) -> dict[str, bytes]:
        """The bytes of each file, by path."""
        ...


class BlobStore(Protocol):
    """Byte strings under relative, slash-separated keys (plans, advice, evidence, cached git blobs).

    Keys look like `plans/<plan_id>.json` or `git-blobs/<sha>`; a key with `..`, an empty part or a
    leading `/` is refused with StateError. Every method raises StateUnavailableError when the store
    cannot be reached (safe to retry).
    """

    def get(self, key: str) -> bytes | None:
        """The bytes stored under `key`, or None when there are none."""
        ...

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Store `data` under `key`, replacing what was there; readers see the old bytes or the new, never a mix."""
        ...

    def exists(self, key: str) -> bool:
        """Whether something is stored under `key`."""
        ...

    def health(self) -> None:
        """Return when the store is usable; raise StateUnavailableError (one line, no secrets) otherwise."""
        ...


class BatchAnalyzer(QueryAnalyzer, Protocol):
    """A `QueryAnalyzer` that can start its workers early and analyze files before the planner asks."""

    parallel_min_files: int  # below this many files to analyze, starting workers does not pay

    @property
    def has_workers(self) -> bool:
        """Whether worker processes are running."""
        ...

    def is_cold(self) -> bool:
        """Whether nothing is cached yet (so a plan will likely analyze many files)."""
        ...

    def start_workers(self) -> None:
        """Start the worker processes now (they load the SQL parser while the caller does other work)."""
        ...

    def prefetch(self, files: Sequence[tuple[str, str, str]]) -> None:
        """Start analyzing `(key, path, text)` triples in the background; `analyze_many` collects them."""
        ...

    def close(self) -> None:
        """Stop the worker processes."""
        ...


# -- the engine ---------------------------------------------------------------------------------------


class QualityOutcome(Protocol):
    """One quality test of a batch, as the engine ran it."""

    @property
    def test(self) -> str:
        """The test as written in the header, e.g. `not_null(id)@BLOCK`."""
        ...

    @property
    def severity(self) -> str:
        """`BLOCK` or `WARN`."""
        ...

    @property
    def failing_rows(self) -> int:
        """How many rows failed it (0: passed)."""
        ...

    @property
    def passed(self) -> bool:
        """Whether no row failed it."""
        ...


class StatementOutcome(Protocol):
    """One statement an engine ran for a batch, as the engine reported it (cost and telemetry hooks)."""

    @property
    def label(self) -> str:
        """The operation it served: stage, count, audit, publish, mark, cleanup, ..."""
        ...

    @property
    def seconds(self) -> float:
        """Wall-clock time of the statement as the client saw it."""
        ...

    @property
    def rows(self) -> int | None:
        """Rows the engine reported written or returned; None when it reports none."""
        ...

    @property
    def bytes(self) -> int | None:
        """Bytes the engine reported; None when it reports none."""
        ...

    @property
    def query_id(self) -> str | None:
        """The engine's ID of the statement (Databricks: the query history ID), when it has one."""
        ...


class BatchOutcome(Protocol):
    """What one published batch wrote, how its quality tests and contract checks went, what it cost."""

    @property
    def rows_written(self) -> int:
        """Rows the batch wrote."""
        ...

    @property
    def tests(self) -> Sequence[QualityOutcome]:
        """Its quality tests, in header order, then its contract checks."""
        ...

    @property
    def statements(self) -> Sequence[StatementOutcome]:
        """The statements it ran, in order, with what the engine reported about each."""
        ...


class Executor(Protocol):
    """Runs model batches on one warehouse (a DuckDB file or a Databricks SQL warehouse); blocking, called in a
    worker thread."""

    def run_batch(
        self, model: Model, *, start: datetime | None, end: datetime | None, reset: bool,
        marker: BatchMarker | None = None,
    ) -> BatchOutcome:
        """Run one batch of `model` and publish it only if no BLOCK test fails.

        `marker` (model version, plan and step) is recorded with the data (in its transaction on DuckDB, right
        after its one publishing commit on Databricks), keyed by model version and range
        (`shared_core.core.planning.markers`). A batch of an incremental model with a time column replaces
        its range's rows; one without a time column never appends over a range the warehouse holds.

        Raises:
            CoreError: the batch failed, was blocked or would append rows twice (nothing published); a blocked
                batch's error carries its test results as `outcomes`.
        """
        ...

    def committed_batches(self, models: Sequence[str]) -> dict[str, list[CommittedBatch]]:
        """The batches of `models` whose rows this warehouse holds (their markers), by model."""
        ...

    def interrupt(self) -> None:
        """Stop the statements running now (from any thread, without blocking it): each raises and publishes
        nothing (DuckDB rolls its transaction back; a cancelled Databricks statement never commits), and the
        executor runs nothing more. Never raises."""
        ...

    def close(self) -> None:
        """Release the warehouse connection."""
        ...


# -- commit statuses ----------------------------------------------------------------------------------


class StatusPublisher(Protocol):
    """Sets the IronLayer commit status on a pushed commit (the merge gate and the approval link)."""

    def publish(self, sha: str, state: str, description: str, target_url: str | None = None) -> None:
        """Set the status: `state` is pending, success, failure or error (a rejected plan is a failure).

        Raises:
            SourceError: the status could not be set (one line, no token).
        """
        ...


# -- orchestrations -----------------------------------------------------------------------------------


class OrchestrationStatus(Protocol):
    """What the orchestration client says of an instance."""

    @property
    def runtime_status(self) -> object | None:
        """Its runtime status (running, completed, ...), None when no such instance exists."""
        ...


class Orchestrations(Protocol):
    """Starts, inspects and stops durable job orchestrations (the Durable Functions client)."""

    async def start_new(self, orchestration_function_name: str, instance_id: str | None = None,
                        client_input: JobMessage | None = None) -> str:
        """Start the orchestration under `instance_id` with `client_input`; returns the instance ID."""
        ...

    async def get_status(self, instance_id: str) -> OrchestrationStatus | None:
        """The instance's status; its `runtime_status` is None when no such instance exists."""
        ...

    async def terminate(self, instance_id: str, reason: str) -> None:
        """Stop a running instance."""
        ...


# -- the state store, by concern ------------------------------------------------------------------------


class LedgerStore(Protocol):
    """The watermark ledger: completed `[start, end)` ranges per model (written with runs, see `RunStore`)."""

    async def load_ledger(self, tenant_id: str, models: Sequence[str] | None = None) -> dict[str, list[Range]]:
        """The completed ranges per model (merged), for `models` or all."""
        ...

    async def ledger_before(self, tenant_id: str, models: Sequence[str], plan_id: str) -> dict[str, list[Range]]:
        """The ledger of `models` without the ranges recorded by plan `plan_id` (for the staleness check)."""
        ...


class PlanStore(Protocol):
    """Plans: exact bytes by plan ID, and their status."""

    async def save_plan(self, tenant_id: str, plan: Plan, plan_json: str) -> bool:
        """Store a plan's exact bytes (`plan_json`, the plan's file form); False when it was already stored."""
        ...

    async def get_plan(self, tenant_id: str, plan_id: str) -> str | None:
        """The exact bytes of a stored plan, or None."""
        ...

    async def set_plan_status(self, tenant_id: str, plan_id: str, status: PlanStatus) -> None:
        """Move a plan to `status`."""
        ...

    async def list_plans(self, tenant_id: str, limit: int = 20) -> list[PlanSummaryRow]:
        """The newest `limit` plans, newest first."""
        ...


class RunStore(Protocol):
    """Runs of plan steps (one per batch attempt, with test results) and the range locks they run under."""

    async def successful_batches(self, tenant_id: str, plan_id: str) -> set[tuple[str, datetime | None]]:
        """`(step_id, batch_start)` of every batch of the plan that succeeded."""
        ...

    async def start_run(
        self, tenant_id: str, plan_id: str, step_id: str, model: str, start: datetime | None, end: datetime | None
    ) -> int:
        """Insert a `running` run for one batch; returns its run ID."""
        ...

    async def finish_run(
        self, tenant_id: str, run_id: int, status: RunStatus, *, rows_written: int | None = None,
        error: str | None = None, tests: Sequence[QualityResult] = (), completed: CompletedBatch | None = None,
    ) -> None:
        """Close a run; `completed` adds its batch to the ledger in the same transaction."""
        ...

    async def record_skipped(self, tenant_id: str, plan_id: str, step_id: str, model: str, reason: str) -> None:
        """Record a step that did not run, with its reason."""
        ...

    async def list_runs(self, tenant_id: str, plan_id: str | None = None, limit: int = 200) -> list[RunRow]:
        """The newest `limit` runs (of one plan, or all), oldest first."""
        ...

    async def cancel_runs(self, tenant_id: str, plan_id: str) -> int:
        """Mark the plan's pending and running runs cancelled; returns how many."""
        ...

    async def try_lock(
        self, tenant_id: str, model: str, start: datetime | None, end: datetime | None, holder: str, ttl_seconds: int,
        *, interrupted: tuple[str, str] | None = None,
    ) -> tuple[int | None, str | None]:
        """Take a range lock: `(lock_id, None)`, or `(None, holder description)` when another holds it."""
        ...

    async def finish_step(
        self, tenant_id: str, lock_id: int, plan_id: str, step_id: str, metrics: Mapping[str, float],
        attributes: Mapping[str, JSONValue], version: ModelVersion | None,
    ) -> None:
        """Release the step's lock, record its telemetry and deployed model version, in one transaction."""
        ...

    async def renew_lock(self, tenant_id: str, lock_id: int, ttl_seconds: int) -> None:
        """Push a held lock's expiry to `ttl_seconds` from now."""
        ...

    async def break_locks(self, tenant_id: str, holder: str) -> None:
        """Drop every lock of a dead holder."""
        ...

    async def release_lock(self, tenant_id: str, lock_id: int) -> None:
        """Drop one lock."""
        ...


class JobStore(Protocol):
    """Orchestration jobs and the webhook deliveries that started them."""

    async def claim_delivery(self, tenant_id: str, delivery_id: str, event: str, instance: str | None) -> bool:
        """Record a webhook delivery; False when it was seen before."""
        ...

    async def release_delivery(self, tenant_id: str, delivery_id: str) -> None:
        """Forget a delivery whose orchestration could not be started."""
        ...

    async def push_sequence(self, tenant_id: str, repository: str, branch: str, before: str, after: str) -> int:
        """The number of a branch's push: the newest push's when it is the same push, else the next one."""
        ...

    async def claim_job(self, tenant_id: str, instance: str, *, kind: JobKind, repository: str, target: str,
                        author: str = "", detail: str | None = None, delivery_id: str | None = None) -> bool:
        """Insert the queued job of an instance; False when it already exists (another caller claimed it)."""
        ...

    async def release_job(self, tenant_id: str, instance: str) -> None:
        """Drop the claim of an instance whose orchestration could not be started."""
        ...

    async def upsert_job(
        self, tenant_id: str, instance: str, *, kind: JobKind | None = None, repository: str | None = None,
        target: str | None = None, plan_id: str | None = None, status: JobStatus | None = None,
        detail: str | None = None, author: str | None = None,
    ) -> None:
        """Create a job row or update the given fields of it."""
        ...

    async def get_job(self, tenant_id: str, instance: str) -> JobRow | None:
        """The job of one orchestration instance, or None."""
        ...

    async def job_for_plan(self, tenant_id: str, plan_id: str) -> JobRow | None:
        """The newest job that built the plan, or None."""
        ...

    async def list_jobs(self, tenant_id: str, limit: int = 100) -> list[JobRow]:
        """The newest `limit` jobs, newest first."""
        ...

    async def busy_models(self, tenant_id: str) -> set[str]:
        """The models with a step in the plan of a job that is planned, awaiting approval or running."""
        ...


class SecurityStore(Protocol):
    """Tenants and routing, the audit chain, credentials, used and revoked tokens, rate-limit buckets."""

    async def ensure_tenant(self, tenant_id: str, name: str) -> None:
        """Create the tenant unless it exists; StateError for an invalid tenant ID."""
        ...

    async def tenant_exists(self, tenant_id: str) -> bool:
        """Whether the tenant has its row."""
        ...

    async def map_repository(self, tenant_id: str, repository: str, installation_id: int | None = None) -> None:
        """Route a repository's webhooks to the tenant."""
        ...

    async def tenant_for_repository(self, repository: str) -> str | None:
        """The tenant a repository's webhooks belong to, or None."""
        ...

    async def tenant_settings(self, tenant_id: str) -> dict[str, JSONValue]:
        """The tenant's settings object."""
        ...

    async def set_tenant_settings(self, tenant_id: str, settings: Mapping[str, JSONValue]) -> None:
        """Replace the tenant's settings object."""
        ...

    async def append_audit(
        self, tenant_id: str, build: Callable[[AuditRow | None, str | None], AuditRow]
    ) -> AuditRow:
        """Append the row `build(previous row, recorded head)` returns, atomically; returns it."""
        ...

    async def audit_rows(self, tenant_id: str) -> tuple[list[AuditRow], str | None]:
        """Every audit row in `seq` order, and the recorded head hash."""
        ...

    async def set_credential(self, tenant_id: str, name: str, ciphertext: str) -> None:
        """Store (or replace) a credential's ciphertext."""
        ...

    async def get_credential(self, tenant_id: str, name: str) -> str | None:
        """The ciphertext of credential `name`, or None when it is not stored."""
        ...

    async def list_credentials(self, tenant_id: str) -> list[tuple[str, str]]:
        """`(name, ciphertext)` of every credential, by name."""
        ...

    async def use_token(self, tenant_id: str, jti: str, plan_id: str, action: str, subject: str) -> bool:
        """Record an approval token as used; False when it had been used already."""
        ...

    async def token_used(self, tenant_id: str, jti: str) -> bool:
        """Whether an approval token was used already."""
        ...

    async def revoke_token(self, tenant_id: str, jti: str, expires_at: datetime) -> None:
        """Revoke a token until it expires."""
        ...

    async def is_revoked(self, tenant_id: str, jti: str) -> bool:
        """Whether a token was revoked."""
        ...

    async def rate_limit(
        self, tenant_id: str, key: str, decide: Callable[[RateState | None], DecisionT]
    ) -> DecisionT:
        """Apply `decide` to the stored bucket of `key` and store its `new_state`, atomically."""
        ...


class RepositoryStore(Protocol):
    """The execution resources of each mapped repository, and the repository -> tenant map as a list."""

    async def set_repository_settings(self, tenant_id: str, settings: RepositorySettingsFields) -> None:
        """Store (or replace) the settings of a repository mapped to the tenant; StateError when it is not."""
        ...

    async def repository_settings(self, tenant_id: str, repository: str) -> RepositorySettingsRow | None:
        """The settings of one repository of the tenant, or None (none stored, or another tenant's)."""
        ...

    async def list_repository_settings(self, tenant_id: str) -> list[RepositorySettingsRow]:
        """The settings of every repository of the tenant, by repository."""
        ...

    async def repository_mappings(self) -> list[tuple[str, str]]:
        """`(repository, tenant_id)` of every mapped repository (routing data, readable without a tenant)."""
        ...


class IdentityStore(Protocol):
    """The identities a tenant registered for deciding: `(provider, subject)` -> role and GitHub login."""

    async def set_identity(self, tenant_id: str, provider: str, subject: str, *, role: str,
                           github_login: str | None, name: str) -> None:
        """Register (or change) an identity."""
        ...

    async def remove_identity(self, tenant_id: str, provider: str, subject: str) -> bool:
        """Forget an identity; False when it was not registered."""
        ...

    async def find_identity(self, tenant_id: str, provider: str, subject: str) -> IdentityRow | None:
        """The registered identity, or None."""
        ...

    async def list_identities(self, tenant_id: str) -> list[IdentityRow]:
        """Every registered identity, by provider and subject."""
        ...


class DecisionStore(Protocol):
    """A decision on a plan as one ordered operation, and what the orchestration may read after it."""

    async def record_decision(
        self, tenant_id: str, record: DecisionRecord, build_audit: Callable[[AuditRow | None, str | None], AuditRow],
        deliver: Callable[[], Awaitable[None]],
    ) -> DecisionOutcome:
        """Under a lock on the plan's decision, in one transaction: re-check that the link is unused and the job
        awaits approval; use the link; update job and plan; `deliver()` the event; append the audit row.

        A failure anywhere (`deliver` included) rolls everything back: the link stays usable and no audit row
        claims a decision. Returns `token_used` or `not_awaiting` (nothing done, nothing delivered) or `recorded`.
        """
        ...

    async def settled_plan_status(self, tenant_id: str, plan_id: str) -> PlanStatus | None:
        """The plan's status once no decision on it is in flight (waits for one that is); None for no plan."""
        ...


class DeploymentStore(Protocol):
    """Deployed model versions, and the base each plan was built against (stored beside the plan)."""

    async def deployed_versions(self, tenant_id: str, models: Sequence[str]) -> dict[str, DeployedVersion]:
        """The current deployed version of each of `models` that has one."""
        ...

    async def save_plan_base(self, tenant_id: str, plan_id: str, document: str, base_hash: str) -> None:
        """Record (or replace, when the plan is made again) the base of a plan."""
        ...

    async def plan_base(self, tenant_id: str, plan_id: str) -> tuple[str, str] | None:
        """`(document, base_hash)` of a plan's recorded base, or None."""
        ...

    async def deploy_tests(self, tenant_id: str, plan_id: str, versions: Mapping[str, tuple[str, str | None]]) -> int:
        """Record the tests a succeeded plan deployed without a run: model -> (content hash, tests); only where that
        content hash is the deployed one. Returns how many models were updated."""
        ...


class TelemetryStore(Protocol):
    """Execution telemetry: a record per executed step and per batch."""

    async def record_telemetry(self, tenant_id: str, records: Sequence[TelemetryRecord]) -> int:
        """Write (or replace, by record key) the records, scrubbed; returns how many."""
        ...

    async def step_samples(self, tenant_id: str, model: str | None = None, limit: int = 10_000) -> list[StepSample]:
        """The newest `limit` executed steps (of one model, or all), oldest first."""
        ...


class BillingStore(Protocol):
    """The usage outbox, Stripe customers, subscriptions and events, and execution slots."""

    async def map_customer(self, tenant_id: str, customer_id: str, mapped_by: str) -> bool:
        """Map a Stripe customer to the tenant (False: it was already); ConflictError for another tenant's."""
        ...

    async def tenant_for_customer(self, customer_id: str) -> str | None:
        """The tenant a Stripe customer pays for, or None (readable without a tenant)."""
        ...

    async def customer_for_tenant(self, tenant_id: str) -> str | None:
        """The tenant's Stripe customer, or None."""
        ...

    async def billed_tenants(self) -> list[tuple[str, str]]:
        """`(tenant_id, customer_id)` of every tenant with a Stripe customer."""
        ...

    async def apply_stripe_event(
        self, tenant_id: str, event_id: str, event_type: str, created: datetime, subscription_id: str | None,
        decide: Callable[[SubscriptionRow | None], tuple[SubscriptionRow | None, str]],
    ) -> str | None:
        """Record the event and apply `decide(stored subscription)` atomically; None for a redelivery."""
        ...

    async def current_subscription(self, tenant_id: str, blocking: Sequence[str]) -> SubscriptionRow | None:
        """The subscription deciding the tenant's entitlement (newest not `blocking`, else newest), or None."""
        ...

    async def usage_summary(self, tenant_id: str, since: datetime) -> UsageSummary:
        """The tenant's metered usage since `since`."""
        ...

    async def claim_usage(self, tenant_id: str, now: datetime, limit: int, lease_seconds: int) -> list[UsageEventRow]:
        """The tenant's due pending usage events, leased for `lease_seconds`."""
        ...

    async def mark_usage(self, tenant_id: str, event_id: int, status: Literal["sent", "expired", "rejected", "pending"],
                         *, error: str | None = None, retry_at: datetime | None = None) -> None:
        """Record what sending one usage event did."""
        ...

    async def refuse_usage(self, tenant_id: str, refused: Mapping[str, str]) -> int:
        """Mark the events whose identifiers Stripe refused (identifier -> message) rejected; returns how many."""
        ...

    async def claim_execution(self, tenant_id: str, instance: str,
                              decide: Callable[[int, bool], tuple[QuotaT, bool]]) -> QuotaT:
        """Decide atomically whether the job may execute (`decide(running elsewhere, holds a slot)`), taking its
        slot when it may."""
        ...


class MeterResult(Protocol):
    """What the billing provider answered for one meter event."""

    @property
    def outcome(self) -> Literal["sent", "retry", "rejected"]:
        """Sent (or already known under its identifier), worth retrying, or refused for good."""
        ...

    @property
    def detail(self) -> str:
        """One line: the provider's error, or empty."""
        ...


class MeterClient(Protocol):
    """Sends usage to the billing provider (Stripe Billing Meter events); blocking, called in a worker thread."""

    def send(self, event_name: str, customer_id: str, value: int, identifier: str, timestamp: datetime) -> MeterResult:
        """Send one meter event under its identifier (a resend of the same identifier is not counted twice)."""
        ...


class StateStore(LedgerStore, PlanStore, RunStore, JobStore, SecurityStore, RepositoryStore, IdentityStore,
                 DecisionStore, DeploymentStore, TelemetryStore, BillingStore, Protocol):
    """The whole state store (`PostgresStateStore`), with its lifecycle."""

    async def health(self) -> None:
        """Return when the store answers; raise StateUnavailableError otherwise."""
        ...

    async def close(self) -> None:
        """Release its connections."""
        ...


class ApprovalStore(LedgerStore, PlanStore, JobStore, SecurityStore, IdentityStore, DecisionStore, DeploymentStore,
                    Protocol):
    """What asking for and deciding an approval touch: the plan and its base (is it stale?), its job, who decides,
    the security state and the decision itself."""


RaiseEvent = Callable[[str, str, Mapping[str, str]], Awaitable[None]]
"""Raises an event on a running orchestration: `(instance_id, event_name, payload)` (the Durable client's)."""
