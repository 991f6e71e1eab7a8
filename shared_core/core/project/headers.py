"""Parse and validate the `-- key: value` header block of a model file.

The header is the leading block of `-- key: value` comment lines (blank lines before it are allowed);
it ends at the first line that is not of that form. Keys are lower-cased; unknown keys are kept but
ignored. Every known key is validated here, so that a bad value is reported with its file and line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar, get_args

from shared_core.core.errors import ModelError
from shared_core.core.planning.cron import Cron
from shared_core.core.sql.guard import reserved_name_problem

Kind = Literal["FULL_REFRESH", "INCREMENTAL_BY_TIME_RANGE", "APPEND_ONLY", "MERGE_BY_KEY"]
Materialization = Literal["TABLE", "VIEW", "MERGE", "INSERT_OVERWRITE"]
BatchUnit = Literal["hour", "day", "month"]
KINDS: tuple[Kind, ...] = get_args(Kind)
INCREMENTAL_KINDS: frozenset[Kind] = frozenset({"INCREMENTAL_BY_TIME_RANGE", "APPEND_ONLY"})
MATERIALIZATIONS: tuple[Materialization, ...] = get_args(Materialization)
BATCH_UNITS: tuple[BatchUnit, ...] = get_args(BatchUnit)
CONTRACT_MODES = ("DISABLED", "WARN", "STRICT")
TEST_KINDS = ("not_null", "unique", "accepted_values", "row_count_min", "row_count_max", "custom_sql")
SEVERITIES = ("BLOCK", "WARN")

#: Header keys whose value changes the data a model produces: editing one triggers a rebuild.
DATA_KEYS = (
    "name",
    "kind",
    "materialization",
    "time_column",
    "unique_key",
    "partition_by",
    "incremental_strategy",
    "start",
    "batch",
    "contract_mode",
    "contract_columns",
)
#: Known keys that describe, schedule or check a model without changing its data. `sources` is one:
#: it declares which external relations the SQL may read, but the SQL alone decides what it reads, so
#: declaring or removing a source never changes a result (a model that reads an undeclared relation is
#: refused, not computed differently).
META_KEYS = ("owner", "tags", "description", "dependencies", "lookback", "cron", "tests", "sources")
KNOWN_KEYS = frozenset(DATA_KEYS + META_KEYS)
_DATA_KEY_SET = frozenset(DATA_KEYS)

_HEADER_LINE = re.compile(r"^--\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*?)\s*$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*){0,2}$")
_SOURCE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*){1,2}$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TEST = re.compile(r"^([a-z_]+)\s*\((.*)\)\s*(?:@\s*([A-Za-z]+))?$", re.DOTALL)


@dataclass(frozen=True)
class QualityTest:
    """One `tests:` entry: `kind(arg)@SEVERITY`."""

    kind: str
    arg: str
    severity: str = "BLOCK"

    def render(self) -> str:
        """The canonical text of this test, as it would be written in a header."""
        return f"{self.kind}({self.arg})@{self.severity}"


@dataclass(frozen=True)
class ContractColumn:
    """One `contract_columns` entry: `name:TYPE[:NOT_NULL]`."""

    name: str
    type: str
    not_null: bool = False


@dataclass(frozen=True)
class Header:
    """A validated model header. `raw` keeps every key (known or not) as written, lower-cased keys."""

    name: str
    kind: Kind
    materialization: Materialization
    time_column: str | None
    unique_key: tuple[str, ...]
    partition_by: tuple[str, ...]
    incremental_strategy: str | None
    owner: str | None
    tags: tuple[str, ...]
    dependencies: tuple[str, ...]
    sources: tuple[str, ...]  # declared external relations (schema.table), sorted, distinct
    start: datetime | None
    batch: BatchUnit
    lookback: int
    cron: str | None
    tests: tuple[QualityTest, ...]
    contract_mode: str
    contract_columns: tuple[ContractColumn, ...]
    raw: tuple[tuple[str, str], ...]
    body_line: int  # 1-based line number where the SQL body starts

    @property
    def is_incremental(self) -> bool:
        return self.kind in INCREMENTAL_KINDS

    def data_fields(self) -> dict[str, str]:
        """The normalized data-affecting fields, as hashed into the model's content hash."""
        return {
            "batch": self.batch if self.is_incremental else "",
            "contract_columns": ",".join(
                f"{c.name}:{c.type}{':NOT_NULL' if c.not_null else ''}" for c in self.contract_columns
            ),
            "contract_mode": self.contract_mode,
            "incremental_strategy": self.incremental_strategy or "",
            "kind": self.kind,
            "materialization": self.materialization,
            "name": self.name,
            "partition_by": ",".join(self.partition_by),
            "start": format_instant(self.start) if self.start else "",
            "time_column": self.time_column or "",
            "unique_key": ",".join(self.unique_key),
        }

    def meta_fields(self) -> dict[str, str]:
        """Every other header value (known metadata and unknown keys), whitespace-normalized."""
        fields = {key: " ".join(value.split()) for key, value in self.raw if key not in _DATA_KEY_SET}
        normalized = {
            "cron": self.cron or "",
            "dependencies": ",".join(self.dependencies),
            "lookback": str(self.lookback),
            "sources": ",".join(self.sources),
            "tags": ",".join(self.tags),
            "tests": ",".join(t.render() for t in self.tests),
        }
        fields.update({key: value for key, value in normalized.items() if key in fields})
        return dict(sorted(fields.items()))


def format_instant(value: datetime) -> str:
    """ISO-8601 UTC text of an instant: `2024-01-01T00:00:00Z`; years before 1000 keep four digits.

    >>> format_instant(datetime(1, 1, 1, tzinfo=UTC)), format_instant(datetime(2024, 1, 1, 6, tzinfo=UTC))
    ('0001-01-01T00:00:00Z', '2024-01-01T06:00:00Z')
    """
    if value.year < 1000:  # strftime writes year 1 as "1", which parse_instant would refuse
        return f"{value.year:04d}{value.strftime('-%m-%dT%H:%M:%SZ')}"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str) -> datetime:
    """Parse `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS][Z|+00:00]` into an aware UTC datetime.

    >>> format_instant(parse_instant("2024-03-01"))
    '2024-03-01T00:00:00Z'

    Raises:
        ValueError: the text is not such a date or time, or has a non-UTC offset.
    """
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    if parsed.utcoffset() != UTC.utcoffset(None):
        raise ValueError(f"'{text}' is not in UTC; give a UTC time (suffix Z)")
    return parsed.astimezone(UTC)


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside parentheses and quotes; strips items and drops empty ones.

    >>> split_top_level("not_null(a), custom_sql(SELECT a, b FROM t), unique(b)")
    ['not_null(a)', 'custom_sql(SELECT a, b FROM t)', 'unique(b)']
    """
    items: list[str] = []
    depth = 0
    quote = ""
    current: list[str] = []
    for char in text:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == sep and depth == 0:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item]


def split_header(text: str) -> tuple[list[tuple[str, str, int]], int]:
    """Return the header entries `(key, value, line)` and the 1-based line where the body starts."""
    entries: list[tuple[str, str, int]] = []
    lines = text.split("\n")
    index = 0
    while index < len(lines) and not lines[index].strip() and not entries:
        index += 1
    while index < len(lines):
        match = _HEADER_LINE.match(lines[index].strip())
        if not match:
            break
        entries.append((match.group(1).lower(), match.group(2), index + 1))
        index += 1
    return entries, index + 1


def parse_header(text: str, path: str) -> Header:
    """Parse and validate the header of one model file.

    Args:
        text: the whole file, decoded.
        path: the repository-relative path, used only in error messages.

    Returns:
        The validated header.

    Raises:
        ModelError: a required key is missing, a key repeats, or a value is invalid.
    """
    entries, body_line = split_header(text)
    raw: dict[str, str] = {}
    lines: dict[str, int] = {}
    for key, value, line in entries:
        if key in raw:
            raise ModelError(
                f"header key '{key}' given twice (lines {lines[key]} and {line}); keep one", path=path, line=line
            )
        raw[key] = value
        lines[key] = line

    def fail(key: str, message: str) -> ModelError:
        return ModelError(message, path=path, line=lines.get(key, 1))

    for key in ("name", "kind"):
        if not raw.get(key):
            raise ModelError(
                f"missing required header '-- {key}: ...'; every model needs name and kind", path=path, line=1
            )
    name = raw["name"].strip().lower()
    if not _NAME.match(name):
        raise fail("name", f"invalid name '{raw['name']}'; use schema.table (letters, digits, underscores)")
    reserved = reserved_name_problem(name)
    if reserved is not None:
        raise fail("name", f"model name '{name}' is not allowed: {reserved}; choose another schema or name")
    kind = _choice(raw, "kind", KINDS, fail)
    materialization = _choice(raw, "materialization", MATERIALIZATIONS, fail, default="TABLE")
    time_column = _column(raw, "time_column", fail)
    unique_key = tuple(_column_list(raw, "unique_key", fail))
    partition_by = tuple(_column_list(raw, "partition_by", fail))
    if kind == "INCREMENTAL_BY_TIME_RANGE" and not time_column:
        raise fail("kind", "kind INCREMENTAL_BY_TIME_RANGE needs '-- time_column: <column>' in the header")
    if kind == "MERGE_BY_KEY" and not unique_key:
        raise fail("kind", "kind MERGE_BY_KEY needs '-- unique_key: <column>[, <column>]' in the header")
    if materialization == "VIEW" and kind != "FULL_REFRESH":
        raise fail("materialization", f"materialization VIEW only fits kind FULL_REFRESH, not {kind}")
    batch = _choice(raw, "batch", BATCH_UNITS, fail, default="day", lower=True)
    start = None
    if raw.get("start"):
        try:
            start = parse_instant(raw["start"])
        except ValueError:
            raise fail("start", f"invalid start '{raw['start']}'; use a date like 2024-01-01") from None
        if not _aligned(start, batch):
            raise fail("start", f"start '{raw['start']}' is not on a {batch} boundary; align it to the batch")
    # An incremental model without `start` (the open-source format allows it) starts where the project's
    # `[defaults] start` says, else where its ledger starts, else 30 days before its first plan's as_of:
    # see `shared_core.core.project.models.apply_defaults` and `shared_core.core.planning.planner.window_start`.
    lookback = 0
    if raw.get("lookback"):
        if not raw["lookback"].isdigit():
            raise fail("lookback", f"invalid lookback '{raw['lookback']}'; give a whole number of batches")
        lookback = int(raw["lookback"])
    cron = raw.get("cron") or None
    if cron is not None:
        try:
            cron = Cron.parse(cron).expression
        except ModelError as exc:
            raise fail("cron", exc.detail) from None
    strategy = raw.get("incremental_strategy") or None
    contract_mode = _choice(raw, "contract_mode", CONTRACT_MODES, fail, default="DISABLED")
    return Header(
        name=name,
        kind=kind,
        materialization=materialization,
        time_column=time_column,
        unique_key=unique_key,
        partition_by=partition_by,
        incremental_strategy=strategy.lower() if strategy else None,
        owner=raw.get("owner") or None,
        tags=tuple(sorted({t.strip() for t in raw.get("tags", "").split(",") if t.strip()})),
        dependencies=tuple(sorted({d.strip().lower() for d in raw.get("dependencies", "").split(",") if d.strip()})),
        sources=parse_sources(raw.get("sources", ""), lambda message: fail("sources", message)),
        start=start,
        batch=batch,
        lookback=lookback,
        cron=cron,
        tests=tuple(parse_tests(raw.get("tests", ""), lambda message: fail("tests", message))),
        contract_mode=contract_mode,
        contract_columns=tuple(_contract(raw, fail)),
        raw=tuple(sorted(raw.items())),
        body_line=body_line,
    )


Fail = Callable[[str, str], ModelError]
ChoiceT = TypeVar("ChoiceT", bound=str)


def _choice(
    raw: Mapping[str, str], key: str, allowed: Sequence[ChoiceT], fail: Fail, *, default: ChoiceT | None = None,
    lower: bool = False,
) -> ChoiceT:
    value = raw.get(key, "").strip()
    if not value:
        if default is None:
            raise fail(key, f"missing '{key}'")
        return default
    norm = value.lower() if lower else value.upper()
    for option in allowed:  # the allowed value itself, so that its type is the choice's (e.g. a Literal)
        if option == norm:
            return option
    raise fail(key, f"unknown {key} '{value}'; use one of {', '.join(allowed)}")


def _column(raw: Mapping[str, str], key: str, fail: Fail) -> str | None:
    value = raw.get(key, "").strip()
    if not value:
        return None
    if not _COLUMN.match(value):
        raise fail(key, f"invalid {key} '{value}'; give one column name")
    return value.lower()


def _column_list(raw: Mapping[str, str], key: str, fail: Fail) -> list[str]:
    columns = [c.strip() for c in raw.get(key, "").split(",") if c.strip()]
    for column in columns:
        if not _COLUMN.match(column):
            raise fail(key, f"invalid column '{column}' in {key}; give comma-separated column names")
    return [c.lower() for c in columns]


def parse_tests(value: str, fail: Callable[[str], ModelError]) -> list[QualityTest]:
    """Parse a `tests:` value into its tests, sorted; `fail(message)` makes the error to raise.

    The SQL of a `custom_sql` test is checked by the guard when the model is analyzed, not here.

    >>> [t.render() for t in parse_tests("unique(id), row_count_min(1)@warn", ModelError)]
    ['row_count_min(1)@WARN', 'unique(id)@BLOCK']
    """
    tests = []
    for item in split_top_level(value):
        match = _TEST.match(item)
        if not match:
            raise fail(f"invalid test '{item}'; write kind(argument), e.g. not_null(id)")
        kind, arg, severity = match.group(1), match.group(2).strip(), (match.group(3) or "BLOCK").upper()
        if kind not in TEST_KINDS:
            raise fail(f"unknown test '{kind}' in '{item}'; use one of {', '.join(TEST_KINDS)}")
        if severity not in SEVERITIES:
            raise fail(f"unknown severity '@{match.group(3)}' in '{item}'; use @BLOCK or @WARN")
        if kind in ("not_null", "unique") and not _COLUMN.match(arg):
            raise fail(f"{kind} takes one column, got '{arg}'")
        if kind == "accepted_values":
            column, _, values = arg.partition(":")
            if not _COLUMN.match(column.strip()) or not values.strip():
                raise fail(f"accepted_values takes column:a|b, got '{arg}'")
        if kind in ("row_count_min", "row_count_max") and not arg.isdigit():
            raise fail(f"{kind} takes a whole number, got '{arg}'")
        if kind == "custom_sql" and "{model}" not in arg:
            raise fail(f"custom_sql must select from {{model}}, got '{arg}'")
        tests.append(QualityTest(kind, arg, severity))
    return sorted(tests, key=lambda t: (t.kind, t.arg, t.severity))


def parse_sources(value: str, fail: Callable[[str], ModelError]) -> tuple[str, ...]:
    """Parse a `sources:` value (comma list of `schema.table` or `catalog.schema.table`), sorted and distinct.

    >>> parse_sources("Raw.Orders, raw.customers, raw.orders", ModelError)
    ('raw.customers', 'raw.orders')

    Raises:
        ModelError: (made by `fail`) a name that is not qualified, or that names a reserved schema or an
            engine system table.
    """
    names = set()
    for item in value.split(","):
        name = item.strip().lower()
        if not name:
            continue
        if not _SOURCE.match(name):
            raise fail(f"invalid source '{item.strip()}'; write schema.table (or catalog.schema.table), "
                       "letters, digits and underscores")
        problem = reserved_name_problem(name, reading=True)
        if problem is not None:
            raise fail(f"source '{name}' is not allowed: {problem}")
        names.add(name)
    return tuple(sorted(names))


def header_line(text: str, key: str) -> int:
    """The 1-based line of header key `key` in `text`, 0 when the header has none.

    >>> header_line("-- name: a.b\\n-- tests: unique(id)\\nSELECT 1", "tests")
    2
    """
    return next((line for entry, _, line in split_header(text)[0] if entry == key), 0)


def _contract(raw: Mapping[str, str], fail: Fail) -> list[ContractColumn]:
    columns = []
    for item in split_top_level(raw.get("contract_columns", "")):
        parts = [p.strip() for p in item.split(":")]
        if len(parts) not in (2, 3) or not _COLUMN.match(parts[0]) or not parts[1]:
            raise fail("contract_columns", f"invalid contract column '{item}'; write name:TYPE[:NOT_NULL]")
        not_null = len(parts) == 3
        if not_null and parts[2].upper() != "NOT_NULL":
            raise fail("contract_columns", f"invalid flag '{parts[2]}' in '{item}'; only NOT_NULL is allowed")
        columns.append(ContractColumn(parts[0].lower(), parts[1].upper(), not_null))
    return columns


def aligned(value: datetime, batch: str) -> bool:
    """Whether `value` is on a boundary of `batch` (an hour, the start of a day, the 1st of a month).

    >>> aligned(parse_instant("2024-02-01"), "month"), aligned(parse_instant("2024-02-02"), "month")
    (True, False)
    """
    return _aligned(value, batch)


def _aligned(value: datetime, batch: str) -> bool:
    if value.minute or value.second or value.microsecond:
        return False
    if batch == "hour":
        return True
    if value.hour:
        return False
    return batch == "day" or value.day == 1
