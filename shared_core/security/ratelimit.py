"""Rate limits as pure decisions over a stored counter, so every function instance shares one limit.

The algorithm is the sliding-window counter. Time is cut into fixed windows of length `window`, aligned
to the Unix epoch; a `BucketState` holds the start of the current window, the requests allowed in it
(`count`) and in the window before (`previous_count`). A request at offset `e` into the current window
is allowed when, counting it,

    previous_count * (window - e) / window + count + 1 <= limit

i.e. the previous window's requests are assumed spread evenly and weighted by the part of the sliding
window that still overlaps it. Refused requests are not counted. Arithmetic is exact (integer
microseconds), so the guarantees below hold to the microsecond, for requests in time order:

1. every aligned window admits at most `limit` requests;
2. any interval of length `window` admits fewer than `limit * (1 + x / window)` requests, where `x` is
   how far it reaches into the later of the two aligned windows it overlaps; hence at most
   `2 * limit - 1`, a bound that is reached (`limit` at the very end of one window, `limit - 1` just
   before the end of the next);
3. `retry_after_seconds` of a refusal is the least whole number of seconds after which the same request
   would be allowed if nothing else arrived (the estimate only falls as time passes), and is >= 1.

A request dated before the state's window (another instance's clock is behind) is counted in that
window, as if it arrived at its start. A state whose window does not fit the limit's window length (the
setting changed) starts afresh. The store keeps one row per key (`limit_key`, `tenant_key`) with the
three fields, and applies `decide` under a row lock (`SELECT ... FOR UPDATE`, then an upsert of
`new_state`) so concurrent instances never lose a count. Pure: `now` is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from shared_core.core.errors import RateLimitedError
from shared_core.core.project.models import sha256_json

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SECOND_US = 1_000_000


@dataclass(frozen=True)
class RateLimit:
    """At most about `limit` requests per `window` (see the module docstring for the exact guarantee)."""

    limit: int
    window: timedelta

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"rate limit {self.limit!r} must be a positive integer of requests")
        if not isinstance(self.window, timedelta) or self.window <= timedelta(0):
            raise ValueError(f"rate limit window {self.window!r} must be a positive duration")

    @property
    def window_us(self) -> int:
        return self.window // _MICROSECOND


@dataclass(frozen=True)
class BucketState:
    """The stored counter of one key: the current window's start and the counts of it and the one before."""

    window_start: datetime  # aware, aligned to the epoch in multiples of the window length
    count: int  # requests allowed in the current window
    previous_count: int  # requests allowed in the window before it

    def __post_init__(self) -> None:
        if self.window_start.tzinfo is None or self.window_start.utcoffset() is None:
            raise ValueError(f"window_start={self.window_start.isoformat()} has no time zone; store it as timestamptz")
        if min(self.count, self.previous_count) < 0:
            raise ValueError(f"rate limit counts {self.count}, {self.previous_count} must not be negative")


@dataclass(frozen=True)
class Decision:
    """Whether a request may proceed, when to retry if not, and the state to store either way."""

    allowed: bool
    retry_after_seconds: int  # >= 1 when refused, 0 when allowed: the `Retry-After` header
    new_state: BucketState
    remaining: int  # requests still allowed right now after this one (for `RateLimit-Remaining`)


@dataclass(frozen=True)
class CombinedDecision:
    """The decision over several limits (e.g. the tenant's and the user's) that must all allow."""

    allowed: bool
    retry_after_seconds: int
    new_states: tuple[BucketState, ...]  # in the order of the checks


def limit_key(tenant_id: str, subject: str, endpoint: str) -> str:
    """The key of one user's limit on one endpoint; the subject (maybe an email) is hashed, not stored.

    Pass the route template (`GET /api/plans/{plan_id}`), never the concrete path, or a caller could
    step around the limit by varying the path.

    >>> limit_key("acme", "ann@example.com", "GET /api/plans").startswith("user:")
    True
    """
    return "user:" + sha256_json(["user", tenant_id, subject, endpoint])


def tenant_key(tenant_id: str) -> str:
    """The key of a tenant's overall limit.

    >>> tenant_key("acme")
    'tenant:acme'
    """
    return f"tenant:{tenant_id}"


def window_start_for(now: datetime, limit: RateLimit) -> datetime:
    """The start of the aligned window that holds `now`.

    >>> window_start_for(datetime(2024, 3, 1, 12, 0, 42, tzinfo=UTC), RateLimit(10, timedelta(minutes=1)))
    datetime.datetime(2024, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)
    """
    _check_now(now)
    return EPOCH + ((now - EPOCH) // limit.window) * limit.window


def decide(state: BucketState | None, *, now: datetime, limit: RateLimit) -> Decision:
    """Allow or refuse one request at `now` against the stored `state` (None: never seen).

    Returns:
        The decision; store `new_state` (it also records window rollover when the request is refused).

    >>> hourly = RateLimit(2, timedelta(hours=1))
    >>> now = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
    >>> first = decide(None, now=now, limit=hourly)
    >>> second = decide(first.new_state, now=now, limit=hourly)
    >>> third = decide(second.new_state, now=now, limit=hourly)
    >>> (first.allowed, second.allowed, third.allowed, third.retry_after_seconds)
    (True, True, False, 3600)
    """
    current = _current_state(state, now, limit)
    w = limit.window_us
    offset = max(0, (now - current.window_start) // _MICROSECOND)  # 0 when now is before the window
    weighted = current.previous_count * (w - offset)  # the previous window's share, times w
    if weighted + (current.count + 1) * w <= limit.limit * w:
        new_state = BucketState(current.window_start, current.count + 1, current.previous_count)
        remaining = (limit.limit * w - weighted - new_state.count * w) // w
        return Decision(allowed=True, retry_after_seconds=0, new_state=new_state, remaining=remaining)
    wait_us = (_earliest_allowed(current, limit) - now) // _MICROSECOND
    retry_after = max(1, -(-wait_us // _SECOND_US))
    return Decision(allowed=False, retry_after_seconds=retry_after, new_state=current, remaining=0)


def decide_all(checks: Sequence[tuple[BucketState | None, RateLimit]], *, now: datetime) -> CombinedDecision:
    """Allow a request only if every limit allows it; count it against all of them, or against none.

    Refused, it is counted nowhere (a user's refused burst does not eat the tenant's allowance), and
    `retry_after_seconds` is the longest wait among the refusing limits.
    """
    decisions = [decide(state, now=now, limit=limit) for state, limit in checks]
    if all(decision.allowed for decision in decisions):
        return CombinedDecision(True, 0, tuple(decision.new_state for decision in decisions))
    rolled = tuple(_current_state(state, now, limit) for state, limit in checks)  # window rollover only, no count
    retry_after = max(decision.retry_after_seconds for decision in decisions if not decision.allowed)
    return CombinedDecision(False, retry_after, rolled)


class Verdict(Protocol):
    """Any decision that says whether a request may proceed and, if not, when to retry (`Decision`, ...)."""

    @property
    def allowed(self) -> bool: ...

    @property
    def retry_after_seconds(self) -> int: ...


def ensure_allowed(decision: Verdict, what: str) -> None:
    """Raise `RateLimitedError` (it carries the `Retry-After` seconds) if `decision` refused the request.

    Args:
        what: names the limit for the message, e.g. "requests to POST /api/plans".
    """
    if not decision.allowed:
        raise RateLimitedError(
            f"too many {what}; retry in {decision.retry_after_seconds} s",
            retry_after_seconds=decision.retry_after_seconds,
        )


def _current_state(state: BucketState | None, now: datetime, limit: RateLimit) -> BucketState:
    """`state` rolled forward to the window holding `now` (or kept, if `now` is before it)."""
    start = window_start_for(now, limit)
    if state is None or (state.window_start - EPOCH) % limit.window:
        return BucketState(start, 0, 0)
    if start <= state.window_start:
        return state
    if start - state.window_start == limit.window:
        return BucketState(start, 0, state.count)
    return BucketState(start, 0, 0)


def _earliest_allowed(state: BucketState, limit: RateLimit) -> datetime:
    """The first instant a request would be allowed, if none arrives before (the estimate never rises)."""
    w, cap = limit.window_us, limit.limit
    p, c = state.previous_count, state.count
    # In this window: p * (w - e) + (c + 1) * w <= cap * w  <=>  e >= w - (cap - c - 1) * w / p
    if c + 1 <= cap and p > 0:
        offset = w - ((cap - c - 1) * w) // p
        if offset < w:
            return state.window_start + offset * _MICROSECOND
    # In the next window, whose previous count is c: c * (w - e) + w <= cap * w
    next_start = state.window_start + limit.window
    if c == 0:
        return next_start
    offset = max(0, w - ((cap - 1) * w) // c)
    if offset < w:
        return next_start + offset * _MICROSECOND
    return next_start + limit.window  # the window after: nothing weighs on it


def _check_now(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now={now.isoformat()} has no time zone; pass an aware UTC datetime")
