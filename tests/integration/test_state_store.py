"""The state store, concern by concern, on the real server as the application role (under row-level security).

Plans, runs and the ledger, range locks, jobs and deliveries, security state; then what holds across them:
every read is bound to its tenant, a call without a tenant is refused, and a server that goes away is a
`StateUnavailableError` (safe to retry), never a raw driver error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import pytest

from shared_core.adapters.postgres.store import PostgresStateStore
from shared_core.core.errors import StateError, StateUnavailableError
from shared_core.core.planning.plan import Plan
from shared_core.core.project.headers import parse_instant as t
from shared_core.core.state import AuditRow, JobRow, PlanSummaryRow, RateState, RunRow
from tests.integration.seeding import record_completed
from tests.pg import with_store
from tests.plans import stub_plan

pytestmark = pytest.mark.integration

T = TypeVar("T")


def new_tenant() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def plan_header(plan_id: str) -> Plan:
    return stub_plan(plan_id, base="a" * 40, target="b" * 40, as_of="2024-01-01T00:00:00Z", inputs_hash="h")


async def owner_fetch(admin_url: str, sql: str, *args: object) -> list[Any]:
    """Read past row-level security, as the owner (to check what the store wrote)."""
    conn = await asyncpg.connect(admin_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


# -- plans ------------------------------------------------------------------------------------------------


def test_plans_keep_their_bytes_store_once_and_list_newest_first(database_url: str) -> None:
    tenant, first, second = new_tenant(), "1" * 64, "2" * 64
    text = '{"plan_id": "1111", "steps": []}\n'

    async def scenario(store: PostgresStateStore) -> tuple[list[bool], str | None, str | None, list[PlanSummaryRow]]:
        await store.ensure_tenant(tenant, tenant)
        stored = [await store.save_plan(tenant, plan_header(first), text),
                  await store.save_plan(tenant, plan_header(first), "other bytes"),
                  await store.save_plan(tenant, plan_header(second), "{}")]
        await store.set_plan_status(tenant, first, "approved")
        return stored, await store.get_plan(tenant, first), await store.get_plan(tenant, "9" * 64), \
            await store.list_plans(tenant)

    stored, kept, unknown, listed = with_store(database_url, scenario)
    assert stored == [True, False, True]
    assert kept == text and unknown is None  # the first bytes stay, byte for byte
    assert [(p["plan_id"], p["status"]) for p in listed] == [(second, "planned"), (first, "approved")]
    assert set(listed[0]) == PlanSummaryRow.__required_keys__
    assert listed[1]["as_of"] == datetime(2024, 1, 1, tzinfo=UTC)


# -- runs and the ledger -------------------------------------------------------------------------------------


def test_runs_count_attempts_record_tests_and_enter_the_ledger_with_their_success(database_url: str) -> None:
    tenant, plan_id = new_tenant(), "3" * 64
    day1, day2, day3 = t("2024-01-01"), t("2024-01-02"), t("2024-01-03")

    async def scenario(store: PostgresStateStore) -> dict[str, Any]:
        await store.ensure_tenant(tenant, tenant)
        await store.save_plan(tenant, plan_header(plan_id), "{}")
        failed = await store.start_run(tenant, plan_id, "s1", "m.inc", day1, day2)
        await store.finish_run(tenant, failed, "failed", error="boom for ann@example.com",
                               tests=[("not_null(id)@BLOCK", "BLOCK", False, 2), ("unique(id)@WARN", "WARN", True, 0)])
        retried = await store.start_run(tenant, plan_id, "s1", "m.inc", day1, day2)
        await store.finish_run(tenant, retried, "success", rows_written=5,
                               completed=("m.inc", day1, day2, plan_id, "s1", False))
        second = await store.start_run(tenant, plan_id, "s1", "m.inc", day2, day3)
        await store.finish_run(tenant, second, "success", rows_written=4,
                               completed=("m.inc", day2, day3, plan_id, "s1", False))
        await store.record_skipped(tenant, plan_id, "s2", "m.down", "skipped: token ghp_0123456789abcdefghijklmnopqrstuvwxyz")
        hanging = await store.start_run(tenant, plan_id, "s3", "m.full", None, None)
        return {
            "runs": await store.list_runs(tenant, plan_id),
            "other_plan": await store.list_runs(tenant, "4" * 64),
            "last_two": await store.list_runs(tenant, plan_id, limit=2),
            "done": await store.successful_batches(tenant, plan_id),
            "ledger": await store.load_ledger(tenant),
            "without_plan": await store.ledger_before(tenant, ["m.inc"], plan_id),
            "cancelled": await store.cancel_runs(tenant, plan_id),
            "hanging": hanging,
            "after_cancel": await store.list_runs(tenant, plan_id),
        }

    seen = with_store(database_url, scenario)
    runs: list[RunRow] = seen["runs"]
    assert [(r["step_id"], r["attempt"], r["status"], r["rows_written"], r["failed_tests"]) for r in runs] == [
        ("s1", 1, "failed", None, 1), ("s1", 2, "success", 5, 0), ("s1", 1, "success", 4, 0),
        ("s2", 1, "skipped", None, 0), ("s3", 1, "running", None, 0)]
    assert set(runs[0]) == RunRow.__required_keys__
    assert (runs[0]["error"], runs[3]["error"]) == ("boom for [email]", "skipped: token [github-token]")  # scrubbed
    assert seen["other_plan"] == [] and [r["step_id"] for r in seen["last_two"]] == ["s2", "s3"]
    assert seen["done"] == {("s1", t("2024-01-01")), ("s1", t("2024-01-02"))}
    assert seen["ledger"] == {"m.inc": [(t("2024-01-01"), t("2024-01-03"))]}
    assert seen["without_plan"] == {}  # the plan's own ranges are progress, not staleness
    assert seen["cancelled"] == 1  # only the running one
    assert [r["status"] for r in seen["after_cancel"] if r["run_id"] == seen["hanging"]] == ["cancelled"]


def test_a_reset_batch_makes_the_ledger_forget_the_model_first(database_url: str) -> None:
    tenant = new_tenant()

    async def scenario(store: PostgresStateStore) -> tuple[dict[str, Any], dict[str, Any]]:
        await store.ensure_tenant(tenant, tenant)
        await record_completed(store, tenant, "m.inc", t("2024-01-01"), t("2024-01-05"))
        await record_completed(store, tenant, "m.other", t("2024-01-01"), t("2024-01-02"))
        before = await store.load_ledger(tenant)
        await record_completed(store, tenant, "m.inc", t("2024-02-01"), t("2024-02-02"), reset=True)
        return before, await store.load_ledger(tenant)

    before, after = with_store(database_url, scenario)
    assert before["m.inc"] == [(t("2024-01-01"), t("2024-01-05"))]
    assert after == {"m.inc": [(t("2024-02-01"), t("2024-02-02"))], "m.other": [(t("2024-01-01"), t("2024-01-02"))]}


# -- range locks ---------------------------------------------------------------------------------------------


def test_range_locks_exclude_overlaps_of_other_holders_until_released_expired_or_broken(
    database_url: str, admin_database_url: str
) -> None:
    tenant, plan_id = new_tenant(), "5" * 64
    jan1, jan5, jan10 = t("2024-01-01"), t("2024-01-05"), t("2024-01-10")

    async def scenario(store: PostgresStateStore) -> dict[str, Any]:
        await store.ensure_tenant(tenant, tenant)
        await store.save_plan(tenant, plan_header(plan_id), "{}")
        mine, _ = await store.try_lock(tenant, "m.inc", jan1, jan5, "host-a:1", 600)
        seen: dict[str, Any] = {
            "overlap": await store.try_lock(tenant, "m.inc", jan1, jan10, "host-b:2", 600),
            "whole_model": await store.try_lock(tenant, "m.inc", None, None, "host-b:2", 600),
            "same_holder": (await store.try_lock(tenant, "m.inc", jan1, jan5, "host-a:1", 600))[0],
            "other_model": (await store.try_lock(tenant, "m.x", jan1, jan5, "host-b:2", 600))[0] is not None,
        }
        after, _ = await store.try_lock(tenant, "m.inc", jan5, jan10, "host-b:2", 600)  # adjacent: no overlap
        seen["adjacent"] = after is not None
        assert mine is not None and after is not None and seen["same_holder"] is not None
        await store.release_lock(tenant, after)
        await store.release_lock(tenant, seen["same_holder"])
        await store.renew_lock(tenant, mine, 0)  # expires now: the next taker drops it
        await asyncio.sleep(0.01)
        expired, _ = await store.try_lock(tenant, "m.inc", jan1, jan5, "host-b:2", 600)
        seen["after_expiry"] = expired is not None
        await store.break_locks(tenant, "host-b:2")  # a dead holder: all its locks go
        dead = await store.start_run(tenant, plan_id, "s1", "m.inc", jan1, jan5)  # left running by it
        taken, _ = await store.try_lock(tenant, "m.inc", jan1, jan10, "host-c:3", 600, interrupted=(plan_id, "s1"))
        assert taken is not None
        seen["interrupted"] = [(r["run_id"] == dead, r["status"], r["error"]) for r in await store.list_runs(tenant)]
        await store.finish_step(tenant, taken, plan_id, "s1", {"rows_written": 7, "batches": 1},
                                {"model": "m.inc", "note": "by ann@example.com"},
                                ("m.inc", "APPEND_ONLY", "TABLE", "c" * 64, "SELECT 1", {"kind": "APPEND_ONLY"},
                                 "not_null(id)@BLOCK"))
        seen["deployed"] = await store.deployed_versions(tenant, ["m.inc", "m.other"])
        seen["free_again"] = (await store.try_lock(tenant, "m.inc", None, None, "host-d:4", 600))[0] is not None
        return seen

    seen = with_store(database_url, scenario)
    locked, holder = seen["overlap"]
    assert locked is None and holder is not None and holder.startswith("host-a:1 (since ")
    assert seen["whole_model"][0] is None  # a NULL range covers the whole model
    assert seen["same_holder"] is not None and seen["other_model"] and seen["adjacent"]  # half-open ranges only touch
    assert seen["after_expiry"]
    assert seen["interrupted"] == [(True, "failed", "interrupted: the process running it stopped before it finished")]
    assert seen["free_again"]  # finish_step released the lock
    telemetry = asyncio.run(owner_fetch(admin_database_url, "SELECT metric, value, attributes FROM telemetry "
                                        "WHERE tenant_id = $1 ORDER BY metric", tenant))
    assert [(r["metric"], r["value"]) for r in telemetry] == [("batches", 1.0), ("rows_written", 7.0)]
    assert "ann@example.com" not in telemetry[0]["attributes"] and json.loads(telemetry[0]["attributes"])["model"] == "m.inc"
    models = asyncio.run(owner_fetch(admin_database_url, "SELECT m.current_hash, v.canonical_sql, v.header FROM models m "
                                     "JOIN model_versions v USING (tenant_id, name) WHERE m.tenant_id = $1", tenant))
    assert [(r["current_hash"], r["canonical_sql"], json.loads(r["header"])) for r in models] == [
        ("c" * 64, "SELECT 1", {"kind": "APPEND_ONLY"})]
    assert seen["deployed"] == {"m.inc": {"content_hash": "c" * 64, "tests": "not_null(id)@BLOCK", "plan_id": plan_id}}


# -- jobs and deliveries -------------------------------------------------------------------------------------


def test_deliveries_are_claimed_once_and_jobs_keep_what_an_update_leaves_out(database_url: str) -> None:
    tenant, plan_id = new_tenant(), "6" * 64

    async def scenario(store: PostgresStateStore) -> dict[str, Any]:
        await store.ensure_tenant(tenant, tenant)
        claims = [await store.claim_delivery(tenant, "d-1", "push", "job-1"),
                  await store.claim_delivery(tenant, "d-1", "push", "job-1")]
        await store.release_delivery(tenant, "d-1")
        claims.append(await store.claim_delivery(tenant, "d-1", "push", "job-1"))
        await store.upsert_job(tenant, "job-1", kind="push", repository="octo/repo", target="b" * 40, author="octocat")
        created = await store.get_job(tenant, "job-1")
        await store.upsert_job(tenant, "job-1", plan_id=plan_id, status="awaiting_approval",
                               detail="token ghp_0123456789abcdefghijklmnopqrstuvwxyz")
        await store.upsert_job(tenant, "job-2", kind="schedule", repository="octo/repo", target="c" * 40)
        return {"claims": claims, "created": created, "updated": await store.get_job(tenant, "job-1"),
                "for_plan": await store.job_for_plan(tenant, plan_id), "none": await store.get_job(tenant, "nope"),
                "no_plan": await store.job_for_plan(tenant, "7" * 64), "all": await store.list_jobs(tenant),
                "one": await store.list_jobs(tenant, 1)}

    seen = with_store(database_url, scenario)
    assert seen["claims"] == [True, False, True]
    created: JobRow = seen["created"]
    assert set(created) == JobRow.__required_keys__
    assert (created["kind"], created["status"], created["plan_id"], created["author"]) == ("push", "queued", None,
                                                                                          "octocat")
    updated: JobRow = seen["updated"]
    assert (updated["status"], updated["plan_id"], updated["repository"], updated["author"]) == (
        "awaiting_approval", plan_id, "octo/repo", "octocat")
    assert updated["detail"] is not None and "ghp_0123" not in updated["detail"]
    assert seen["for_plan"] == updated and seen["none"] is None and seen["no_plan"] is None
    assert [j["instance_id"] for j in seen["all"]] == ["job-2", "job-1"] and len(seen["one"]) == 1


def test_pushes_are_numbered_per_branch_atomically_and_a_job_is_claimed_once(database_url: str,
                                                                            admin_database_url: str) -> None:
    tenant, a, b = new_tenant(), "a" * 40, "b" * 40

    async def scenario(store: PostgresStateStore) -> dict[str, Any]:
        await store.ensure_tenant(tenant, tenant)
        await store.claim_delivery(tenant, "d-1", "push", None)
        together = await asyncio.gather(*(store.push_sequence(tenant, "Octo/Repo", "main", a, b) for _ in range(20)))
        later = [await store.push_sequence(tenant, "octo/repo", "main", a, b),  # the same push again: same number
                 await store.push_sequence(tenant, "octo/repo", "main", b, a),  # another push
                 await store.push_sequence(tenant, "octo/repo", "main", a, b),  # the first commits again: a new push
                 await store.push_sequence(tenant, "octo/repo", "release", a, b)]  # another branch counts apart
        claims = await asyncio.gather(*(store.claim_job(tenant, "job-1", kind="push", repository="octo/repo",
                                                        target=b, author="octocat", delivery_id="d-1")
                                        for _ in range(20)))
        first = await store.get_job(tenant, "job-1")
        await store.release_job(tenant, "job-1")
        released = await store.get_job(tenant, "job-1")
        reclaimed = await store.claim_job(tenant, "job-1", kind="push", repository="octo/repo", target=b)
        await store.upsert_job(tenant, "job-1", plan_id="6" * 64)
        await store.release_job(tenant, "job-1")  # a job with a plan was started: it is never released
        return {"together": together, "later": later, "claims": claims, "first": first, "released": released,
                "reclaimed": reclaimed, "kept": await store.get_job(tenant, "job-1")}

    seen = with_store(database_url, scenario)
    assert seen["together"] == [1] * 20
    assert seen["later"] == [1, 2, 3, 1]
    assert sorted(seen["claims"]) == [False] * 19 + [True]
    assert (seen["first"]["status"], seen["first"]["author"]) == ("queued", "octocat")
    assert seen["released"] is None and seen["reclaimed"] is True and seen["kept"] is not None
    rows = asyncio.run(owner_fetch(admin_database_url, "SELECT instance_id FROM webhook_deliveries WHERE tenant_id = $1",
                                   tenant))
    assert [r["instance_id"] for r in rows] == ["job-1"]


# -- security state -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counted:
    new_state: RateState


def test_security_state_audit_chain_credentials_tokens_routing_and_settings(database_url: str) -> None:
    tenant = new_tenant()
    at = datetime(2024, 1, 1, tzinfo=UTC)
    calls: list[tuple[int | None, str | None]] = []

    def build(previous: AuditRow | None, head: str | None) -> AuditRow:
        calls.append((previous["seq"] if previous else None, head))
        seq = previous["seq"] + 1 if previous else 1
        return AuditRow(tenant_id=tenant, seq=seq, at=at, actor="ann", role="admin", action="login", target="",
                        details='{"n":1.0}', prev_hash=previous["hash"] if previous else "0" * 64,
                        hash=f"{seq:064x}")

    async def scenario(store: PostgresStateStore) -> dict[str, Any]:
        await store.ensure_tenant(tenant, tenant)
        appended = [await store.append_audit(tenant, build), await store.append_audit(tenant, build)]
        await store.set_credential(tenant, "github", "c1")
        await store.set_credential(tenant, "databricks_token", "c2")
        await store.set_credential(tenant, "github", "c3")
        await store.revoke_token(tenant, "jti-1", at + timedelta(hours=1))
        await store.map_repository(tenant, "Octo/Repo", 42)
        await store.set_tenant_settings(tenant, {"allow_self_approval": True, "limits": {"rpm": 60}})
        return {
            "appended": appended, "audit": await store.audit_rows(tenant),
            "credentials": await store.list_credentials(tenant),
            "uses": [await store.use_token(tenant, "a-1", "8" * 64, "approve", "ann"),
                     await store.use_token(tenant, "a-1", "8" * 64, "approve", "ann")],
            "used": [await store.token_used(tenant, "a-1"), await store.token_used(tenant, "a-2")],
            "revoked": [await store.is_revoked(tenant, "jti-1"), await store.is_revoked(tenant, "jti-2")],
            "routes": [await store.tenant_for_repository("octo/REPO"), await store.tenant_for_repository("x/y")],
            "settings": await store.tenant_settings(tenant),
        }

    seen = with_store(database_url, scenario)
    assert calls == [(None, None), (1, f"{1:064x}")]  # each append sees the previous row and the recorded head
    rows, head = seen["audit"]
    assert rows == seen["appended"] and head == f"{2:064x}"
    assert set(rows[0]) == AuditRow.__required_keys__ and rows[1]["details"] == '{"n":1.0}'  # text, as hashed
    assert seen["credentials"] == [("databricks_token", "c2"), ("github", "c3")]
    assert seen["uses"] == [True, False] and seen["used"] == [True, False] and seen["revoked"] == [True, False]
    assert seen["routes"] == [tenant, None]
    assert seen["settings"] == {"allow_self_approval": True, "limits": {"rpm": 60}}


def test_concurrent_rate_limit_decisions_share_one_bucket(database_url: str) -> None:
    tenant, start = new_tenant(), datetime(2024, 1, 1, tzinfo=UTC)
    seen_states: list[RateState | None] = []

    def decide(state: RateState | None) -> Counted:
        seen_states.append(state)
        return Counted((start, (state[1] if state else 0) + 1, 0))

    async def scenario(store: PostgresStateStore) -> list[Counted]:
        await store.ensure_tenant(tenant, tenant)
        return list(await asyncio.gather(*(store.rate_limit(tenant, "k", decide) for _ in range(8))))

    decisions = with_store(database_url, scenario)
    assert sorted(d.new_state[1] for d in decisions) == list(range(1, 9))  # no lost update
    assert seen_states.count(None) == 1


# -- across concerns ---------------------------------------------------------------------------------------------


def test_every_read_is_bound_to_its_tenant(database_url: str) -> None:
    a, b, plan_id = new_tenant(), new_tenant(), "9" * 64

    async def scenario(store: PostgresStateStore) -> list[object]:
        for tenant in (a, b):
            await store.ensure_tenant(tenant, tenant)
        await store.save_plan(a, plan_header(plan_id), "{}")
        await record_completed(store, a, "m.inc", t("2024-01-01"), t("2024-01-02"), plan_id=plan_id)
        await store.upsert_job(a, "job", plan_id=plan_id)
        await store.set_credential(a, "github", "c")
        await store.use_token(a, "jti", plan_id, "approve", "ann")
        await store.revoke_token(a, "jti", datetime(2030, 1, 1, tzinfo=UTC))
        await store.set_tenant_settings(a, {"allow_self_approval": True})
        await store.append_audit(a, lambda previous, head: AuditRow(
            tenant_id=a, seq=1, at=datetime(2024, 1, 1, tzinfo=UTC), actor="x", role="admin", action="login",
            target="", details="{}", prev_hash="0" * 64, hash="f" * 64))
        await store.claim_delivery(a, "d", "push", "job")
        return [
            await store.get_plan(b, plan_id), await store.list_plans(b), await store.list_runs(b),
            await store.successful_batches(b, plan_id), await store.load_ledger(b), await store.get_job(b, "job"),
            await store.job_for_plan(b, plan_id), await store.list_jobs(b), await store.list_credentials(b),
            await store.token_used(b, "jti"), await store.is_revoked(b, "jti"), await store.tenant_settings(b),
            await store.audit_rows(b), await store.cancel_runs(b, plan_id),
            await store.claim_delivery(b, "d", "push", "job"),  # deliveries are per tenant too
            len(await store.list_runs(a)),  # and A still sees its own
        ]

    assert with_store(database_url, scenario) == [
        None, [], [], set(), {}, None, None, [], [], False, False, {}, ([], None), 0, True, 1]


def test_a_call_without_a_tenant_is_refused(database_url: str) -> None:
    with pytest.raises(StateError, match="no tenant given"):
        with_store(database_url, lambda store: store.list_plans(""))


@contextlib.asynccontextmanager
async def tcp_proxy(port: int) -> AsyncIterator[tuple[int, Callable[[], Awaitable[None]]]]:
    """A TCP proxy to 127.0.0.1:`port`: yields its own port and `cut()`, which closes it and drops every link."""
    links: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        links.extend([writer, upstream_writer])
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)

    async def cut() -> None:
        server.close()
        for writer in links:
            writer.transport.abort()
        await server.wait_closed()

    try:
        yield server.sockets[0].getsockname()[1], cut
    finally:
        server.close()


def test_a_server_that_goes_away_is_state_unavailable(database_url: str) -> None:
    scheme, _, rest = database_url.partition("://")
    user_host, _, database = rest.partition("/")
    user, _, host_port = user_host.rpartition("@")
    tenant = new_tenant()

    async def scenario() -> tuple[str | None, str]:
        async with tcp_proxy(int(host_port.rsplit(":", 1)[1])) as (port, cut):
            store = PostgresStateStore(f"{scheme}://{user}@127.0.0.1:{port}/{database}")
            try:
                await store.ensure_tenant(tenant, tenant)
                before = await store.get_plan(tenant, "0" * 64)
                await cut()
                with pytest.raises(StateUnavailableError) as lost:
                    await store.get_plan(tenant, "0" * 64)
                return before, str(lost.value)
            finally:
                await store.close()

    before, message = asyncio.run(scenario())
    assert before is None
    assert message.startswith(f"state store unreachable at {scheme}://{user}@127.0.0.1:") and message.endswith(
        "; safe to retry")
    assert "\n" not in message
