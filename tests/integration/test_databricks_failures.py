"""Failure paths of the Databricks executor with the real databricks-sql-connector against local endpoints:
a closed port, a host that does not resolve, an HTTPS server on 127.0.0.1 answering 503, 429, 401, 403 or
404, a certificate nobody trusts, and a service principal's token endpoint. Times and request counts are
measured, not assumed: every failure is one line, and it arrives within a bound set by `Limits`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared_core.adapters.engines.databricks import Credentials, DatabricksExecutor, Limits, Target
from shared_core.core.errors import ExecutionError

pytestmark = pytest.mark.integration

HTTP_PATH = "/sql/1.0/warehouses/abc123"
FAST = Limits(request_attempts=5, request_retry_seconds=6, start_timeout=6, socket_timeout=5)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (the test's own certificate authority)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


@dataclass
class Endpoint:
    """What the local workspace answers, and what it was asked."""

    statuses: list[int]  # the SQL endpoint's answers, in order; the last one repeats
    token_status: int = 200
    port: int = 0
    hits: list[tuple[float, str, str]] = field(default_factory=list)  # (time, path, Authorization header)
    bodies: list[bytes] = field(default_factory=list)


@pytest.fixture
def workspace(certificate: tuple[str, str]) -> Iterator[Endpoint]:
    endpoint = Endpoint(statuses=[503])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            endpoint.hits.append((time.monotonic(), self.path, self.headers.get("Authorization", "")))
            endpoint.bodies.append(body)
            if self.path == "/oidc/v1/token":
                payload = b'{"access_token": "sp-token-1", "token_type": "Bearer", "expires_in": 3600}'
                self.send_response(endpoint.token_status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            calls = sum(1 for _, path, _ in endpoint.hits if path != "/oidc/v1/token")
            status = endpoint.statuses[min(calls, len(endpoint.statuses)) - 1]
            self.send_response(status)
            if status in (429, 503):
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    endpoint.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield endpoint
    server.shutdown()
    server.server_close()


def connect(port: int, *, ca: str | None, credentials: Credentials | None = None, limits: Limits = FAST,
            host: str = "127.0.0.1") -> tuple[float, str]:
    """Open an executor; returns (seconds until it failed, the error's message)."""
    began = time.monotonic()
    with pytest.raises(ExecutionError) as caught:
        DatabricksExecutor(Target(host, HTTP_PATH, "main", port=port, tls_ca_file=ca),
                           credentials or Credentials(token="dapi-not-valid", source="credential dbx"),
                           tenant="acme", limits=limits)
    return time.monotonic() - began, str(caught.value)


def test_a_closed_port_fails_fast_and_says_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    seconds, message = connect(port, ca=None)
    assert seconds < 15
    assert message == f"cannot connect to Databricks workspace 127.0.0.1:{port}: connection refused; check the host and port"


def test_a_host_that_does_not_resolve_is_named() -> None:
    seconds, message = connect(443, ca=None, host="adb-0000000000000000.0.nosuch.invalid")
    assert seconds < 15
    assert "the host name does not resolve; check the host" in message and "nosuch.invalid" in message


@pytest.mark.parametrize("status", [503, 429])
def test_busy_answers_are_retried_within_the_budget_then_reported(workspace: Endpoint, certificate: tuple[str, str],
                                                                  status: int) -> None:
    workspace.statuses = [status]
    seconds, message = connect(workspace.port, ca=certificate[0])
    assert 4 < seconds < 12  # the connector's one retry (its backoff floor is 5 s), then the budget is spent
    assert len(workspace.hits) == 2  # not the connector's default 30 attempts over 900 s
    assert message.startswith(f"the SQL warehouse {HTTP_PATH} on 127.0.0.1:{workspace.port} kept answering busy "
                              "(HTTP 429/503: starting, stopped or rate-limited)")


def test_a_starting_warehouse_is_waited_for_up_to_the_start_timeout(workspace: Endpoint,
                                                                    certificate: tuple[str, str]) -> None:
    workspace.statuses = [503, 503, 503, 401]  # starting, then up (and refusing the token)
    limits = Limits(request_attempts=1, request_retry_seconds=1, start_timeout=30, start_poll=1, socket_timeout=5)
    seconds, message = connect(workspace.port, ca=certificate[0], limits=limits)
    assert len(workspace.hits) == 4 and 3 <= seconds < 10  # three busy answers, a second apart, then the answer
    assert "rejected the token (HTTP 401" in message
    limits = Limits(request_attempts=1, request_retry_seconds=1, start_timeout=3, start_poll=1, socket_timeout=5)
    workspace.hits.clear()
    workspace.statuses = [503]
    seconds, message = connect(workspace.port, ca=certificate[0], limits=limits)
    assert seconds < 6 and "kept answering busy" in message  # never past the start timeout


@pytest.mark.parametrize(("status", "expected"), [
    (401, "Databricks workspace 127.0.0.1:{port} rejected the token (HTTP 401: invalid, expired or revoked); "
          "store a valid one in credential dbx"),
    (403, "the token may not use the SQL warehouse " + HTTP_PATH + " on 127.0.0.1:{port} (HTTP 403); grant it "
          "CAN USE on the warehouse"),
    (404, "no SQL warehouse at HTTP path " + HTTP_PATH + " on 127.0.0.1:{port} (HTTP 404); copy the HTTP path "
          "from the warehouse's Connection details"),
])
def test_refusals_are_not_retried_and_say_what_to_fix(workspace: Endpoint, certificate: tuple[str, str], status: int,
                                                      expected: str) -> None:
    workspace.statuses = [status]
    seconds, message = connect(workspace.port, ca=certificate[0])
    assert seconds < 3 and len(workspace.hits) == 1
    assert message == expected.format(port=workspace.port)
    assert "dapi-not-valid" not in message
    assert workspace.hits[0][2] == "Bearer dapi-not-valid"


def test_a_certificate_nobody_trusts_is_a_tls_error(workspace: Endpoint) -> None:
    seconds, message = connect(workspace.port, ca=None)
    assert seconds < 15
    assert message == f"TLS with Databricks workspace 127.0.0.1:{workspace.port} failed (certificate not trusted); check the host"


def test_a_service_principal_exchanges_its_secret_for_a_token_and_uses_it(workspace: Endpoint,
                                                                         certificate: tuple[str, str]) -> None:
    workspace.statuses = [401]
    principal = Credentials(client_id="sp-client", client_secret="sp-secret", source="credential dbx_sp")
    _, message = connect(workspace.port, ca=certificate[0], credentials=principal)
    (_, token_path, basic), (_, sql_path, bearer) = [(h[0], h[1], h[2]) for h in workspace.hits]
    assert token_path == "/oidc/v1/token" and basic.startswith("Basic ")
    assert sorted(workspace.bodies[0].decode().split("&")) == ["grant_type=client_credentials", "scope=all-apis"]
    assert sql_path == HTTP_PATH and bearer == "Bearer sp-token-1"
    assert "rejected the service principal (HTTP 401" in message and "sp-secret" not in message


def test_a_refused_client_secret_is_reported_before_any_statement(workspace: Endpoint,
                                                                  certificate: tuple[str, str]) -> None:
    workspace.token_status = 401
    principal = Credentials(client_id="sp-client", client_secret="sp-secret", source="credential dbx_sp")
    seconds, message = connect(workspace.port, ca=certificate[0], credentials=principal)
    assert seconds < 3 and [h[1] for h in workspace.hits] == ["/oidc/v1/token"]
    assert message == (f"Databricks workspace 127.0.0.1:{workspace.port} rejected the service principal's client ID "
                       "and secret (HTTP 401 from /oidc/v1/token); store valid ones in credential dbx_sp")


def test_the_connector_is_not_imported_on_the_webhook_path(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys, function_app, functions.webhook, functions.resources, shared_core.adapters.engines.databricks\n"
            "loaded = sorted(m for m in sys.modules if m == 'databricks' or m.startswith('databricks.'))\n"
            "print(loaded)\n")
    root = Path(__file__).parents[2]
    env = {"IRONLAYER_ENVIRONMENT": "test", "PATH": "/usr/bin:/bin", "IRONLAYER_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
