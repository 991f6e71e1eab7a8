"""Function-app fixtures: settings in the environment, real PostgreSQL and blobs, a recording Durable client.

The Functions host cannot run here, so handlers are called through `function_app.app.get_functions()`
with real `azure.functions` request objects. The Durable client is the one part replaced: a
`Mock(spec=DurableOrchestrationClient)` whose calls the tests check exactly. The app refuses to load
outside an explicit development or test environment, so this module says `test` before importing it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, Mock

import azure.durable_functions as df
import azure.functions as func
import pytest

os.environ["IRONLAYER_ENVIRONMENT"] = "test"  # before the app is loaded: it checks its settings then
import function_app
from functions import resources

SECRET = "webhook-secret-for-tests"
APPROVAL_SECRET = "approval-secret-for-tests-0123456789abcdef"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "github"  # copied from shared/fixtures (MIT, see README)


_FUNCTIONS: dict[str, Any] = {}


def functions_by_name() -> dict[str, Any]:
    """The app's functions, indexed once (the SDK refuses to index the same app twice)."""
    if not _FUNCTIONS:
        _FUNCTIONS.update({f.get_function_name(): f for f in function_app.app.get_functions()})
    return _FUNCTIONS


def handler(name: str) -> Callable[..., Any]:
    """The user code of a registered function (without the Durable-client middleware)."""
    code: Callable[..., Any] = functions_by_name()[name].get_user_function()
    wrapped: Callable[..., Any] = getattr(code, "__wrapped__", code)
    return wrapped


def run_activity(name: str, payload: Any) -> Any:
    """Run one registered activity for real (its own event loop, as a worker's invocation), return its output."""
    return asyncio.run(handler(name)(payload))


#: The `approval` event `approve_plan` raises: the reviewer's GitHub login names them.
APPROVED = {"decision": "approve", "by": "reviewer", "comment": ""}


async def approve_plan(tenant: str, plan_id: str) -> dict[str, str]:
    """The reviewer approves as the product records it: a registered identity, decided in one transaction.

    Returns:
        The payload of the `approval` event the decision raised.
    """
    from shared_core.services.approvals import Approver, decide_plan

    store = await resources.get_store()
    await store.set_identity(tenant, "api", "reviewer", role="operator", github_login="reviewer", name="Reviewer")
    raised: dict[str, str] = {}

    async def deliver(instance: str, name: str, payload: Any) -> None:
        raised.update(payload)

    await decide_plan(store, deliver, tenant_id=tenant, plan_id=plan_id, decision="approve",
                      approver=Approver(provider="api", subject="reviewer", via="api"), comment="")
    return raised


def orchestrate(job_input: dict[str, Any], instance_id: str, *, approve: bool = False, events: Sequence[Any] = (),
                respond: Callable[[str, Any], Any] = run_activity) -> Any:
    """Run `plan_orchestrator` through the Durable SDK's executor (tests/functions/durable_replay.py) with every
    activity run for real by `respond`; `events` are the external events raised meanwhile. With `approve`, the
    reviewer approves for real (`approve_plan`) once approval is requested, and the event follows. Returns the
    `Run`."""
    from tests.functions.durable_replay import Raise, Script, app_orchestrations, run_orchestration

    answer = respond
    if approve:
        def answer(name: str, payload: Any) -> Any:
            value = respond(name, payload)
            if name == "request_approval_activity" and value.get("status") == "requested":
                assert asyncio.run(approve_plan(job_input["tenant_id"], payload["plan_id"])) == APPROVED
            return value

        events = (*events, Raise("approval", APPROVED))
    orchestrators = app_orchestrations(functions_by_name().values())
    return run_orchestration(orchestrators["plan_orchestrator"], job_input,
                             Script(answer, tuple(events), orchestrators=orchestrators), instance_id=instance_id)


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def request(method: str, url: str, *, body: bytes = b"", headers: dict[str, str] | None = None,
            params: dict[str, str] | None = None, route_params: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest(method=method, url=url, headers=headers or {}, params=params or {},
                            route_params=route_params or {}, body=body)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def json_body(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


class Status:
    def __init__(self, runtime_status: str | None) -> None:
        self.runtime_status = runtime_status


@pytest.fixture()
def client() -> Mock:
    """A Durable client that remembers started instances: get_status reports them as Running."""
    mock = Mock(spec=df.DurableOrchestrationClient)
    started: dict[str, Any] = {}

    async def start_new(name: str, instance_id: str | None = None, client_input: Any = None) -> str:
        assert instance_id is not None
        started[instance_id] = client_input
        return instance_id

    async def get_status(instance_id: str, *args: Any, **kwargs: Any) -> Status:
        return Status("Running" if instance_id in started else None)

    mock.start_new = AsyncMock(side_effect=start_new)
    mock.get_status = AsyncMock(side_effect=get_status)
    mock.raise_event = AsyncMock(return_value=None)
    mock.terminate = AsyncMock(return_value=None)
    mock.started = started
    return mock


@pytest.fixture()
def app_env(database_url: str, admin_database_url: str, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Settings for one test: its own tenant, blob folder and warehouse; the session's database."""
    tenant = f"f{uuid.uuid4().hex[:12]}"
    values = {
        "IRONLAYER_ENVIRONMENT": "test",
        "IRONLAYER_TENANT": tenant,
        "IRONLAYER_REPOSITORY": "binkkatal/sample_app",
        "IRONLAYER_BRANCHES": "master,main",
        "IRONLAYER_GITHUB_WEBHOOK_SECRET": SECRET,
        "IRONLAYER_GITHUB_TOKEN": "",
        "IRONLAYER_DATABASE_URL": database_url,
        "IRONLAYER_MIGRATION_DATABASE_URL": admin_database_url,
        "IRONLAYER_HOME": str(tmp_path / "home"),
        "IRONLAYER_BLOB_DIR": str(tmp_path / "blobs"),
        "IRONLAYER_APPROVAL_SECRET": APPROVAL_SECRET,
        "IRONLAYER_PUBLIC_BASE_URL": "https://ironlayer.example.com",
        "IRONLAYER_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "IRONLAYER_MAX_BODY_BYTES": "1048576",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for key in ("IRONLAYER_LOCAL_REPO", "IRONLAYER_BLOB_CONNECTION_STRING", "IRONLAYER_BLOB_ACCOUNT_URL",
                "IRONLAYER_AUTO_APPROVE", "IRONLAYER_ENGINE"):
        monkeypatch.delenv(key, raising=False)
    resources.reset()
    yield {"tenant": tenant, "tmp": tmp_path, "url": database_url}
    resources.reset()
