"""Sliding-window-counter rate limits: bursts, rollover, the weighted estimate, Retry-After, and the guarantees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.http.errors import status_of
from shared_core.core.errors import CoreError, RateLimitedError
from shared_core.security.ratelimit import (
    BucketState,
    Decision,
    RateLimit,
    decide,
    decide_all,
    ensure_allowed,
    limit_key,
    tenant_key,
    window_start_for,
)

W = timedelta(minutes=1)
PER_MINUTE = RateLimit(5, W)
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)  # a window start
US = timedelta(microseconds=1)


def run(times: list[datetime], limit: RateLimit, state: BucketState | None = None) -> list[Decision]:
    """Decide each request in turn, storing every new state as the store would."""
    decisions = []
    for now in times:
        decision = decide(state, now=now, limit=limit)
        state = decision.new_state
        decisions.append(decision)
    return decisions


def test_a_burst_up_to_the_limit_passes_and_the_next_is_refused() -> None:
    now = T0 + timedelta(seconds=10)
    decisions = run([now] * 7, PER_MINUTE)
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0]
    assert [d.retry_after_seconds for d in decisions[:5]] == [0] * 5
    # Next window starts at T0+60 with previous_count 5: 5 * (60 - e) / 60 + 1 <= 5 needs e >= 12 s.
    assert decisions[5].retry_after_seconds == 62
    assert decisions[5].new_state == BucketState(T0, 5, 0)
    assert decide(decisions[5].new_state, now=now + timedelta(seconds=62), limit=PER_MINUTE).allowed
    assert not decide(decisions[5].new_state, now=now + timedelta(seconds=61), limit=PER_MINUTE).allowed


def test_window_rollover_weights_the_previous_window() -> None:
    full = BucketState(T0, 5, 0)
    half = T0 + W + timedelta(seconds=30)  # estimate 5 * 30/60 = 2.5 before any request
    decisions = run([half] * 3, PER_MINUTE, full)
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[0].new_state == BucketState(T0 + W, 1, 5)
    assert [d.remaining for d in decisions[:2]] == [1, 0]  # floor(5 - 3.5), floor(5 - 4.5)
    # 5 * (60 - e) / 60 + 3 <= 5 needs e >= 36 s, i.e. 6 s after 30 s.
    assert decisions[2].retry_after_seconds == 6


def test_two_windows_later_nothing_weighs() -> None:
    decisions = run([T0 + 2 * W + timedelta(seconds=1)] * 6, PER_MINUTE, BucketState(T0, 5, 5))
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert decisions[0].new_state == BucketState(T0 + 2 * W, 1, 0)


@pytest.mark.parametrize(
    ("state", "offset_s", "allowed"),
    [
        # estimate = previous * (60 - offset) / 60 + count; allowed when estimate + 1 <= 5
        (BucketState(T0, 0, 4), 0, True),  # 4 + 0 + 1 = 5
        (BucketState(T0, 0, 5), 0, False),  # 5 + 1 = 6
        (BucketState(T0, 0, 5), 11, False),  # 5 * 49/60 = 4.08; + 1 > 5
        (BucketState(T0, 0, 5), 12, True),  # 5 * 48/60 = 4; + 1 = 5
        (BucketState(T0, 2, 5), 35, False),  # 5 * 25/60 = 2.08; + 2 + 1 > 5
        (BucketState(T0, 2, 5), 36, True),  # 5 * 24/60 = 2; + 2 + 1 = 5
        (BucketState(T0, 4, 5), 59, False),  # 5/60 + 4 + 1 > 5
        (BucketState(T0, 4, 0), 0, True),
        (BucketState(T0, 5, 0), 59, False),
        (BucketState(T0, 2, 3), 20, True),  # 3 * 40/60 = 2; + 2 + 1 = 5
        (BucketState(T0, 2, 3), 19, False),  # 3 * 41/60 = 2.05; + 2 + 1 > 5
    ],
)
def test_the_weighted_estimate(state: BucketState, offset_s: int, allowed: bool) -> None:
    decision = decide(state, now=T0 + timedelta(seconds=offset_s), limit=PER_MINUTE)
    assert decision.allowed is allowed
    if allowed:
        assert decision.new_state == BucketState(T0, state.count + 1, state.previous_count)
    else:
        assert decision.new_state == state and decision.retry_after_seconds >= 1


def test_the_estimate_is_exact_at_the_microsecond() -> None:
    limit = RateLimit(3, timedelta(seconds=3))  # previous 3: allowed when 3 * (3 s - e) / 3 s + 1 <= 3, e >= 1 s
    state = BucketState(window_start_for(T0, limit), 0, 3)
    assert not decide(state, now=state.window_start + timedelta(seconds=1) - US, limit=limit).allowed
    assert decide(state, now=state.window_start + timedelta(seconds=1), limit=limit).allowed


def test_retry_after_rounds_up_and_is_at_least_one() -> None:
    limit = RateLimit(1, timedelta(seconds=10))
    state = decide(None, now=T0, limit=limit).new_state
    almost = T0 + timedelta(seconds=10) - US  # earliest retry: T0 + 20 s (previous 1 weighs until then)
    assert decide(state, now=almost, limit=limit).retry_after_seconds == 11
    late = decide(state, now=T0 + timedelta(seconds=19, microseconds=999_999), limit=limit)
    assert (late.allowed, late.retry_after_seconds) == (False, 1)


def test_limit_one_waits_out_the_next_window() -> None:
    """With limit 1 the previous window's request weighs on the whole next window."""
    decisions = run([T0, T0 + timedelta(seconds=59), T0 + timedelta(seconds=119), T0 + 2 * W], RateLimit(1, W))
    assert [d.allowed for d in decisions] == [True, False, False, True]
    assert [d.retry_after_seconds for d in decisions] == [0, 61, 1, 0]


def test_a_request_dated_before_the_window_counts_in_it() -> None:
    """Another instance's clock is behind: its request counts in the stored (newer) window."""
    state = BucketState(T0 + W, 4, 0)
    decision = decide(state, now=T0 + timedelta(seconds=50), limit=PER_MINUTE)
    assert decision.allowed and decision.new_state == BucketState(T0 + W, 5, 0)
    refused = decide(decision.new_state, now=T0 + timedelta(seconds=50), limit=PER_MINUTE)
    assert not refused.allowed
    assert refused.retry_after_seconds == 10 + 60 + 12  # to T0+W, the window, then 12 s into the next


def test_a_state_from_another_window_length_starts_afresh() -> None:
    odd = BucketState(T0 + timedelta(seconds=7), 5, 5)
    decision = decide(odd, now=T0 + timedelta(seconds=30), limit=PER_MINUTE)
    assert decision.allowed and decision.new_state == BucketState(T0, 1, 0)


def test_window_start_is_epoch_aligned() -> None:
    assert window_start_for(T0 + timedelta(seconds=59, microseconds=999_999), PER_MINUTE) == T0
    assert window_start_for(T0 + W, PER_MINUTE) == T0 + W
    odd = RateLimit(1, timedelta(seconds=7))
    assert (window_start_for(T0, odd) - datetime(1970, 1, 1, tzinfo=UTC)) % odd.window == timedelta(0)


def test_decide_all_counts_against_all_or_none() -> None:
    tenant, user = RateLimit(3, W), RateLimit(2, W)
    now = T0 + timedelta(seconds=5)
    tenant_state = BucketState(T0, 2, 0)
    user_state: BucketState | None = None
    first = decide_all([(tenant_state, tenant), (user_state, user)], now=now)
    assert first.allowed and first.new_states == (BucketState(T0, 3, 0), BucketState(T0, 1, 0))
    second = decide_all([(first.new_states[0], tenant), (first.new_states[1], user)], now=now)
    assert not second.allowed
    assert second.new_states == first.new_states  # the user's count did not move
    assert second.retry_after_seconds == decide(first.new_states[0], now=now, limit=tenant).retry_after_seconds
    rolled = decide_all([(BucketState(T0, 3, 0), tenant), (BucketState(T0 - W, 2, 0), user)], now=now)
    assert not rolled.allowed and rolled.new_states[1] == BucketState(T0, 0, 2)


def test_ensure_allowed() -> None:
    ensure_allowed(decide(None, now=T0, limit=PER_MINUTE), "requests")
    refused = run([T0] * 6, PER_MINUTE)[-1]
    with pytest.raises(RateLimitedError) as caught:
        ensure_allowed(refused, "requests to POST /api/plans")
    assert caught.value.retry_after_seconds == refused.retry_after_seconds == 72
    assert status_of(caught.value) == 429 and isinstance(caught.value, CoreError)
    assert "POST /api/plans" in str(caught.value)


def test_keys() -> None:
    key = limit_key("acme", "ann@example.com", "POST /api/plans")
    assert key == limit_key("acme", "ann@example.com", "POST /api/plans")
    assert key.startswith("user:") and len(key) == 5 + 64
    assert "ann" not in key and "example" not in key  # no PII in the table
    variants = {
        key,
        limit_key("globex", "ann@example.com", "POST /api/plans"),
        limit_key("acme", "bob@example.com", "POST /api/plans"),
        limit_key("acme", "ann@example.com", "GET /api/plans"),
        limit_key("acme:ann", "", "POST /api/plans"),  # separators cannot make two keys collide
        limit_key("acme", "ann@example.com:POST", "/api/plans"),
        tenant_key("acme"),
    }
    assert len(variants) == 7
    assert tenant_key("acme") == "tenant:acme"


def test_invalid_limits_and_states() -> None:
    for bad_limit, bad_window in ((0, W), (-1, W), (True, W), (5, timedelta(0)), (5, -W)):
        with pytest.raises(ValueError):
            RateLimit(bad_limit, bad_window)
    with pytest.raises(ValueError):
        BucketState(datetime(2024, 1, 1), 0, 0)
    with pytest.raises(ValueError):
        BucketState(T0, -1, 0)
    with pytest.raises(ValueError):
        decide(None, now=datetime(2024, 1, 1), limit=PER_MINUTE)


limits = st.builds(
    RateLimit,
    st.integers(min_value=1, max_value=6),
    st.sampled_from([timedelta(seconds=1), timedelta(seconds=3), timedelta(seconds=10), timedelta(minutes=1)]),
)


@st.composite
def request_times(draw: st.DrawFn, limit: RateLimit) -> list[datetime]:
    """Non-decreasing request times over a few windows, bunched (often just before a window ends) so that
    the limits are hit and the two-window bound is approached."""
    w = limit.window_us
    now = T0 + draw(st.integers(0, w - 1)) * US
    times = []
    for _ in range(draw(st.integers(0, 60))):
        move = draw(st.sampled_from(["same", "near", "far", "end"]))
        if move == "near":
            now += draw(st.integers(0, w // 10)) * US
        elif move == "far":
            now += draw(st.integers(0, w)) * US
        elif move == "end":  # near the end of this window or the next one
            end = window_start_for(now, limit) + draw(st.sampled_from([1, 2])) * limit.window
            now = max(now, end - draw(st.integers(1, max(1, w // 20))) * US)
        times.append(now)
    return times


@settings(max_examples=300, deadline=None)
@given(data=st.data(), limit=limits)
def test_the_guarantees_hold_for_any_sequence_of_requests(data: st.DataObject, limit: RateLimit) -> None:
    times = data.draw(request_times(limit))
    decisions = run(times, limit)
    allowed = [t for t, d in zip(times, decisions, strict=True) if d.allowed]
    w = limit.window

    # 1. every aligned window admits at most `limit`
    per_window: dict[datetime, int] = {}
    for t in allowed:
        per_window[window_start_for(t, limit)] = per_window.get(window_start_for(t, limit), 0) + 1
    assert all(count <= limit.limit for count in per_window.values())

    # 2. any interval of length `window` admits fewer than limit * (1 + x / window), hence at most
    #    2 * limit - 1, where x is how far it reaches into the later aligned window. The busiest
    #    intervals start at an allowed request, so those are the ones to check.
    for a in allowed:
        inside = sum(1 for t in allowed if a <= t < a + w)
        reach = a + w - (window_start_for(a, limit) + w)  # 0 when the interval is one aligned window
        if reach == timedelta(0):
            assert inside <= limit.limit
        else:
            assert inside * limit.window_us < limit.limit * (limit.window_us + reach // US)
        assert inside <= 2 * limit.limit - 1

    # 3. the estimate, counting each allowed request, never exceeds the limit
    for t, d in zip(times, decisions, strict=True):
        if d.allowed:
            state = d.new_state
            offset = (t - state.window_start) // US
            assert (
                state.previous_count * (limit.window_us - offset) + state.count * limit.window_us
                <= limit.limit * limit.window_us
            )
            assert d.retry_after_seconds == 0 and d.remaining >= 0
        else:
            assert d.retry_after_seconds >= 1 and d.remaining == 0


def test_the_two_window_bound_is_reached() -> None:
    """limit at the very end of one window and limit - 1 just before the end of the next: 2 * limit - 1 in one window length."""
    limit = RateLimit(5, W)
    end = T0 + W - US
    times = [end] * 5 + [end + W - US] * 5
    decisions = run(times, limit)
    allowed = [t for t, d in zip(times, decisions, strict=True) if d.allowed]
    assert len(allowed) == 2 * limit.limit - 1
    assert allowed[-1] - allowed[0] < W


@st.composite
def states(draw: st.DrawFn, limit: RateLimit) -> BucketState:
    index = draw(st.integers(0, 5))
    return BucketState(
        window_start_for(T0, limit) + index * limit.window,
        draw(st.integers(0, limit.limit + 2)),
        draw(st.integers(0, limit.limit + 2)),
    )


@settings(max_examples=400, deadline=None)
@given(data=st.data(), limit=limits)
def test_retry_after_is_exact_and_never_negative(data: st.DataObject, limit: RateLimit) -> None:
    """Refused at t: still refused at t + retry_after - 1 s, allowed at t + retry_after (nothing else arriving)."""
    state = data.draw(st.none() | states(limit))
    now = T0 + data.draw(st.integers(0, 8 * limit.window_us)) * US  # also before the stored window
    decision = decide(state, now=now, limit=limit)
    if decision.allowed:
        assert decision.retry_after_seconds == 0
        return
    assert decision.retry_after_seconds >= 1
    later = decide(decision.new_state, now=now + timedelta(seconds=decision.retry_after_seconds), limit=limit)
    assert later.allowed
    if decision.retry_after_seconds > 1:
        sooner = decide(decision.new_state, now=now + timedelta(seconds=decision.retry_after_seconds - 1), limit=limit)
        assert not sooner.allowed
