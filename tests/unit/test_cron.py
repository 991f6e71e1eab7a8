"""`Cron`: agrees with croniter and with the documented cron rules on generated expressions; bad forms are refused."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from croniter import CroniterBadDateError, croniter
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared_core.core.errors import ModelError
from shared_core.core.planning.cron import FIELDS, Cron

# ---------------------------------------------------------------- generated expressions and instants


@st.composite
def _item(draw: st.DrawFn, low: int, high: int, weekday: bool) -> str:
    shape = draw(st.sampled_from(["*", "value", "range"]))
    if shape == "*":
        body = "*"
    elif shape == "value":
        body = str(draw(st.integers(low, high)))
    else:
        first = draw(st.integers(low, high - 1))
        body = f"{first}-{draw(st.integers(first + 1, high))}"
    if draw(st.booleans()) and not (weekday and body == "7"):
        body += f"/{draw(st.integers(1, high + 2))}"
    return body


@st.composite
def expressions(draw: st.DrawFn) -> str:
    """Any admitted expression; some never fire (`0 0 31 4 *`): those must be refused."""
    fields = []
    for name, low, high in FIELDS:
        items = draw(st.lists(_item(low, high, name == "day-of-week"), min_size=1, max_size=3))
        if "*" in items:  # a bare * stands alone
            items = ["*"]
        fields.append(",".join(items))
    # a day field that covers every day is written `*` (the others are refused; see test_bad_forms_...)
    assume(fields[2] == "*" or _values(fields[2], 1, 31, 31) != set(range(1, 32)))
    assume(fields[4] == "*" or {d % 7 for d in _values(fields[4], 0, 7, 6)} != set(range(7)))
    return " ".join(fields)


INSTANTS = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2090, 12, 31), timezones=st.just(UTC))


# ---------------------------------------------------------------- the documented rules, as a brute-force oracle


def _values(field: str, low: int, high: int, last: int) -> set[int]:
    """Values of one field: `*` is low..last, `a/n` runs to `last`, ranges are inclusive."""
    values: set[int] = set()
    for item in field.split(","):
        body, _, step = item.partition("/")
        if body == "*":
            first, end = low, last
        elif "-" in body:
            first, end = (int(v) for v in body.split("-"))
        else:
            first = int(body)
            end = last if step else first
        values.update(range(first, end + 1, int(step or 1)))
    return values


class _Oracle:
    """Standard cron, as the README states it: both day fields restricted (neither `*`) means either matches."""

    def __init__(self, expression: str) -> None:
        minute, hour, dom, month, dow = expression.split()
        self.minutes = sorted(_values(minute, 0, 59, 59))
        self.hours = sorted(_values(hour, 0, 23, 23))
        self.days = _values(dom, 1, 31, 31)
        self.months = _values(month, 1, 12, 12)
        self.weekdays = {d % 7 for d in _values(dow, 0, 7, 6)}  # 7 is Sunday, like 0
        self.either = dom != "*" and dow != "*"

    def fires_on(self, day: date) -> bool:
        in_days, in_weekdays = day.day in self.days, (day.weekday() + 1) % 7 in self.weekdays
        matched = (in_days or in_weekdays) if self.either else (in_days and in_weekdays)
        return day.month in self.months and matched

    def _times(self, day: date) -> list[datetime]:
        return [datetime(day.year, day.month, day.day, h, m, tzinfo=UTC) for h in self.hours for m in self.minutes]

    def next_after(self, now: datetime) -> datetime | None:
        day = now.date()
        for _ in range(366 * 9):
            if self.fires_on(day):
                later = [t for t in self._times(day) if t > now]
                if later:
                    return later[0]
            day += timedelta(days=1)
        return None

    def last_before(self, now: datetime) -> datetime | None:
        day = now.date()
        for _ in range(366 * 9):
            if self.fires_on(day):
                earlier = [t for t in self._times(day) if t < now]
                if earlier:
                    return earlier[-1]
            day -= timedelta(days=1)
        return None


# ---------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(expression=expressions(), now=INSTANTS)
def test_cron_agrees_with_croniter(expression: str, now: datetime) -> None:
    try:
        cron = Cron.parse(expression)
    except ModelError as exc:  # only an expression that never fires is refused, and croniter finds no date
        assert "never fires" in str(exc)
        with pytest.raises(CroniterBadDateError):
            croniter(expression, now).get_next(datetime)
        return
    assert cron.next_fire(now) == croniter(expression, now).get_next(datetime)
    assert cron.previous_fire(now) == croniter(expression, now).get_prev(datetime)
    assert croniter.match(expression, cron.latest_fire(now))


@settings(max_examples=200, deadline=None)
@given(expression=expressions(), now=INSTANTS)
def test_cron_follows_the_documented_rules(expression: str, now: datetime) -> None:
    oracle = _Oracle(expression)
    expected_next = oracle.next_after(now)
    try:
        cron = Cron.parse(expression)
    except ModelError:
        assert expected_next is None  # refused exactly when no date ever fires
        return
    assert cron.next_fire(now) == expected_next
    assert cron.previous_fire(now) == oracle.last_before(now)


@settings(max_examples=200, deadline=None)
@given(expression=expressions(), now=INSTANTS)
def test_latest_fire_is_at_or_before_now_with_no_fire_in_between(expression: str, now: datetime) -> None:
    try:
        cron = Cron.parse(expression)
    except ModelError:
        return
    latest = cron.latest_fire(now)
    assert latest <= now < cron.next_fire(latest)
    assert cron.latest_fire(latest) == latest  # a fire time is its own latest fire


@given(days=st.sets(st.integers(1, 31), min_size=1, max_size=4), weekdays=st.sets(st.integers(0, 7), min_size=1,
       max_size=3), start=INSTANTS)
def test_both_day_fields_restricted_means_either_day_fires(days: set[int], weekdays: set[int], start: datetime) -> None:
    dom, dow = ",".join(map(str, sorted(days))), ",".join(map(str, sorted(weekdays)))
    fires = []
    cron, now = Cron.parse(f"0 0 {dom} * {dow}"), start
    for _ in range(10):
        now = cron.next_fire(now)
        fires.append(now)
    assert all(t.day in days or (t.weekday() + 1) % 7 in {d % 7 for d in weekdays} for t in fires)
    span = [fires[0].date() + timedelta(days=n) for n in range((fires[-1] - fires[0]).days + 1)]
    expected = [d for d in span if d.day in days or (d.weekday() + 1) % 7 in {w % 7 for w in weekdays}]
    assert [t.date() for t in fires] == expected


# ---------------------------------------------------------------- examples


def test_a_day_field_left_as_star_restricts_by_the_other_alone() -> None:
    mondays = Cron.parse("0 3 * * 1")
    now = datetime(2024, 3, 1, tzinfo=UTC)  # a Friday
    assert mondays.next_fire(now) == datetime(2024, 3, 4, 3, tzinfo=UTC)
    first_or_monday = Cron.parse("0 3 1 * 1")
    assert first_or_monday.next_fire(now) == datetime(2024, 3, 1, 3, tzinfo=UTC)
    assert first_or_monday.next_fire(datetime(2024, 3, 1, 3, tzinfo=UTC)) == datetime(2024, 3, 4, 3, tzinfo=UTC)


def test_latest_fire_includes_now_and_previous_fire_excludes_it() -> None:
    cron = Cron.parse("*/15 2 * * *")
    at = datetime(2024, 3, 1, 2, 30, tzinfo=UTC)
    assert cron.latest_fire(at) == at
    assert cron.latest_fire(at + timedelta(seconds=59)) == at
    assert cron.previous_fire(at) == datetime(2024, 3, 1, 2, 15, tzinfo=UTC)
    assert cron.next_fire(at) == datetime(2024, 3, 1, 2, 45, tzinfo=UTC)
    assert cron.latest_fire(datetime(2024, 3, 1, 1, 0, tzinfo=UTC)) == datetime(2024, 2, 29, 2, 45, tzinfo=UTC)


def test_a_leap_day_schedule_reaches_back_years() -> None:
    cron = Cron.parse("0 0 29 2 *")
    assert cron.latest_fire(datetime(2027, 6, 1, tzinfo=UTC)) == datetime(2024, 2, 29, tzinfo=UTC)
    assert cron.next_fire(datetime(2096, 3, 1, tzinfo=UTC)) == datetime(2104, 2, 29, tzinfo=UTC)


def test_naive_instants_are_utc_and_other_offsets_are_converted() -> None:
    cron = Cron.parse("0 3 * * *")
    expected = datetime(2024, 3, 2, 3, tzinfo=UTC)
    assert cron.next_fire(datetime(2024, 3, 1, 12)) == expected
    assert cron.next_fire(datetime(2024, 3, 2, 4, 30, tzinfo=timezone(timedelta(hours=2)))) == expected
    assert cron.next_fire(datetime(2024, 3, 1, 12)).tzinfo == UTC


def test_whitespace_is_normalized_and_sunday_is_0_or_7() -> None:
    assert Cron.parse("  0\t3  * *   7 ").expression == "0 3 * * 7"
    now = datetime(2024, 3, 1, tzinfo=UTC)
    assert Cron.parse("0 3 * * 7").next_fire(now) == Cron.parse("0 3 * * 0").next_fire(now)
    assert Cron.parse("0 3 * * 5-7").next_fire(datetime(2024, 3, 2, 4, tzinfo=UTC)) == datetime(2024, 3, 3, 3,
                                                                                                 tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("*/0 * * * *", "invalid cron minute '*/0' in '*/0 * * * *': the step in '*/0' is 0, which never advances; "
                        "give a step of 1 or more"),
        ("0 0 1-31/0 * *", "invalid cron day-of-month '1-31/0' in '0 0 1-31/0 * *': the step in '1-31/0' is 0"),
        ("60 * * * *", "invalid cron minute '60' in '60 * * * *': '60' is out of range; values run 0-59"),
        ("0 24 * * *", "invalid cron hour '24' in '0 24 * * *': '24' is out of range; values run 0-23"),
        ("0 0 0 * *", "invalid cron day-of-month '0' in '0 0 0 * *': '0' is out of range; values run 1-31"),
        ("0 0 1 1,13 *", "invalid cron month '1,13' in '0 0 1 1,13 *': '13' is out of range; values run 1-12"),
        ("0 0 * * 8", "invalid cron day-of-week '8' in '0 0 * * 8': '8' is out of range; values run 0-7"),
        ("0 0 * * 1-9", "invalid cron day-of-week '1-9' in '0 0 * * 1-9': '1-9' is out of range; values run 0-7"),
        ("0 0 * * * *", "invalid cron '0 0 * * * *'; give 5 fields: minute hour day-of-month month day-of-week"),
        ("0 0 * *", "invalid cron '0 0 * *'; give 5 fields"),
        ("", "invalid cron ''; give 5 fields"),
        ("@daily", "invalid cron '@daily'; give 5 fields"),
        ("0 0 31 4 *", "cron '0 0 31 4 *' never fires: day-of-month '31' does not occur in month '4'; "
                       "pick days those months have"),
        ("0 0 30 2 *", "cron '0 0 30 2 *' never fires: day-of-month '30' does not occur in month '2'"),
        ("0 0 31 2,4,6,9,11 *", "cron '0 0 31 2,4,6,9,11 *' never fires"),
        ("0 0 30,31 2 *", "cron '0 0 30,31 2 *' never fires"),
        ("every day", "invalid cron 'every day'; give 5 fields"),
        ("a b c d e", "invalid cron minute 'a' in 'a b c d e': 'a' is not cron syntax; use *, numbers 0-59"),
        ("0 0 * * mon", "invalid cron day-of-week 'mon' in '0 0 * * mon': 'mon' is not cron syntax"),
        ("0 0 L * *", "invalid cron day-of-month 'L' in '0 0 L * *': 'L' is not cron syntax"),
        ("0 0 ? * *", "'?' is not cron syntax"),
        ("H * * * *", "'H' is not cron syntax"),
        ("R * * * *", "'R' is not cron syntax"),
        ("0 0 * * 1#2", "'1#2' is not cron syntax"),
        ("-1 * * * *", "'-1' is not cron syntax"),
        ("０ * * * *", "'０' is not cron syntax"),
        ("1,,2 * * * *", "invalid cron minute '1,,2' in '1,,2 * * * *': a list item is empty; remove the extra comma"),
        ("5-5 * * * *", "the range '5-5' must run upwards; write 5"),
        ("50-10 * * * *", "the range '50-10' must run upwards; split it, e.g. 50-59,0-10"),
        ("0 0 * * 7/2", "invalid cron day-of-week '7/2' in '0 0 * * 7/2': '7/2' starts a step at 7 (Sunday)"),
        ("* * 1 * *,5", "invalid cron day-of-week '*,5' in '* * 1 * *,5': '*' already covers every value"),
        ("0 0 1-31 * */2", "invalid cron day-of-month '1-31' in '0 0 1-31 * */2': it covers every day; write *"),
        ("0 0 */1 * 1-5", "invalid cron day-of-month '*/1' in '0 0 */1 * 1-5': it covers every day; write *"),
        ("0 0 * * 0-7", "invalid cron day-of-week '0-7' in '0 0 * * 0-7': it covers every day; write *"),
        ("0 0 13 * 0-3,4-6", "invalid cron day-of-week '0-3,4-6' in '0 0 13 * 0-3,4-6': it covers every day"),
    ],
)
def test_bad_forms_are_refused_with_one_clear_line(expression: str, message: str) -> None:
    with pytest.raises(ModelError) as caught:
        Cron.parse(expression)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_constructing_directly_validates_too() -> None:
    with pytest.raises(ModelError, match="never advances"):
        Cron("*/0 * * * *")
