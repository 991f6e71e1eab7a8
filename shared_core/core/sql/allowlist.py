"""The functions tenant SQL may call: an allow-list, by sqlglot function class and by engine name.

Everything not listed here is refused by the guard (`shared_core.core.sql.guard`), so a function that
sqlglot or an engine adds later is refused until someone reads what it does and lists it. Listed are
pure functions of their arguments: operators that sqlglot models as functions, aggregates, windows,
arithmetic, strings, dates and times, arrays, maps, structs and JSON values, hashes. Never listed:
anything that reads or writes files (`read_csv`, `read_text`, `read_blob`, `glob`, `to_file`), reaches the
network (AI and ML functions, `http_get`), reads the environment or engine state (`getenv`,
`current_setting`, `duckdb_settings`, `version`, `current_user`, `current_database`), runs SQL from a
string (`query`, `query_table`), or changes state (`nextval`, `set_variable`). User-defined functions are
refused too: on Databricks they can run arbitrary code.
"""

from __future__ import annotations

#: sqlglot function classes (`exp.Func` subclasses, by class name) that tenant SQL may use.
ALLOWED_FUNCTIONS = frozenset({
    # operators and syntax that sqlglot models as functions
    "And", "Or", "Xor", "Case", "If", "Cast", "TryCast", "Collate", "Exists", "Extract", "Columns",
    "Coalesce", "Nullif", "Nvl2", "Greatest", "Least", "EqualNull", "Try", "Typeof", "DecodeCase",
    # aggregates
    "Avg", "Count", "CountIf", "Sum", "Max", "Min", "AnyValue", "ApproxDistinct", "ApproxQuantile", "ArgMax",
    "ArgMin", "ArrayAgg", "ArrayConcatAgg", "ArrayUniqueAgg", "Corr", "CovarPop", "CovarSamp", "First", "Last",
    "GroupConcat", "Kurtosis", "List", "LogicalAnd", "LogicalOr", "Median", "Mode", "PercentileCont",
    "PercentileDisc", "Quantile", "Skewness", "Stddev", "StddevPop", "StddevSamp", "Variance", "VariancePop",
    "BitwiseAndAgg", "BitwiseOrAgg", "BitwiseXorAgg", "RegrAvgx", "RegrAvgy", "RegrCount", "RegrIntercept",
    "RegrR2", "RegrSlope", "RegrSxx", "RegrSxy", "RegrSyy", "Grouping", "GroupingId", "JSONObjectAgg",
    "JSONArrayAgg",
    # windows
    "RowNumber", "Rank", "DenseRank", "PercentRank", "CumeDist", "Ntile", "Lag", "Lead", "FirstValue",
    "LastValue", "NthValue",
    # numbers
    "Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atan2", "Atanh", "Cbrt", "Ceil", "Cos", "Cosh", "Cot",
    "Coth", "Csc", "Csch", "Sec", "Sech", "Degrees", "Radians", "Exp", "Factorial", "Floor", "Ln", "Log", "Pow",
    "Round", "Sign", "Sin", "Sinh", "Sqrt", "Tan", "Tanh", "Pi", "Trunc", "IsInf", "IsNan", "Nanvl", "SafeDivide",
    "SafeAdd", "SafeMultiply", "SafeSubtract", "SafeNegate", "WidthBucket", "Rand", "Randn", "BitwiseCount",
    "Getbit", "Booland", "Boolor", "Boolnot", "Rint", "CosineDistance", "EuclideanDistance",
    "ManhattanDistance", "DotProduct", "ToNumber", "NumberToStr", "Uuid",
    # strings and bytes
    "Ascii", "BitLength", "ByteLength", "Chr", "Concat", "ConcatWs", "Contains", "EndsWith", "StartsWith",
    "Format", "Initcap", "Left", "Right", "Length", "Levenshtein", "JarowinklerSimilarity", "Lower", "Upper",
    "Pad", "RegexpCount", "RegexpExtract", "RegexpExtractAll", "RegexpFullMatch", "RegexpInstr", "RegexpILike",
    "RegexpLike", "RegexpReplace", "RegexpSplit", "RegexpSubstr", "Repeat", "Replace", "Reverse", "Soundex",
    "Space", "Split", "SplitPart", "StrPosition", "Substring", "SubstringIndex", "Translate", "Trim", "Unicode",
    "Overlay", "Stuff", "Hex", "Unhex", "LowerHex", "ToBase64", "FromBase64", "ToChar", "StringToArray",
    "Normalize", "Elt", "Decode", "Encode", "MD5", "MD5Digest", "SHA", "SHA2", "SHA1Digest", "SHA2Digest",
    # dates and times (the session time zone is pinned to UTC)
    "AddMonths", "CurrentDate", "CurrentTimestamp", "CurrentTime", "CurrentDatetime", "Localtime",
    "Localtimestamp", "UtcDate", "UtcTime", "UtcTimestamp", "Date", "DateAdd", "DateSub", "DateDiff",
    "DateTrunc", "DateBin", "DateFromParts", "DateStrToDate", "DateToDateStr", "Datetime", "DatetimeAdd",
    "DatetimeSub", "DatetimeDiff", "DatetimeTrunc", "Day", "DayOfMonth", "DayOfWeek", "DayOfWeekIso",
    "DayOfYear", "Dayname", "Hour", "Minute", "Second", "Month", "Monthname", "MonthsBetween", "Quarter", "Week",
    "WeekOfYear", "Year", "YearOfWeek", "YearOfWeekIso", "LastDay", "NextDay", "PreviousDay", "MakeInterval",
    "StrToDate", "StrToTime", "StrToUnix", "Time", "TimeAdd", "TimeSub", "TimeDiff", "TimeTrunc", "TimeToStr",
    "TimeToTimeStr", "TimeToUnix", "TimeStrToDate", "TimeStrToTime", "TimeStrToUnix", "TimeFromParts",
    "Timestamp", "TimestampAdd", "TimestampSub", "TimestampDiff", "TimestampTrunc", "TimestampFromParts",
    "TsOrDsAdd", "TsOrDsDiff", "TsOrDsToDate", "TsOrDsToDatetime", "TsOrDsToDateStr", "TsOrDsToTime",
    "TsOrDsToTimestamp", "TsOrDiToDi", "UnixDate", "UnixMicros", "UnixMillis", "UnixSeconds", "UnixToStr",
    "UnixToTime", "UnixToTimeStr", "ConvertTimezone", "ParseDatetime", "ParseTime", "GenerateDateArray",
    "GenerateTimestampArray", "JustifyDays", "JustifyHours", "JustifyInterval",
    # arrays, maps, structs (and the table-generating ones, which `TABLE_FUNCTIONS` also lets into FROM)
    "Array", "ArrayAll", "ArrayAny", "ArrayAppend", "ArrayCompact", "ArrayConcat", "ArrayContains",
    "ArrayContainsAll", "ArrayContainedBy", "ArrayDistinct", "ArrayExcept", "ArrayFilter", "ArrayFirst",
    "ArrayInsert", "ArrayIntersect", "ArrayLast", "ArrayMax", "ArrayMin", "ArrayOverlaps", "ArrayPosition",
    "ArrayPrepend", "ArrayRemove", "ArrayRemoveAt", "ArrayReverse", "ArraySize", "ArraySlice", "ArraySort",
    "ArraySum", "ArrayToString", "ArraysZip", "Explode", "_ExplodeOuter", "Posexplode", "PosexplodeOuter",
    "Inline", "Unnest", "GenerateSeries", "ExplodingGenerateSeries", "Map", "MapContainsKey", "MapFromEntries",
    "MapKeys", "MapSize", "VarMap", "StrToMap", "Struct", "StructExtract", "Transform", "Reduce",
    # JSON values
    "JSONExtract", "JSONExtractScalar", "JSONExtractArray", "JSONBExtract", "JSONBExtractScalar", "JSONFormat",
    "JSONObject", "JSONArray", "JSONKeys", "JSONType", "ParseJSON", "FromJson", "CheckJson", "JSONArrayContains",
    "JSONExists", "JSONValueArray", "JSONCast",
})

#: Functions sqlglot does not model (`exp.Anonymous`), by lower-case name, that tenant SQL may use. They
#: reach the engine as written, so each is a pure function in both Databricks SQL and DuckDB (or fails
#: there as unknown, which is harmless).
ALLOWED_ENGINE_FUNCTIONS = frozenset({
    "isnull", "isnotnull", "nvl", "ifnull", "zeroifnull", "nullifzero", "sha256", "sha512", "hash", "xxhash64",
    "crc32", "bround", "pmod", "mod", "div", "make_date", "make_time", "date_part", "datepart", "date_diff",
    "datediff", "date_add", "date_sub", "date_format", "every", "some", "bool_and", "bool_or", "strftime",
    "strptime", "epoch", "epoch_ms", "epoch_us", "age", "today", "weekday", "timezone", "to_date",
    "to_timestamp", "try_to_timestamp", "from_utc_timestamp", "to_utc_timestamp", "list_transform",
    "list_filter", "list_reduce", "list_value", "list_sort", "list_distinct", "list_contains", "list_has",
    "list_aggregate", "list_extract", "array_length", "array_extract", "element_at", "cardinality", "map_values",
    "map_entries", "map_extract", "named_struct", "struct_pack", "struct_extract", "string_split",
    "string_split_regex", "regexp_matches", "regexp_split_to_array", "prefix", "suffix", "btrim", "lpad", "rpad",
    "octet_length", "format_number", "try_to_number", "len", "row", "range", "generate_series", "unnest",
    "log10", "log2", "ceiling", "power", "signum", "e", "instr", "locate", "position", "char_length",
})

#: Functions that may stand in FROM as a table: the row generators (no file, no catalog behind them).
TABLE_FUNCTIONS = frozenset({
    "Unnest", "Explode", "_ExplodeOuter", "Posexplode", "PosexplodeOuter", "Inline", "GenerateSeries",
    "ExplodingGenerateSeries",
})
TABLE_ENGINE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})

#: Engine functions that DuckDB also evaluates when written as a bare name, without parentheses.
BARE_ENGINE_FUNCTIONS = frozenset({
    "current_schema", "current_role", "current_user", "session_user", "current_catalog", "current_database",
    "current_query",
})
