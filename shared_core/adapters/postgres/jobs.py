"""Jobs, webhook deliveries and branch pushes in PostgreSQL: what the Functions app started, and what it has seen.

A delivery row dedupes GitHub's redeliveries; a branch-push row numbers a branch's pushes, so that the
deliveries of one push share an orchestration instance and a later push of the same commits gets its own
(`push_sequence`). A job row follows one orchestration from `queued` to its end, and inserting it is the
claim that starts the orchestration exactly once (`claim_job`: a Durable instance ID cannot dedupe, since
`start_new` with a fixed ID replaces a running instance). Free-text details are scrubbed of secrets and PII.
"""

from __future__ import annotations

from shared_core.adapters.postgres._connection import PostgresConnection, Record
from shared_core.core.state import JobKind, JobRow, JobStatus
from shared_core.security.scrub import scrub

_JOB_COLUMNS = (
    "tenant_id, instance_id, kind, plan_id, repository, target, status, detail, created_at, updated_at, author"
)


class PostgresJobStore(PostgresConnection):
    """Claims deliveries and records jobs (the `JobStore` port)."""

    async def claim_delivery(self, tenant_id: str, delivery_id: str, event: str, instance: str | None) -> bool:
        """Record a webhook delivery; False when it was seen before (a redelivery starts nothing)."""
        result = await self._execute(
            tenant_id,
            "INSERT INTO webhook_deliveries (tenant_id, delivery_id, event, instance_id) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (tenant_id, delivery_id) DO NOTHING",
            tenant_id, delivery_id, event, instance,
        )
        return result.endswith(" 1")

    async def release_delivery(self, tenant_id: str, delivery_id: str) -> None:
        """Forget a delivery whose orchestration could not be started, so that a redelivery may retry."""
        await self._execute(
            tenant_id, "DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND delivery_id = $2",
            tenant_id, delivery_id,
        )

    async def push_sequence(self, tenant_id: str, repository: str, branch: str, before: str, after: str) -> int:
        """The number of the push `before` -> `after` of `branch`: the branch's newest push when it is that push,
        else the next number (the push becomes the branch's newest). Atomic: concurrent deliveries of one
        push all get the same number."""
        sequence = await self._fetchval(
            tenant_id,
            "INSERT INTO branch_pushes AS p (tenant_id, repository, branch, sequence, before_sha, after_sha) "
            "VALUES ($1, $2, $3, 1, $4, $5) ON CONFLICT (tenant_id, repository, branch) DO UPDATE SET "
            "sequence = CASE WHEN (p.before_sha, p.after_sha) = (EXCLUDED.before_sha, EXCLUDED.after_sha) "
            "THEN p.sequence ELSE p.sequence + 1 END, before_sha = EXCLUDED.before_sha, "
            "after_sha = EXCLUDED.after_sha, "
            "pushed_at = CASE WHEN (p.before_sha, p.after_sha) = (EXCLUDED.before_sha, EXCLUDED.after_sha) "
            "THEN p.pushed_at ELSE now() END "
            "RETURNING sequence",
            tenant_id, repository.lower(), branch, before, after,
        )
        return int(sequence)

    async def claim_job(self, tenant_id: str, instance: str, *, kind: JobKind, repository: str, target: str,
                        author: str = "", detail: str | None = None, delivery_id: str | None = None) -> bool:
        """Insert the `queued` job of an orchestration instance; False when it exists (the instance was claimed).

        Only the caller that gets True starts the orchestration. `delivery_id` names the webhook delivery
        that claimed it (recorded on the delivery's row in the same transaction).
        """
        detail = scrub(detail) if detail else detail
        async with self._transaction(tenant_id) as conn:
            inserted = await conn.fetchval(
                "INSERT INTO jobs (tenant_id, instance_id, kind, repository, target, status, detail, author) "
                "VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7) ON CONFLICT (tenant_id, instance_id) DO NOTHING "
                "RETURNING true",
                tenant_id, instance, kind, repository, target, detail, author,
            )
            if inserted and delivery_id is not None:
                await conn.execute(
                    "UPDATE webhook_deliveries SET instance_id = $3 WHERE tenant_id = $1 AND delivery_id = $2",
                    tenant_id, delivery_id, instance,
                )
        return bool(inserted)

    async def release_job(self, tenant_id: str, instance: str) -> None:
        """Drop the claim of an instance whose orchestration could not be started (still `queued`, no plan)."""
        await self._execute(
            tenant_id,
            "DELETE FROM jobs WHERE tenant_id = $1 AND instance_id = $2 AND status = 'queued' AND plan_id IS NULL",
            tenant_id, instance,
        )

    async def upsert_job(
        self, tenant_id: str, instance: str, *, kind: JobKind | None = None, repository: str | None = None,
        target: str | None = None, plan_id: str | None = None, status: JobStatus | None = None,
        detail: str | None = None, author: str | None = None,
    ) -> None:
        """Create a job row or update the given fields of it (free text is scrubbed of secrets and PII).

        A new row defaults to kind `push`, status `queued` and empty repository, target and author; an
        update leaves the fields given as None as they are (`kind`, `repository` and `target` never change).
        """
        detail = scrub(detail) if detail else detail
        await self._execute(
            tenant_id,
            "INSERT INTO jobs (tenant_id, instance_id, kind, repository, target, plan_id, status, detail, author) "
            "VALUES ($1, $2, coalesce($3, 'push'), coalesce($4, ''), coalesce($5, ''), $6, coalesce($7, 'queued'), $8, "
            "coalesce($9, '')) ON CONFLICT (tenant_id, instance_id) DO UPDATE SET "
            "plan_id = coalesce(EXCLUDED.plan_id, jobs.plan_id), "
            "status = CASE WHEN $7 IS NULL THEN jobs.status ELSE EXCLUDED.status END, "
            "detail = coalesce($8, jobs.detail), author = CASE WHEN $9 IS NULL THEN jobs.author ELSE $9 END, "
            "updated_at = now()",
            tenant_id, instance, kind, repository, target, plan_id, status, detail, author,
        )

    async def get_job(self, tenant_id: str, instance: str) -> JobRow | None:
        """The job of one orchestration instance, or None."""
        row = await self._fetchrow(
            tenant_id, f"SELECT {_JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND instance_id = $2", tenant_id, instance
        )
        return _job_row(row) if row else None

    async def job_for_plan(self, tenant_id: str, plan_id: str) -> JobRow | None:
        """The newest job that built plan `plan_id`, or None."""
        row = await self._fetchrow(
            tenant_id,
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND plan_id = $2 ORDER BY created_at DESC LIMIT 1",
            tenant_id, plan_id,
        )
        return _job_row(row) if row else None

    async def list_jobs(self, tenant_id: str, limit: int = 100) -> list[JobRow]:
        """The newest `limit` jobs of the tenant, newest first."""
        rows = await self._fetch(
            tenant_id,
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 ORDER BY created_at DESC, instance_id LIMIT $2",
            tenant_id, limit,
        )
        return [_job_row(row) for row in rows]

    async def busy_models(self, tenant_id: str) -> set[str]:
        """The models with a step in the plan of a job that is planned, awaiting approval or running."""
        rows = await self._fetch(
            tenant_id,
            "SELECT DISTINCT step ->> 'model' AS model FROM jobs j JOIN plans p "
            "ON p.tenant_id = j.tenant_id AND p.plan_id = j.plan_id "
            "CROSS JOIN LATERAL jsonb_array_elements(p.plan_json::jsonb -> 'steps') AS step "
            "WHERE j.tenant_id = $1 AND j.status IN ('queued', 'awaiting_approval', 'running')",
            tenant_id,
        )
        return {row["model"] for row in rows}


def _job_row(row: Record) -> JobRow:
    return JobRow(
        tenant_id=row["tenant_id"], instance_id=row["instance_id"], kind=row["kind"], plan_id=row["plan_id"],
        repository=row["repository"], target=row["target"], status=row["status"], detail=row["detail"],
        created_at=row["created_at"], updated_at=row["updated_at"], author=row["author"],
    )
