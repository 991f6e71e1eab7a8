"""The audit chain: every single-row tampering of a 20-entry chain is found at the right seq, and only there."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared_core.core.errors import AuditError, CoreError
from shared_core.security.audit import (
    GENESIS_HASH,
    HASHED_FIELDS,
    ROW_FIELDS,
    AuditEntry,
    ChainReport,
    entry_from_row,
    entry_hash,
    entry_to_row,
    format_at,
    next_entry,
    verify_chain,
)

T0 = datetime(2024, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)
ACTIONS = (
    "login",
    "plan.approved",
    "plan.rejected",
    "apply.started",
    "job.cancelled",
    "credential.set",
    "settings.changed",
)
N = 20
ENTRY_FIELDS = tuple(field.name for field in dataclasses.fields(AuditEntry))


def build_chain(tenant: str = "acme", n: int = N) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev: AuditEntry | None = None
    for i in range(n):
        prev = next_entry(
            prev,
            tenant_id=tenant,
            at=T0 + timedelta(seconds=i // 2, microseconds=i),  # some neighbours share the second
            actor=f"user{i % 3}@example.com",
            role=("viewer", "operator", "engineer", "admin")[i % 4],
            action=ACTIONS[i % len(ACTIONS)],
            target="" if i % len(ACTIONS) == 0 else f"{i:064x}",
            details={"i": i, "note": "é ✓", "nested": {"b": [1, 2.5, None, True]}},
        )
        entries.append(prev)
    return entries


CHAIN = build_chain()
OTHER = build_chain("globex")


def other_value(entry: AuditEntry, field: str) -> Any:
    """A valid value for `field` that differs from the entry's."""
    value = getattr(entry, field)
    if field == "tenant_id":
        return "acme2"
    if field == "seq":
        return value + 1
    if field == "at":
        return value + timedelta(microseconds=1)
    if field == "role":
        return "admin" if value != "admin" else "viewer"
    if field == "action":
        return "plan.approved" if value != "plan.approved" else "plan.rejected"
    if field == "details":
        return {**value, "i": -1}
    if field in ("prev_hash", "hash"):
        return ("f" if value[0] != "f" else "e") + value[1:]
    return value + "x"  # actor, target


def assert_broken(report: ChainReport, seq: int) -> None:
    assert (report.ok, report.first_broken_seq, report.checked) == (False, seq, seq - 1), report
    assert report.reason and "\n" not in report.reason


def test_chain_links_and_verifies() -> None:
    assert [e.seq for e in CHAIN] == list(range(1, N + 1))
    assert CHAIN[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(CHAIN))
    assert all(entry_hash(e) == e.hash for e in CHAIN)
    report = verify_chain(CHAIN, CHAIN[-1].hash, expected_seq=N, tenant_id="acme")
    assert report == ChainReport(ok=True, checked=N, first_broken_seq=None, reason=f"{N} entries verified")
    assert report.to_dict() == {"ok": True, "checked": N, "first_broken_seq": None, "reason": "20 entries verified"}


def test_empty_chain() -> None:
    assert verify_chain([]).ok
    assert verify_chain([], GENESIS_HASH, expected_seq=0).ok
    assert_broken(verify_chain([], CHAIN[-1].hash), 1)
    assert_broken(verify_chain([], expected_seq=3), 1)


def test_hash_is_pinned() -> None:
    """Changing the preimage (fields, order, time format, version) changes every stored hash: review it."""
    entry = next_entry(
        None,
        tenant_id="acme",
        at=T0,
        actor="ann",
        role="operator",
        action="plan.approved",
        target="p",
        details={"a": 1},
    )
    assert format_at(entry.at) == "2024-03-01T09:00:00.123456Z"
    # sha256 of {"action":"plan.approved","actor":"ann","at":"2024-03-01T09:00:00.123456Z","audit_version":1,
    #            "details":{"a":1},"prev_hash":"000...0","role":"operator","seq":1,"target":"p","tenant_id":"acme"}
    assert entry.hash == "7138db1e3f3a136eb3d13d7d0405393ca811fb951ae912d67ee3edaa50138ac8"


def test_hashed_fields_are_every_field_but_hash() -> None:
    assert set(HASHED_FIELDS) == set(ENTRY_FIELDS) - {"hash"}
    assert (*HASHED_FIELDS, "hash") == ROW_FIELDS


@pytest.mark.parametrize("field", ENTRY_FIELDS)
def test_every_changed_field_of_every_row_is_found_there(field: str) -> None:
    for k in range(N):
        entries = list(CHAIN)
        entries[k] = dataclasses.replace(entries[k], **{field: other_value(entries[k], field)})
        assert_broken(verify_chain(entries), k + 1)
        assert_broken(verify_chain(entries, CHAIN[-1].hash, expected_seq=N), k + 1)


@pytest.mark.parametrize("field", sorted(set(HASHED_FIELDS) - {"seq", "prev_hash"}))
def test_a_rewritten_row_with_a_recomputed_hash_breaks_the_next_link(field: str) -> None:
    """A forger who recomputes one row's hash breaks the link into the next row (or the stored head)."""
    for k in range(N):
        entries = list(CHAIN)
        forged = dataclasses.replace(entries[k], **{field: other_value(entries[k], field)})
        entries[k] = dataclasses.replace(forged, hash=entry_hash(forged))
        if field == "tenant_id" and k > 0:
            assert_broken(verify_chain(entries), k + 1)  # a row of "another tenant" in the middle
        elif k < N - 1:
            assert_broken(verify_chain(entries), k + 2)
        else:
            assert verify_chain(entries).ok  # undetectable from the rows alone...
            assert_broken(verify_chain(entries, CHAIN[-1].hash, expected_seq=N), N)  # ...but not against the head
            assert_broken(verify_chain(entries, CHAIN[-1].hash), N + 1)


def test_every_deleted_row_is_found() -> None:
    for k in range(N - 1):
        entries = CHAIN[:k] + CHAIN[k + 1 :]
        report = verify_chain(entries)
        assert_broken(report, k + 1)
        assert "missing" in report.reason


def test_deleting_the_last_row_is_found_only_against_the_head() -> None:
    entries = CHAIN[:-1]
    assert verify_chain(entries).ok
    assert_broken(verify_chain(entries, CHAIN[-1].hash), N)
    assert_broken(verify_chain(entries, CHAIN[-1].hash, expected_seq=N), N)


@pytest.mark.parametrize("keep", range(N))
def test_truncation_is_found_only_against_the_head(keep: int) -> None:
    entries = CHAIN[:keep]
    assert verify_chain(entries).ok  # a cut tail leaves a valid chain: documented limitation
    assert_broken(verify_chain(entries, CHAIN[-1].hash), keep + 1)
    report = verify_chain(entries, CHAIN[-1].hash, expected_seq=N)
    assert_broken(report, keep + 1)
    assert "cut" in report.reason
    assert_broken(verify_chain(entries, expected_seq=N), keep + 1)


def test_every_swap_with_the_next_row_is_found() -> None:
    for k in range(N - 1):
        entries = list(CHAIN)
        entries[k], entries[k + 1] = entries[k + 1], entries[k]
        assert_broken(verify_chain(entries), k + 1)


def test_swapping_contents_but_keeping_seq_numbers_is_found() -> None:
    """Reordering in the table: the rows keep their seq (the primary key) but trade everything else."""
    for k in range(N - 1):
        entries = list(CHAIN)
        a, b = entries[k], entries[k + 1]
        entries[k] = dataclasses.replace(b, seq=a.seq)
        entries[k + 1] = dataclasses.replace(a, seq=b.seq)
        assert_broken(verify_chain(entries), k + 1)


def forged_after(entries: list[AuditEntry], k: int) -> AuditEntry:
    """A self-consistent row that claims to follow the first k entries."""
    return next_entry(
        entries[k - 1] if k else None,
        tenant_id="acme",
        at=entries[k - 1].at if k else T0,
        actor="mallory",
        role="admin",
        action="plan.approved",
        target="f" * 64,
        details={},
    )


def test_every_forged_row_inserted_in_the_middle_is_found() -> None:
    for k in range(N):  # after the first k rows
        entries = [*CHAIN[:k], forged_after(CHAIN, k), *CHAIN[k:]]
        report = verify_chain(entries)
        assert_broken(report, k + 1)
        assert "twice" in report.reason


def test_every_crude_forged_row_is_found() -> None:
    """A copied row with a changed field and a stale hash, inserted anywhere."""
    for k in range(N + 1):
        fake = dataclasses.replace(CHAIN[max(k - 1, 0)], actor="mallory")
        entries = [*CHAIN[:k], fake, *CHAIN[k:]]
        assert_broken(verify_chain(entries), k + 1)


def test_a_forged_row_appended_at_the_end_is_found_only_against_the_head() -> None:
    entries = [*CHAIN, forged_after(CHAIN, N)]
    assert verify_chain(entries).ok
    report = verify_chain(entries, CHAIN[-1].hash)
    assert_broken(report, N + 1)
    assert "without moving the head" in report.reason
    assert_broken(verify_chain(entries, CHAIN[-1].hash, expected_seq=N), N + 1)
    assert_broken(verify_chain(entries, expected_seq=N), N + 1)


def test_every_duplicated_row_is_found() -> None:
    for k in range(N):
        entries = [*CHAIN[: k + 1], CHAIN[k], *CHAIN[k + 1 :]]
        report = verify_chain(entries)
        assert_broken(report, k + 1)
        assert "twice" in report.reason


def test_a_row_from_another_tenant_is_found_at_every_position() -> None:
    for k in range(N):
        entries = list(CHAIN)
        entries[k] = OTHER[k]
        report = verify_chain(entries)
        if k == 0:  # the chain's tenant is taken from seq 1, so seq 2 no longer links to it
            assert_broken(report, 2)
        else:
            assert_broken(report, k + 1)
            assert "another tenant" in report.reason
        assert_broken(verify_chain(entries, tenant_id="acme"), k + 1)
        assert "globex" not in report.reason  # never name another tenant


def test_a_whole_chain_of_another_tenant_is_refused_when_the_tenant_is_given() -> None:
    assert verify_chain(OTHER).ok
    assert_broken(verify_chain(OTHER, tenant_id="acme"), 1)


def test_a_replayed_earlier_row_is_found() -> None:
    entries = [*CHAIN[:5], CHAIN[1], *CHAIN[5:]]
    report = verify_chain(entries)
    assert_broken(report, 6)
    assert "out of order" in report.reason


def test_time_going_backwards_in_a_rehashed_chain_is_found() -> None:
    """Only a forger who rehashes the rest of the chain gets this far; the time order still gives them away."""
    entries = list(CHAIN[:3])
    prev = entries[-1]
    late = dataclasses.replace(prev, seq=4, prev_hash=prev.hash, at=prev.at - timedelta(seconds=1), hash="")
    entries.append(dataclasses.replace(late, hash=entry_hash(late)))
    report = verify_chain(entries)
    assert_broken(report, 4)
    assert "dated before" in report.reason


def test_first_row_must_start_from_genesis() -> None:
    first = dataclasses.replace(CHAIN[0], prev_hash="1" * 64, hash="")
    report = verify_chain([dataclasses.replace(first, hash=entry_hash(first))])
    assert_broken(report, 1)
    assert "genesis" in report.reason


def test_only_the_first_break_is_reported() -> None:
    entries = list(CHAIN)
    entries[14] = dataclasses.replace(entries[14], actor="x")
    del entries[3]
    assert_broken(verify_chain(entries), 4)


def test_verify_reads_any_iterable_once() -> None:
    assert verify_chain(iter(CHAIN), CHAIN[-1].hash).ok


def test_row_round_trip() -> None:
    for entry in CHAIN:
        row = entry_to_row(entry)
        assert tuple(row) == ROW_FIELDS
        assert isinstance(row["details"], str)
        assert entry_from_row(row) == entry
        assert entry_from_row({**row, "at": row["at"].isoformat(), "details": entry.details}) == entry
    assert verify_chain([entry_from_row(entry_to_row(e)) for e in CHAIN], CHAIN[-1].hash).ok


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda row: row.pop("hash"), "lacks column"),
        (lambda row: row.update(at="yesterday"), "not ISO-8601"),
        (lambda row: row.update(at=datetime(2024, 1, 1)), "aware"),
        (lambda row: row.update(details="{"), "not JSON"),
        (lambda row: row.update(details="[1]"), "JSON object"),
        (lambda row: row.update(seq="1"), "positive integer"),
        (lambda row: row.update(seq=0), "positive integer"),
        (lambda row: row.update(actor=None), "printable"),
        (lambda row: row.update(actor=""), "empty"),
        (lambda row: row.update(role="a\nb"), "printable"),
        (lambda row: row.update(action="Plan Approved"), "malformed"),
        (lambda row: row.update(hash=None), "text"),
    ],
)
def test_malformed_rows_are_refused(change: Callable[[dict[str, Any]], object], message: str) -> None:
    row: dict[str, Any] = dict(entry_to_row(CHAIN[0]))  # a row as any store might return it, to be broken
    change(row)
    with pytest.raises(AuditError) as caught:
        entry_from_row(row)
    assert message in str(caught.value)
    assert isinstance(caught.value, CoreError)


def test_next_entry_refuses_another_tenant() -> None:
    with pytest.raises(AuditError) as caught:
        next_entry(
            CHAIN[-1],
            tenant_id="globex",
            at=T0 + timedelta(days=1),
            actor="a",
            role="r",
            action="login",
            target="",
            details={},
        )
    assert "'globex'" in str(caught.value)


def test_next_entry_refuses_time_going_backwards_but_allows_equal_times() -> None:
    with pytest.raises(AuditError) as caught:
        next_entry(
            CHAIN[-1],
            tenant_id="acme",
            at=CHAIN[-1].at - timedelta(microseconds=1),
            actor="a",
            role="r",
            action="login",
            target="",
            details={},
        )
    assert "before the head" in str(caught.value)
    same = next_entry(
        CHAIN[-1], tenant_id="acme", at=CHAIN[-1].at, actor="a", role="r", action="login", target="", details={}
    )
    assert verify_chain([*CHAIN, same]).ok


def test_next_entry_refuses_a_tampered_head() -> None:
    with pytest.raises(AuditError) as caught:
        next_entry(
            dataclasses.replace(CHAIN[-1], actor="x"),
            tenant_id="acme",
            at=T0 + timedelta(days=1),
            actor="a",
            role="r",
            action="login",
            target="",
            details={},
        )
    assert "does not match its hash" in str(caught.value)


@pytest.mark.parametrize(
    "details",
    [{"x": float("nan")}, {"x": object()}, {1: "a"}, [("a", 1)], {"x": "y" * 70_000}],
)
def test_next_entry_refuses_bad_details(details: Any) -> None:
    with pytest.raises(AuditError):
        next_entry(None, tenant_id="acme", at=T0, actor="a", role="r", action="login", target="", details=details)


def test_times_are_normalized_to_utc() -> None:
    paris = timezone(timedelta(hours=2))
    entry = next_entry(
        None, tenant_id="acme", at=T0.astimezone(paris), actor="a", role="r", action="login", target="", details={}
    )
    assert entry.at.tzinfo is UTC and entry.at == T0
    with pytest.raises(AuditError):
        next_entry(
            None, tenant_id="acme", at=datetime(2024, 1, 1), actor="a", role="r", action="login", target="", details={}
        )


def test_details_are_normalized_so_round_trips_compare_equal() -> None:
    entry = next_entry(
        None,
        tenant_id="acme",
        at=T0,
        actor="a",
        role="r",
        action="login",
        target="",
        details={"t": (1, 2), "n": {"2": 1}},
    )
    assert entry.details == {"t": [1, 2], "n": {"2": 1}}
    assert entry_from_row(entry_to_row(entry)) == entry


def test_bad_expected_head_is_an_error() -> None:
    with pytest.raises(AuditError):
        verify_chain(CHAIN, "HEAD")
    with pytest.raises(AuditError):
        verify_chain(CHAIN, expected_seq=-1)


texts = st.text(st.characters(codec="utf-8"), max_size=30).filter(str.isprintable)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
steps = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=10**9),  # microseconds after the previous entry
        texts.filter(bool),
        st.sampled_from(("viewer", "operator", "engineer", "admin", "service")),
        st.sampled_from(ACTIONS),
        texts,
        st.dictionaries(texts, json_values, max_size=4),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(tenant=st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True), steps=steps)
def test_any_chain_built_with_next_entry_verifies(
    tenant: str, steps: list[tuple[int, str, str, str, str, dict[str, Any]]]
) -> None:
    entries: list[AuditEntry] = []
    at = T0
    for delay, actor, role, action, target, details in steps:
        at += timedelta(microseconds=delay)
        entries.append(
            next_entry(
                entries[-1] if entries else None,
                tenant_id=tenant,
                at=at,
                actor=actor,
                role=role,
                action=action,
                target=target,
                details=details,
            )
        )
    head_hash = entries[-1].hash if entries else GENESIS_HASH
    report = verify_chain(entries, head_hash, expected_seq=len(entries), tenant_id=tenant)
    assert report.ok and report.checked == len(entries)
    rows = [entry_from_row(entry_to_row(entry)) for entry in entries]
    assert rows == entries
    assert verify_chain(rows, head_hash, expected_seq=len(entries)).ok
