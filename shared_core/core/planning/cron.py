"""The `cron` schedule of a model: one validated 5-field expression and its fire times around a given `now`.

The header check and the scheduler both use `Cron`, so an expression `check` admits is exactly one the
scheduler can run. Fire times are croniter's; this module decides which expressions are admitted, and says
what is wrong with the others in one line:

- five fields, `minute hour day-of-month month day-of-week`, in UTC;
- each field a comma list of `*`, `a` or `a-b` (ascending), each optionally with a step `/n` (n >= 1);
  `a/n` runs from `a` to the field's last value (day-of-week: 6); numbers only, 0 and 7 are both Sunday;
- the expression fires at least once: `0 0 31 4 *` (April has no 31st) is refused.

When both day fields are restricted (neither is `*`), a day that matches either fires, as in standard cron.

Some forms read differently in croniter than a reader of a model file would guess, so they are refused
with a hint instead: `5-5` (croniter: every value), `10-5` (a wrap-around), day-of-week `7/2` (every
other day from Sunday), `*` inside a list, and a day field that covers every day without being `*`
(`1-31`, `*/1`, `0-7`: croniter then decides either-or or both by the other field's spelling).

Pure: every query takes `now`; nothing reads the clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from shared_core.core.errors import ModelError

#: The five fields: name, lowest and highest value.
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12), ("day-of-week", 0, 7))

_ITEM = re.compile(r"^(?:\*|(\d+)(?:-(\d+))?)(?:/(\d+))?$", re.ASCII)
# A fixed instant to probe whether an expression ever fires: one that fires at all does so within eight
# years of any instant (a 29 February can be eight years away), and croniter looks 50 years ahead.
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Cron:
    """A valid 5-field cron expression (whitespace-normalized), with its fire times in UTC.

    Constructing one validates it, so every `Cron` fires.

    >>> Cron.parse(" 0  3 * * 1-5 ").expression
    '0 3 * * 1-5'
    >>> Cron.parse("0 3 * * 1-5").next_fire(datetime(2024, 3, 1, 12, tzinfo=UTC)).isoformat()
    '2024-03-04T03:00:00+00:00'
    """

    expression: str

    def __post_init__(self) -> None:
        _validate(self.expression)

    @classmethod
    def parse(cls, text: str) -> Cron:
        """Parse and validate a cron expression (runs of whitespace between fields are allowed).

        Args:
            text: the expression as written, e.g. `*/15 2 * * 1-5`.

        Returns:
            The validated expression.

        Raises:
            ModelError: not five fields, a field outside the syntax or its range, a zero step, a range that
                does not run upwards, or an expression that never fires; the message names the field and
                value (the caller adds the file and line).
        """
        return cls(" ".join(text.split()))

    def next_fire(self, now: datetime) -> datetime:
        """The first fire time strictly after `now` (aware; a naive `now` is taken as UTC)."""
        fire: datetime = _iterator(self.expression, _utc(now)).get_next(datetime)
        return fire

    def previous_fire(self, now: datetime) -> datetime:
        """The last fire time strictly before `now` (aware; a naive `now` is taken as UTC)."""
        fire: datetime = _iterator(self.expression, _utc(now)).get_prev(datetime)
        return fire

    def latest_fire(self, now: datetime) -> datetime:
        """The last fire time at or before `now`: `now` itself when it is a fire time.

        >>> Cron.parse("0 3 * * *").latest_fire(datetime(2024, 3, 1, 3, tzinfo=UTC)).isoformat()
        '2024-03-01T03:00:00+00:00'
        """
        return self.previous_fire(_utc(now).replace(second=0, microsecond=0) + _MINUTE)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iterator(expression: str, start: datetime) -> Any:  # Any: croniter ships no type information
    from croniter import croniter  # imported on first use: loading model files without a cron never pays for it

    return croniter(expression, start)


@lru_cache(maxsize=1024)
def _validate(expression: str) -> None:
    """Refuse an expression `Cron` does not admit; see the module docstring for the rules."""
    fields = expression.split()
    if len(fields) != 5:
        raise ModelError(
            f"invalid cron '{expression}'; give 5 fields: minute hour day-of-month month day-of-week"
        )
    for field, (name, low, high) in zip(fields, FIELDS, strict=True):
        problem = _field_problem(field, low, high, weekday=name == "day-of-week")
        if problem:
            raise ModelError(f"invalid cron {name} '{field}' in '{expression}': {problem}")
    from croniter import CroniterBadCronError, CroniterBadDateError, croniter

    try:
        iterator = _iterator(expression, _PROBE)  # croniter reads the expression
        for index, name in ((2, "day-of-month"), (4, "day-of-week")):
            alone = ["*"] * 5
            alone[index] = fields[index]
            if fields[index] != "*" and croniter.expand(" ".join(alone))[0][index] == ["*"]:
                raise ModelError(
                    f"invalid cron {name} '{fields[index]}' in '{expression}': it covers every day; write * instead"
                )
        if fields[2] != "*" and fields[3] != "*":  # only a day-of-month in too short months can never occur
            iterator.get_next(datetime)
    except CroniterBadDateError:
        raise ModelError(
            f"cron '{expression}' never fires: day-of-month '{fields[2]}' does not occur in month '{fields[3]}'; "
            "pick days those months have"
        ) from None
    except CroniterBadCronError as exc:  # the rules above admit only what croniter reads; this would be a gap in them
        raise ModelError(f"invalid cron '{expression}': {exc}; use numbers, *, a-b, lists and /steps") from None


def _field_problem(field: str, low: int, high: int, *, weekday: bool) -> str:
    """What is wrong with one field, or '' when it is valid."""
    items = field.split(",")
    for item in items:
        match = _ITEM.match(item)
        if item == "*" and len(items) > 1:
            return "'*' already covers every value; drop the other list items"
        if not item:
            return "a list item is empty; remove the extra comma"
        if not match:
            return f"'{item}' is not cron syntax; use *, numbers {low}-{high}, ranges a-b, lists a,b and steps /n"
        first, last, step = (int(group) if group else None for group in match.groups())
        if any(value is not None and not low <= value <= high for value in (first, last)):
            return f"'{item}' is out of range; values run {low}-{high}"
        if step == 0:
            return f"the step in '{item}' is 0, which never advances; give a step of 1 or more"
        if first is not None and last is not None and first >= last:
            hint = f"write {first}" if first == last else f"split it, e.g. {first}-{high},{low}-{last}"
            return f"the range '{first}-{last}' must run upwards; {hint}"
        if weekday and first == 7 and last is None and step is not None:
            return f"'{item}' starts a step at 7 (Sunday), past the last day; start it at 0, or write 7"
    return ""
