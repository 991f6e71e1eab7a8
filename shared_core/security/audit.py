"""The audit log as a tamper-evident hash chain, one chain per tenant: build entries, verify chains.

Each entry's `hash` is the SHA-256 of the canonical JSON of its fields (`HASHED_FIELDS`, every field
but `hash`, plus the format version `AUDIT_VERSION`), and that content includes `prev_hash`, the previous
entry's hash (`GENESIS_HASH` for seq 1). So changing, deleting, reordering, duplicating or inserting a row,
or moving one in from another tenant's chain, breaks a link that `verify_chain` finds and names.

What the rows alone cannot show, and how it is covered:

- **A cut tail.** Deleting the newest entries leaves a shorter chain that is perfectly valid. Keep the head
  (the last `hash` and `seq`) apart from the rows, e.g. in the tenant's row, updated in the same transaction
  as each append, and pass it as `expected_head` / `expected_seq`: then truncation is reported too.
- **A rewritten suffix.** The hash is not keyed, so whoever can write the table can recompute every hash
  from the edited row to the end. The stored head catches this unless it is rewritten as well; for that
  threat anchor the head outside the database (evidence blobs, immutable storage) and verify against it.
  The application role should have INSERT and SELECT only on the audit table.

For the store: append under a lock on the tenant's head (e.g. `SELECT ... FOR UPDATE` of the tenant row)
so two writers never build on the same head, and keep `(tenant_id, seq)` unique. `next_entry` refuses a
time before the head's, so pass `at=max(now, head.at)` when instances' clocks may disagree. Keep
`details` as text (`entry_to_row` gives canonical JSON): jsonb may rewrite numbers and break the hash.
`details` must never hold secrets (scrub them first): the log is read by every viewer of the tenant.
Pure: times are arguments; nothing here reads the clock or does I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from shared_core.core.errors import AuditError
from shared_core.core.project.models import canonical_json, sha256_json
from shared_core.core.state import AuditRow, JSONValue

AUDIT_VERSION = 1  # part of every hash preimage; bump it (and keep the old rule) if the fields change
GENESIS_HASH = "0" * 64
HASHED_FIELDS = ("tenant_id", "seq", "at", "actor", "role", "action", "target", "details", "prev_hash")
ROW_FIELDS = (*HASHED_FIELDS, "hash")
MAX_TEXT_CHARS = 500
MAX_DETAILS_CHARS = 65_536

_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class AuditEntry:
    """One audit record: who (`actor` with `role`) did what (`action`) to what (`target`), when (`at`).

    `details` is a JSON object; it is normalized on construction (JSON round trip), so an entry read
    back from the store compares equal to the one written. Do not mutate it: the hash covers it.
    """

    tenant_id: str
    seq: int  # 1, 2, 3, ... per tenant
    at: datetime  # aware; normalized to UTC, microseconds kept
    actor: str  # the authenticated subject
    role: str  # the role the actor acted with
    action: str  # e.g. plan.approved, plan.rejected, apply.started, job.cancelled, credential.set, login
    target: str  # e.g. a plan ID; "" when the action has none (login)
    details: Mapping[str, JSONValue]
    prev_hash: str  # the previous entry's hash; GENESIS_HASH for seq 1
    hash: str  # entry_hash(self)

    def __post_init__(self) -> None:
        _check_text("tenant_id", self.tenant_id)
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 1:
            raise AuditError(f"audit entry seq {self.seq!r} is not a positive integer; chains start at seq 1")
        object.__setattr__(self, "at", _utc(self.at))
        _check_text("actor", self.actor)
        _check_text("role", self.role)
        if not isinstance(self.action, str) or len(self.action) > MAX_TEXT_CHARS or not _ACTION.fullmatch(self.action):
            raise AuditError(
                f"audit action {str(self.action)[:80]!r} is malformed; "
                "use dotted lower-case words such as 'plan.approved'"
            )
        _check_text("target", self.target, allow_empty=True)
        object.__setattr__(self, "details", _normalize_details(self.details))
        if not isinstance(self.prev_hash, str) or not isinstance(self.hash, str):
            raise AuditError(f"audit entry seq {self.seq}: prev_hash and hash must be text")


@dataclass(frozen=True)
class ChainReport:
    """The outcome of `verify_chain`.

    `first_broken_seq` is the sequence number at which verification first fails: every entry before it is
    intact and linked from the genesis hash; it (or the link into it) is not. `checked` counts the entries
    before the break (all of them when `ok`). `reason` is one line saying what is wrong and what it means.
    """

    ok: bool
    checked: int
    first_broken_seq: int | None
    reason: str

    def to_dict(self) -> dict[str, JSONValue]:
        """JSON-able form for `GET /api/audit/verify` and `ironlayer audit verify --json`."""
        return {
            "ok": self.ok,
            "checked": self.checked,
            "first_broken_seq": self.first_broken_seq,
            "reason": self.reason,
        }


def format_at(at: datetime) -> str:
    """The hashed text of an entry time: ISO-8601 UTC with microseconds and `Z`.

    >>> format_at(datetime(2024, 3, 1, 12, 0, 5, 7, tzinfo=UTC))
    '2024-03-01T12:00:05.000007Z'

    Raises:
        AuditError: `at` has no time zone.
    """
    return _utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(entry: AuditEntry) -> str:
    """SHA-256 (hex) of the canonical JSON of every field of `entry` but `hash` (which is ignored).

    The preimage lists the fields explicitly, with `AUDIT_VERSION` and the time as `format_at` text.
    """
    return sha256_json(
        {
            "audit_version": AUDIT_VERSION,
            "tenant_id": entry.tenant_id,
            "seq": entry.seq,
            "at": format_at(entry.at),
            "actor": entry.actor,
            "role": entry.role,
            "action": entry.action,
            "target": entry.target,
            "details": entry.details,
            "prev_hash": entry.prev_hash,
        }
    )


def next_entry(
    prev: AuditEntry | None,
    *,
    tenant_id: str,
    at: datetime,
    actor: str,
    role: str,
    action: str,
    target: str,
    details: Mapping[str, object],
) -> AuditEntry:
    """The entry that follows `prev` (the tenant's current head; None for the tenant's first entry).

    Args:
        prev: the head entry, as read from the store under the append lock.
        tenant_id, actor, role, action, target, details: the entry's content (see `AuditEntry`).
        at: when it happened (aware; kept to the microsecond).

    Returns:
        The new entry with `seq`, `prev_hash` and `hash` filled in.

    Raises:
        AuditError: a malformed field, `prev` belongs to another tenant or does not match its own hash,
            or `at` is before `prev.at`.

    >>> first = next_entry(None, tenant_id="acme", at=datetime(2024, 3, 1, tzinfo=UTC), actor="ann",
    ...                    role="operator", action="plan.approved", target="p1", details={})
    >>> second = next_entry(first, tenant_id="acme", at=datetime(2024, 3, 2, tzinfo=UTC), actor="bob",
    ...                     role="engineer", action="apply.started", target="p1", details={"wave": 1})
    >>> (first.seq, first.prev_hash == GENESIS_HASH, second.seq, second.prev_hash == first.hash)
    (1, True, 2, True)
    >>> verify_chain([first, second]).ok
    True
    """
    at = _utc(at)
    if prev is None:
        seq, prev_hash = 1, GENESIS_HASH
    else:
        if prev.tenant_id != tenant_id:
            raise AuditError(
                f"cannot append an entry for tenant {tenant_id!r} to the audit chain of tenant {prev.tenant_id!r}; "
                "read the head of the entry's own tenant"
            )
        if entry_hash(prev) != prev.hash:
            raise AuditError(
                f"the head of tenant {tenant_id!r}'s audit chain (seq {prev.seq}) does not match its hash; "
                "run `ironlayer audit verify` before appending"
            )
        if at < prev.at:
            raise AuditError(
                f"audit entry time {format_at(at)} is before the head's {format_at(prev.at)} (seq {prev.seq}) "
                f"of tenant {tenant_id!r}; pass the later of the two"
            )
        seq, prev_hash = prev.seq + 1, prev.hash
    draft = AuditEntry(tenant_id, seq, at, actor, role, action, target, _normalize_details(details), prev_hash, hash="")
    return replace(draft, hash=entry_hash(draft))


def verify_chain(
    entries: Iterable[AuditEntry],
    expected_head: str | None = None,
    *,
    expected_seq: int | None = None,
    tenant_id: str | None = None,
) -> ChainReport:
    """Check one tenant's whole chain, in `seq` order from seq 1, and report the first broken link.

    Detected from the rows alone: a changed field (hash mismatch), a deleted row (seq gap), reordered
    rows, a row inserted in the middle (a duplicate seq, or a broken `prev_hash` link), a row of another
    tenant, a duplicated row, and time going backwards. A cut tail is detected only against a head kept
    apart from the rows: `expected_head` (the last hash) and, better, `expected_seq` (the last seq).
    With only `expected_head`, a mismatch is reported at the seq after the last entry (the tail is
    missing, or the chain was rewritten to its end), or after the entry whose hash is the head (entries
    were appended without moving the head).

    Args:
        entries: the tenant's entries ordered by seq (any iterable; it is read once).
        expected_head: the separately kept hash of the newest entry (`GENESIS_HASH` for an empty log).
        expected_seq: the separately kept seq of the newest entry (0 for an empty log).
        tenant_id: the tenant the chain must belong to (default: the first entry's).

    Raises:
        AuditError: `expected_head` is not 64 lowercase hex digits, or `expected_seq` is negative.
    """
    if expected_head is not None and not _HEX64.fullmatch(expected_head):
        raise AuditError("the expected audit head is not a SHA-256 hash (64 lowercase hex digits)")
    if expected_seq is not None and expected_seq < 0:
        raise AuditError(f"the expected audit head seq {expected_seq} is negative")
    prev: AuditEntry | None = None
    head_seen_at: int | None = None
    for position, entry in enumerate(entries, start=1):
        problem = _check_link(position, entry, prev, tenant_id)
        if problem is not None:
            return _broken(*problem)
        if tenant_id is None:
            tenant_id = entry.tenant_id
        if entry.hash == expected_head:
            head_seen_at = entry.seq
        prev = entry
    last_seq, last_hash = (prev.seq, prev.hash) if prev is not None else (0, GENESIS_HASH)
    if expected_seq is not None and last_seq < expected_seq:
        return _broken(
            last_seq + 1, f"the chain ends at seq {last_seq} but its head is at seq {expected_seq}: the tail was cut"
        )
    if expected_seq is not None and last_seq > expected_seq:
        return _broken(
            expected_seq + 1,
            f"seq {expected_seq + 1} to {last_seq} are past the recorded head (seq {expected_seq}): "
            "they were appended without moving the head",
        )
    if expected_head is not None and expected_head != last_hash:
        if expected_seq is not None:
            return _broken(
                last_seq, f"seq {last_seq} does not match the recorded head hash: the chain was rewritten to its end"
            )
        if head_seen_at is not None:
            return _broken(
                head_seen_at + 1,
                f"the recorded head is seq {head_seen_at}; seq {head_seen_at + 1} to {last_seq} were appended "
                "without moving the head",
            )
        return _broken(
            last_seq + 1,
            f"the chain ends at seq {last_seq} but does not reach the recorded head: "
            "the tail was cut, or the chain was rewritten to its end",
        )
    return ChainReport(ok=True, checked=last_seq, first_broken_seq=None, reason=f"{last_seq} entries verified")


def entry_to_row(entry: AuditEntry) -> AuditRow:
    """The entry as the store's column values; `details` is canonical JSON text (store it as `text`)."""
    return {
        "tenant_id": entry.tenant_id,
        "seq": entry.seq,
        "at": entry.at,
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "target": entry.target,
        "details": canonical_json(entry.details),
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def entry_from_row(row: Mapping[str, Any]) -> AuditEntry:  # Any: a row as stored, every value checked here
    """An entry from the store's column values (the inverse of `entry_to_row`).

    `at` may be an aware datetime or ISO-8601 text; `details` JSON text or an already decoded object.
    The hashes are not checked here: `verify_chain` does that and reports where.

    Raises:
        AuditError: a column is missing or has the wrong type.
    """
    missing = [name for name in ROW_FIELDS if name not in row]
    if missing:
        raise AuditError(f"audit row lacks column(s) {', '.join(missing)}; select all of {', '.join(ROW_FIELDS)}")
    seq = row["seq"]
    at = row["at"]
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            raise AuditError(f"audit row seq {seq!r}: time {at[:40]!r} is not ISO-8601") from None
    details = row["details"]
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            raise AuditError(f"audit row seq {seq!r}: details are not JSON") from None
    return AuditEntry(
        tenant_id=row["tenant_id"],
        seq=seq,
        at=at,
        actor=row["actor"],
        role=row["role"],
        action=row["action"],
        target=row["target"],
        details=details,
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def _check_link(
    position: int, entry: AuditEntry, prev: AuditEntry | None, tenant_id: str | None
) -> tuple[int, str] | None:
    """(first broken seq, reason) if `entry`, found at `position`, does not continue the chain; else None."""
    if entry_hash(entry) != entry.hash:
        return position, f"seq {position}: the entry does not match its hash (a field was changed after writing)"
    if tenant_id is not None and entry.tenant_id != tenant_id:
        return position, f"seq {position}: the entry belongs to another tenant's chain"
    if prev is not None and entry.seq == prev.seq:
        return entry.seq, f"seq {entry.seq} appears twice (a row was inserted or duplicated)"
    if entry.seq > position:
        return position, f"seq {position} is missing (seq {entry.seq} comes next): a row was deleted or moved"
    if entry.seq < position:
        return position, f"seq {entry.seq} comes after seq {position - 1}: the rows are out of order"
    if prev is None and entry.prev_hash != GENESIS_HASH:
        return position, "seq 1 does not start from the genesis hash: earlier rows were removed or it was forged"
    if prev is not None and entry.prev_hash != prev.hash:
        return position, f"seq {position} does not link to seq {prev.seq} (prev_hash differs): a row was replaced"
    if prev is not None and entry.at < prev.at:
        return position, f"seq {position} is dated before seq {prev.seq}: the rows were reordered or forged"
    return None


def _broken(seq: int, reason: str) -> ChainReport:
    return ChainReport(ok=False, checked=seq - 1, first_broken_seq=seq, reason=reason)


def _utc(at: object) -> datetime:
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise AuditError(f"audit time {at!r} is not an aware datetime; pass UTC times")
    return at.astimezone(UTC)


def _check_text(field: str, value: object, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS or not value.isprintable():
        raise AuditError(f"audit {field} {str(value)[:80]!r} must be printable text of at most {MAX_TEXT_CHARS} chars")
    if not value and not allow_empty:
        raise AuditError(f"audit {field} is empty; every entry names its {field}")


def _normalize_details(details: object) -> dict[str, JSONValue]:
    if not isinstance(details, Mapping) or not all(isinstance(key, str) for key in details):
        raise AuditError("audit details must be a JSON object with text keys")
    try:
        text = canonical_json(dict(details))
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit details are not JSON-able ({exc}); pass strings, numbers, lists and objects") from None
    if len(text) > MAX_DETAILS_CHARS:
        raise AuditError(f"audit details are {len(text)} chars of JSON; keep them under {MAX_DETAILS_CHARS}")
    normalized: dict[str, JSONValue] = json.loads(text)
    return normalized
