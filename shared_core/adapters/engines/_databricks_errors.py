"""Turn what databricks-sql-connector raises into one-line `ExecutionError`s that say what to do.

Connection failures are told apart by what the connector saw: a host that does not resolve, a refused or
timed-out connection, TLS, HTTP 401 (the token or the service principal's secret), 403 (no permission to
use the warehouse), 404 (no warehouse at the HTTP path), and 429/503 until the retry budget ran out (the
warehouse starting, stopped or rate-limiting). Statement failures keep the Databricks error class and
SQLSTATE; for errors about the SQL itself (SQLSTATE class 42: syntax, unresolved names, permissions) the
first sentence of the message stays, with only the names the SQL itself contains (suggestions of other
tables are dropped), and the model's file and the line where that name is written. Other messages
(conversion, overflow, ...) can quote data values and are withheld, as for DuckDB
(`shared_core.security.scrub.scrub_engine_error`). Everything passes `scrub` last.
"""

from __future__ import annotations

import re

from shared_core.core.errors import ExecutionError
from shared_core.core.project.models import Model
from shared_core.security.scrub import scrub

_CLASS = re.compile(r"\[([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)\]")
_SQLSTATE = re.compile(r"SQLSTATE:?\s*([0-9A-Z]{5})")
_QUOTED = re.compile(r"`((?:[^`]|``){1,200})`(?:\.`((?:[^`]|``){1,200})`)*|'([^'\n]{0,200})'|\"([^\"\n]{0,200})\"")
_SUGGESTION = re.compile(r"\s*(?:Did you mean|Verify the spelling|If you did not qualify|To tolerate the error)\b.*$",
                         re.DOTALL)

#: Error classes meaning the catalog or schema named does not exist (or is invisible to the principal).
CATALOG_MISSING = ("NO_SUCH_CATALOG_EXCEPTION", "CATALOG_NOT_FOUND")
SCHEMA_MISSING = ("SCHEMA_NOT_FOUND", "NO_SUCH_DATABASE_EXCEPTION")
PERMISSION = ("INSUFFICIENT_PERMISSIONS", "PERMISSION_DENIED", "UNAUTHORIZED_ACCESS")
#: Delta write conflicts with a concurrent writer: the batch is idempotent and is run again.
CONFLICTS = ("DELTA_CONCURRENT_APPEND", "DELTA_CONCURRENT_DELETE_READ", "DELTA_CONCURRENT_DELETE_DELETE",
             "DELTA_CONCURRENT_TRANSACTION", "DELTA_METADATA_CHANGED", "DELTA_CONCURRENT_WRITE",
             "ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
             "ConcurrentTransactionException", "MetadataChangedException")


def error_class(message: str) -> tuple[str, str]:
    """The Databricks error class and SQLSTATE in a message (empty when it names none).

    >>> error_class("[TABLE_OR_VIEW_NOT_FOUND] The table or view `s`.`t` cannot be found. SQLSTATE: 42P01; line 1")
    ('TABLE_OR_VIEW_NOT_FOUND', '42P01')
    """
    found, state = _CLASS.search(message), _SQLSTATE.search(message)
    return (found.group(1) if found else "", state.group(1) if state else "")


def is_conflict(message: str) -> bool:
    """Whether a statement failed on a concurrent Delta write (safe to run the idempotent batch again)."""
    name = error_class(message)[0]
    return name.split(".")[0] in CONFLICTS or any(c in message for c in CONFLICTS[6:])


def connection_kind(exc: BaseException) -> str:
    """What went wrong opening a session or sending a request: `dns`, `refused`, `tls`, `timeout`, `auth`
    (401), `forbidden` (403), `not_found` (404), `busy` (429/503 past the retry budget), or `other`."""
    text = _full_text(exc)
    code = _http_code(exc)
    if code == 401 or ("401" in text and "UNAUTHORIZED" in text.upper()):
        return "auth"
    if code == 403:
        return "forbidden"
    if code == 404:
        return "not_found"
    lowered = text.lower()  # the connection errors urllib3 retried before the budget ran out come first
    if any(s in lowered for s in ("name or service not known", "nodename nor servname", "failed to resolve",
                                  "nameresolutionerror", "getaddrinfo failed", "temporary failure in name")):
        return "dns"
    if any(s in lowered for s in ("certificate verify failed", "certificate_verify_failed", "sslerror",
                                  "wrong version number", "ssl:")):
        return "tls"
    if "connection refused" in lowered or "newconnectionerror" in lowered:
        return "refused"
    if code in (429, 503) or "max retry duration" in text or "TEMPORARILY_UNAVAILABLE" in text:
        return "busy"
    if "timed out" in lowered or "timeout" in lowered:
        return "timeout"
    return "other"


def connection_error(exc: BaseException, *, host: str, port: int, http_path: str, principal: str,
                     credential: str, waited: float, catalog: str | None = None) -> ExecutionError:
    """The one-line error for a session that could not be opened (or a request that could not be sent).

    Args:
        exc: what the connector raised.
        host, port, http_path: the workspace and the SQL warehouse.
        principal: `token` or `service principal`, for the message.
        credential: where the credential comes from, e.g. `credential dbx` or `DATABRICKS_TOKEN`.
        waited: seconds spent trying, for the message.
        catalog: the catalog the session opens in (None: the workspace's default), for the message.
    """
    where = host if port == 443 else f"{host}:{port}"
    kind = connection_kind(exc)
    if kind == "dns":
        message = (f"cannot reach Databricks workspace {host}: the host name does not resolve; check the host "
                   "(e.g. adb-1234567890123456.7.azuredatabricks.net)")
    elif kind == "refused":
        message = f"cannot connect to Databricks workspace {where}: connection refused; check the host and port"
    elif kind == "tls":
        message = f"TLS with Databricks workspace {where} failed (certificate not trusted); check the host"
    elif kind == "timeout":
        message = f"Databricks workspace {where} did not answer within {waited:.0f}s (timed out); check the network"
    elif kind == "auth":
        message = (f"Databricks workspace {where} rejected the {principal} (HTTP 401: invalid, expired or revoked); "
                   f"store a valid one in {credential}")
    elif kind == "forbidden":
        message = (f"the {principal} may not use the SQL warehouse {http_path} on {where} (HTTP 403); grant it "
                   "CAN USE on the warehouse")
    elif kind == "not_found":
        message = (f"no SQL warehouse at HTTP path {http_path} on {where} (HTTP 404); copy the HTTP path from the "
                   "warehouse's Connection details")
    elif kind == "busy":
        message = (f"the SQL warehouse {http_path} on {where} kept answering busy (HTTP 429/503: starting, "
                   f"stopped or rate-limited) for {waited:.0f}s; start the warehouse or retry later")
    else:
        name, state = error_class(str(exc))
        if name in CATALOG_MISSING and catalog:
            return ExecutionError(scrub(f"catalog {catalog} does not exist on Databricks workspace {where} or the "
                                        f"{principal} cannot see it; create it or grant USE CATALOG"))
        if name in CATALOG_MISSING or name in SCHEMA_MISSING or name in PERMISSION:
            return ExecutionError(scrub(f"Databricks workspace {where}: {_sql_detail(str(exc), catalog or '')}"))
        message = (f"cannot open a session on the SQL warehouse {http_path} on {where}: {type(exc).__name__}"
                   f"{' ' + name if name else ''}{' (SQLSTATE ' + state + ')' if state else ''}")
    return ExecutionError(scrub(message))


def statement_error(exc: BaseException, *, model: Model, sql: str, catalog: str) -> ExecutionError:
    """The one-line run error for a failed statement of a batch of `model` (nothing was published).

    Args:
        exc: what the connector raised.
        model: the model whose batch failed; its file and the line of the name the error is about are named.
        sql: the statement that failed (names it contains may be shown).
        catalog: the catalog written to, for missing-catalog and permission messages.
    """
    text = str(exc)
    name, _ = error_class(text)
    if name in CATALOG_MISSING:
        return ExecutionError(scrub(f"{model.name} ({model.path}): catalog {catalog} does not exist or the principal "
                                    "cannot see it; create it or grant USE CATALOG; nothing was published"))
    detail = _sql_detail(text, f"{model.text}\n{sql}")
    line = _line_of(detail, model)
    where = f"{model.path}:{line}" if line else model.path
    hint = " (see the README: Databricks privileges)" if name in PERMISSION else ""
    return ExecutionError(scrub(f"{where}: {model.name}: Databricks {detail}{hint}; nothing was published"))


def _sql_detail(message: str, sql: str) -> str:
    """`CLASS (SQLSTATE s): first sentence` for errors about the SQL; `CLASS (SQLSTATE s)` and a note otherwise."""
    name, state = error_class(message)
    label = (name or "error") + (f" (SQLSTATE {state})" if state else "")
    about_sql = state.startswith("42") or name.startswith(("PARSE_", "UNRESOLVED_", "TABLE_OR_VIEW_NOT_FOUND"))
    if not about_sql:
        return f"{label} (the message may quote data and is withheld)"
    body = _CLASS.sub("", message.strip().split("\n", 1)[0], count=1).strip()
    body = _SQLSTATE.split(body)[0].rstrip(" ;.")
    body = _SUGGESTION.sub("", body)
    sentence = re.split(r"(?<=[.!?])\s", body, maxsplit=1)[0].rstrip(".")
    lowered = sql.lower()

    def keep_if_written(match: re.Match[str]) -> str:
        text = match.group(0)
        if text.startswith("`"):
            names = [part.strip("`").replace("``", "`") for part in text.split("`.`")]
            return text if all(n.lower() in lowered for n in names) else "`?`"
        if text.startswith('"'):  # types ("STRING") and other upper-case words of the message itself
            return text if text[1:-1].replace(" ", "").replace("_", "").isalpha() and text[1:-1].isupper() else '"?"'
        return "'?'"  # single quotes hold values

    return f"{label}: {_QUOTED.sub(keep_if_written, sentence)}" if sentence else label


def _line_of(detail: str, model: Model) -> int:
    """The line of the model file where the first name of the message is written (0: none found)."""
    lines = model.text.split("\n")
    start = max(model.header.body_line - 1, 0)
    for match in re.finditer(r"`([^`]+)`", detail):
        name = match.group(1).split(".")[-1].lower()
        if name == "?":
            continue
        pattern = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", re.IGNORECASE)
        for number in range(start, len(lines)):
            if pattern.search(lines[number]):
                return number + 1
    return 0


def _http_code(exc: BaseException) -> int | None:
    context = getattr(exc, "context", None)
    code = context.get("http-code") if isinstance(context, dict) else None
    return int(code) if isinstance(code, int) else None


def _full_text(exc: BaseException) -> str:
    """The exception's text with its causes' (the connector keeps the error it gave up on in its arguments, and
    that error's context holds the socket error urllib3 saw)."""
    parts: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 20:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        context = getattr(current, "context", None)
        if isinstance(context, dict):
            parts.append(str(context.get("original-exception", "")))
            parts.append(str(context.get("error-message", "")))
        pending.extend(a for a in current.args if isinstance(a, BaseException))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return " | ".join(parts)
