"""Sessions on a Databricks SQL warehouse through databricks-sql-connector: how to connect, authenticate,
retry, tag, time out and cancel.

The connector is imported here and nowhere else, and only when a session opens (never on the webhook path).
Its defaults suit an interactive user, not a step runner: up to 30 attempts over 900 s per request and a
900 s socket timeout. A session sets them explicitly (`Limits`): each request is retried for HTTP 429 and
503 (and connection errors) at most `request_attempts` times within `request_retry_seconds`, with the
connector's backoff (never shorter than 5 s between attempts, its floor); statements that reached the
server are never re-sent by the connector, except on 429/503, which mean it did not run them. Opening a
session on a warehouse that is starting answers 503 until it is up: the session keeps trying, for at most
`start_timeout`. Every statement carries the query tags `ironlayer_tenant`, `ironlayer_plan`,
`ironlayer_step` and `ironlayer_model` (`system.query.history.query_tags`) and starts with the comment
`/* ironlayer tenant=... plan=... step=... model=... */` (visible in the query text on any compute). The
session runs in UTC with the warehouse's `STATEMENT_TIMEOUT`; a client-side timer cancels a statement
that outlives it, and `cancel()` cancels the running statements from another thread (the executor's
`interrupt()`).

Authentication: a personal access token, or OAuth machine-to-machine with a service principal's client ID
and secret, exchanged at `https://<host>/oidc/v1/token` (scope `all-apis`) and refreshed before it expires.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared_core.adapters.engines._databricks_errors import connection_error, connection_kind
from shared_core.adapters.engines.results import StatementStats
from shared_core.core.errors import ExecutionError
from shared_core.security.scrub import scrub

logger = logging.getLogger(__name__)
# The connector logs its retries at ERROR and warns about pyarrow at import; keep that out of a terminal
# that configured no logging (a configured root handler still receives it).
logging.getLogger("databricks").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Target:
    """Where statements run: a workspace host, the HTTP path of its SQL warehouse, and the catalog written to
    (None: the workspace's default catalog)."""

    host: str
    http_path: str
    catalog: str | None = None
    port: int = 443
    tls_ca_file: str | None = None  # a private certificate authority (a TLS-inspecting proxy; tests)

    @property
    def address(self) -> str:
        return self.host if self.port == 443 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Credentials:
    """A personal access token, or a service principal's OAuth client ID and secret; `source` names where they
    came from (for messages: `credential dbx`, `DATABRICKS_TOKEN`)."""

    token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    source: str = "the credential"

    @property
    def principal(self) -> str:
        return "service principal" if self.client_id else "token"

    @classmethod
    def from_secret(cls, value: str, *, source: str) -> Credentials:
        """Credentials from a stored credential: a token, or the JSON `{"client_id": ..., "client_secret": ...}`.

        >>> Credentials.from_secret('{"client_id": "sp", "client_secret": "s3"}', source="x").principal
        'service principal'

        Raises:
            ExecutionError: the value is empty, or JSON without both fields.
        """
        text = value.strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict) or not parsed.get("client_id") or not parsed.get("client_secret"):
                raise ExecutionError(f"{source} is JSON but not {{\"client_id\": ..., \"client_secret\": ...}}; store "
                                     "a token or a service principal's client ID and secret")
            return cls(client_id=str(parsed["client_id"]), client_secret=str(parsed["client_secret"]), source=source)
        if not text:
            raise ExecutionError(f"{source} is empty; store a Databricks token or service principal credentials")
        return cls(token=text, source=source)


@dataclass(frozen=True)
class Limits:
    """How long a session waits, and how often it retries (see the module docstring)."""

    request_attempts: int = 5  # per request, for 429/503 and connection errors
    request_retry_seconds: float = 30.0  # per request, all attempts together
    start_timeout: float = 300.0  # opening a session while the warehouse starts (429/503) ...
    start_poll: float = 5.0  # ... trying again this often
    statement_timeout: float = 3600.0  # the warehouse's STATEMENT_TIMEOUT; the client cancels a little later
    cancel_grace: float = 30.0  # ... this much later, should the warehouse not enforce it
    socket_timeout: float = 120.0  # one HTTP request (the connector long-polls statements in short requests)
    conflict_retries: int = 3  # a batch hit by a concurrent Delta write is run again (it is idempotent)


class ServicePrincipalToken:
    """OAuth M2M for the connector's `credentials_provider`: a token from the workspace's token endpoint,
    fetched with the client ID and secret and refreshed a minute before it expires."""

    def __init__(self, target: Target, credentials: Credentials, *, timeout: float) -> None:
        self._url = f"https://{target.address}/oidc/v1/token"
        self._target, self._credentials, self._timeout = target, credentials, timeout
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def auth_type(self) -> str:
        return "oauth-m2m"

    def __call__(self, *args: Any, **kwargs: Any) -> Callable[[], dict[str, str]]:
        return self.headers

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def token(self) -> str:
        """A valid access token (fetched now when there is none or it expires within a minute).

        Raises:
            ExecutionError: the endpoint refused the client ID and secret, or could not be reached.
        """
        with self._lock:
            if self._token is None or self._token[1] - time.monotonic() < 60:
                self._token = self._fetch()
            return self._token[0]

    def _fetch(self) -> tuple[str, float]:
        import ssl

        import httpx

        verify: Any = ssl.create_default_context(cafile=self._target.tls_ca_file) if self._target.tls_ca_file else True
        try:
            response = httpx.post(self._url, data={"grant_type": "client_credentials", "scope": "all-apis"},
                                  auth=(self._credentials.client_id or "", self._credentials.client_secret or ""),
                                  timeout=self._timeout, verify=verify)
        except httpx.HTTPError as exc:
            raise connection_error(exc, host=self._target.host, port=self._target.port,
                                   http_path=self._target.http_path, principal="service principal",
                                   credential=self._credentials.source, waited=self._timeout) from None
        if response.status_code in (400, 401, 403):
            raise ExecutionError(scrub(
                f"Databricks workspace {self._target.address} rejected the service principal's client ID and secret "
                f"(HTTP {response.status_code} from /oidc/v1/token); store valid ones in {self._credentials.source}"))
        if response.status_code != 200:
            raise ExecutionError(f"the token endpoint of Databricks workspace {self._target.address} answered HTTP "
                                 f"{response.status_code}; retry later")
        body = response.json()
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ExecutionError(f"the token endpoint of Databricks workspace {self._target.address} returned no "
                                 "access token; retry later")
        lifetime = body.get("expires_in", 3600)
        return token, time.monotonic() + (float(lifetime) if isinstance(lifetime, int | float) else 3600.0)


@dataclass(frozen=True)
class Result:
    """A statement's rows (fetched whole: IronLayer only reads counts and metadata) and its cost."""

    rows: list[tuple[Any, ...]]
    columns: list[str]
    stats: StatementStats


class Session:
    """One connection to the warehouse, used by one thread at a time (the connector's threadsafety is 1)."""

    def __init__(self, target: Target, credentials: Credentials, limits: Limits, *, tenant: str,
                 cancelled: threading.Event) -> None:
        self.target, self.limits, self.tenant = target, limits, tenant
        self._cancelled = cancelled
        self._cursors: set[Any] = set()
        self._lock = threading.Lock()
        self._connection = self._open(credentials)

    def _open(self, credentials: Credentials) -> Any:
        """Connect, waiting up to `start_timeout` while the warehouse answers 429/503 (it is starting).

        Raises:
            ExecutionError: one line naming what failed and what to do.
        """
        from databricks import sql as dbsql

        kwargs = self._connect_arguments(credentials)
        began = time.monotonic()
        while True:
            try:
                return dbsql.connect(**kwargs)
            except ExecutionError:
                raise
            except Exception as exc:  # the connector raises its own errors, urllib3's and OSError
                waited = time.monotonic() - began
                if (connection_kind(exc) == "busy" and not self._cancelled.is_set()
                        and waited + self.limits.request_retry_seconds <= self.limits.start_timeout):
                    logger.info("SQL warehouse %s is not accepting sessions yet; waiting", self.target.http_path)
                    time.sleep(min(self.limits.start_poll, self.limits.start_timeout - waited))
                    continue
                raise connection_error(exc, host=self.target.host, port=self.target.port,
                                       http_path=self.target.http_path, principal=credentials.principal,
                                       credential=credentials.source, waited=waited,
                                       catalog=self.target.catalog) from None

    def _connect_arguments(self, credentials: Credentials) -> dict[str, Any]:
        limits, target = self.limits, self.target
        kwargs: dict[str, Any] = {
            "server_hostname": target.host, "http_path": target.http_path, "catalog": target.catalog,
            "session_configuration": {"TIMEZONE": "UTC", "STATEMENT_TIMEOUT": str(int(limits.statement_timeout))},
            "query_tags": {"ironlayer_tenant": self.tenant},
            "user_agent_entry": "ironlayer",
            "enable_telemetry": False,  # nothing about tenants' statements leaves for the connector's telemetry
            "_retry_stop_after_attempts_count": limits.request_attempts,
            "_retry_stop_after_attempts_duration": limits.request_retry_seconds,
            "_retry_delay_min": 1.0,
            "_retry_delay_max": 5.0,  # the connector's floor; it waits at least this long between attempts
            "_retry_delay_default": 1.0,
            "_socket_timeout": limits.socket_timeout,
            "_port": target.port,
        }
        if target.tls_ca_file:
            kwargs["_tls_trusted_ca_file"] = target.tls_ca_file
        if credentials.client_id:
            provider = ServicePrincipalToken(target, credentials, timeout=limits.socket_timeout)
            provider.token()  # fail here, with our message, rather than inside the connector
            kwargs["credentials_provider"] = provider
        else:
            kwargs["access_token"] = credentials.token
        return kwargs

    def run(self, sql: str, parameters: Mapping[str, Any] | None = None, *, label: str,
            tags: Mapping[str, str]) -> Result:
        """Run one statement with the query tags and the comment prefix, under the statement timeout.

        Raises:
            ExecutionError: the executor was cancelled before the statement started.
            Exception: the connector's error, for the executor to classify.
        """
        if self._cancelled.is_set():
            raise ExecutionError("cancelled; nothing more is run")
        comment = " ".join(f"{key.removeprefix('ironlayer_')}={value}" for key, value in sorted(tags.items()))
        cursor = self._connection.cursor()
        with self._lock:
            self._cursors.add(cursor)
        timed_out = threading.Event()

        def time_out() -> None:
            timed_out.set()
            self._cancel_cursor(cursor)

        timer = threading.Timer(self.limits.statement_timeout + self.limits.cancel_grace, time_out)
        timer.daemon = True
        timer.start()
        began = time.perf_counter()
        try:
            try:
                cursor.execute(f"/* ironlayer {comment} */ {sql}", query_tags=dict(tags),
                               parameters=dict(parameters) if parameters else None)
            except Exception:
                if timed_out.is_set():
                    raise ExecutionError(f"a statement ran past the statement timeout "
                                         f"({self.limits.statement_timeout:g}s) and was cancelled") from None
                raise
            description = cursor.description or []
            rows = [tuple(row) for row in cursor.fetchall()] if description else []
            seconds = time.perf_counter() - began
            columns = [str(column[0]) for column in description]
            return Result(rows, columns, StatementStats(label, seconds, _reported_rows(cursor, columns, rows),
                                                        None, cursor.query_id))
        finally:
            timer.cancel()
            with self._lock:
                self._cursors.discard(cursor)
            with contextlib.suppress(Exception):
                cursor.close()

    def _cancel_cursor(self, cursor: Any) -> None:
        with contextlib.suppress(Exception):  # it may have finished meanwhile
            cursor.cancel()

    def cancel(self) -> None:
        """Cancel the statements running on this session now (from any thread)."""
        with self._lock:
            cursors = list(self._cursors)
        for cursor in cursors:
            self._cancel_cursor(cursor)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a session the server already dropped
            self._connection.close()


def _reported_rows(cursor: Any, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> int | None:
    """The rows a statement wrote (the connector's rowcount, or Delta's `num_affected_rows`) or returned."""
    count = getattr(cursor, "rowcount", -1)
    if isinstance(count, int) and count >= 0:
        return count
    if "num_affected_rows" in columns and rows:
        value = rows[0][columns.index("num_affected_rows")]
        return int(value) if isinstance(value, int) else None
    return len(rows) if columns else None
