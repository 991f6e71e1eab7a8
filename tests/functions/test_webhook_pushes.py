"""Exactly one run per push, and never a 500: the real webhook function on real PostgreSQL.

"The same push" is the same delivery (GitHub's redelivery keeps its ID) or the same move of the branch head
while it is the branch's newest push (a second webhook, concurrent retries): those share one run. The same
commits pushed again after another push (a force-push back and forth) are a new push. The Durable client
is the one fake: it counts `start_new` calls and takes a moment to answer, as the real one does, so that a
check-then-start would be caught starting twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from unittest.mock import Mock

import pytest

from tests.functions.conftest import fixture_bytes, handler, json_body, request, sign
from tests.functions.test_security import call, jwt_env, token  # noqa: F401  (`jwt_env` is a fixture)

pytestmark = pytest.mark.integration
A, B = "a" * 40, "b" * 40


class CountingClient:
    """The Durable client's `start_new`, slow enough for concurrent callers to overlap; counts every call."""

    def __init__(self) -> None:
        self.started: list[tuple[str, dict[str, Any]]] = []
        self.calls = 0

    async def start_new(self, name: str, instance_id: str | None = None, client_input: Any = None) -> str:
        self.calls += 1
        await asyncio.sleep(0.05)
        assert name == "plan_orchestrator" and instance_id is not None
        self.started.append((instance_id, client_input))
        return instance_id


def push_body(before: str, after: str, **changes: Any) -> bytes:
    document = json.loads(fixture_bytes("push.branch-modified.json"))
    document.update(before=before, after=after, **changes)
    return json.dumps(document).encode()


def delivery(body: bytes, delivery_id: str, *, signature: str | None = None,
             headers: dict[str, str] | None = None) -> Any:
    all_headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery_id,
                   "X-Hub-Signature-256": signature if signature is not None else sign(body), **(headers or {})}
    return request("POST", "/api/github/webhook", body=body, headers=all_headers)


async def deliver_all(client: Any, requests: list[Any]) -> list[Any]:
    webhook = handler("github_webhook")
    return list(await asyncio.gather(*(webhook(req, client=client) for req in requests)))


@pytest.mark.parametrize("same_delivery_id", [False, True], ids=["50 deliveries", "one delivery 50 times"])
def test_fifty_concurrent_deliveries_of_one_push_start_one_orchestration(app_env: dict[str, Any],
                                                                         same_delivery_id: bool) -> None:
    client = CountingClient()
    body = push_body(A, B)
    requests = [delivery(body, "d-1" if same_delivery_id else f"d-{n}") for n in range(50)]
    responses = asyncio.run(deliver_all(client, requests))
    assert client.calls == 1
    ((instance, started),) = client.started
    assert started["sequence"] == 1 and (started["base"], started["target"]) == (A, B)
    bodies = [json_body(r) for r in responses]
    assert all(r.status_code == 202 for r in responses)
    assert sorted(b["status"] for b in bodies) == ["accepted"] + ["duplicate"] * 49
    assert {b.get("instance_id", instance) for b in bodies} == {instance}


def test_a_force_push_back_and_forth_runs_the_third_push(app_env: dict[str, Any]) -> None:
    client = CountingClient()
    webhook = handler("github_webhook")

    def send(before: str, after: str, delivery_id: str) -> dict[str, Any]:
        response = asyncio.run(webhook(delivery(push_body(before, after), delivery_id), client=client))
        assert response.status_code == 202
        result: dict[str, Any] = json_body(response)
        return result

    first, second, third = send(A, B, "d-1"), send(B, A, "d-2"), send(A, B, "d-3")
    assert [first["status"], second["status"], third["status"]] == ["accepted"] * 3
    assert len({first["instance_id"], second["instance_id"], third["instance_id"]}) == 3
    assert [(i["base"], i["target"], i["sequence"]) for _, i in client.started] == [(A, B, 1), (B, A, 2), (A, B, 3)]
    assert send(A, B, "d-1") == {"status": "duplicate", "reason": "this delivery was already received"}
    late = send(A, B, "d-4")  # another webhook's delivery of the newest push: the same run
    assert (late["status"], late["instance_id"]) == ("duplicate", third["instance_id"])
    assert client.calls == 3


def test_concurrent_pushes_of_two_branches_run_each_once(app_env: dict[str, Any]) -> None:
    client = CountingClient()
    main, master = push_body(A, B, ref="refs/heads/main"), push_body(A, B)
    requests = [delivery(main if n % 2 else master, f"d-{n}") for n in range(20)]
    asyncio.run(deliver_all(client, requests))
    assert client.calls == 2
    assert sorted(i["branch"] for _, i in client.started) == ["main", "master"]


def nested(depth: int) -> bytes:
    return b'{"ref": ' + b"[" * depth + b"]" * depth + b"}"


def spliced(raw: bytes, **changes: Any) -> bytes:
    """A signed-able push body whose field values `"@"` are replaced by `raw` JSON text (not valid Python JSON)."""
    return push_body(A, B, **changes).replace(b'"@"', raw, 1)


Mutation = Callable[[], tuple[bytes, dict[str, str]]]
HOSTILE: dict[str, tuple[Mutation, int, str]] = {
    "JSON nested 100,000 deep": (lambda: (nested(100_000), {}), 400, "body is not valid JSON: nested too deeply"),
    "an integer of 5,000 digits": (lambda: (spliced(b"9" * 5000, size="@"), {}), 400,
                                   "body is not valid JSON: a number has too many digits"),
    "a float beyond double": (lambda: (spliced(b"1e999999", repository={"id": "@", "full_name": "o/r"}), {}), 400,
                              "repository.id: expected int"),
    "NaN": (lambda: (spliced(b"NaN", size="@"), {}), 400, "body is not valid JSON: NaN is not a JSON number"),
    "a NUL byte in the ref": (lambda: (push_body(A, B, ref="refs/heads/mas\u0000ter"), {}), 400,
                              "ref: contains a control character"),
    "a NUL byte in the pusher's name": (lambda: (push_body(A, B, pusher={"name": "bin\u0000k"}), {}), 400,
                                        "name: contains a control character"),
    "a lone surrogate in the pusher's name": (lambda: (spliced(b'"bink\\ud800"', pusher={"name": "@"}), {}), 400,
                                              "name: contains a lone UTF-16 surrogate"),
    "a lone surrogate in the ref": (lambda: (spliced(b'"refs/heads/\\udfff"', ref="@"), {}), 400,
                                    "ref: contains a lone UTF-16 surrogate"),
    "bytes that are not UTF-8": (lambda: (b'{"ref": "\xff\xfe"}', {}), 400, "body is not valid JSON"),
    "a repository name with a trailing newline": (
        lambda: (push_body(A, B, repository={"id": 1, "full_name": "binkkatal/sample_app\n"}), {}), 400,
        "repository.full_name: expected owner/name"),
    "a repository that is not an object": (lambda: (push_body(A, B, repository=[1]), {}), 400,
                                           "repository: expected dict"),
    "a NUL byte in the delivery ID": (lambda: (push_body(A, B), {"X-GitHub-Delivery": "d-\u00001"}), 400,
                                      "X-GitHub-Delivery must be 1-200 printable ASCII characters"),
    "a delivery ID of 201 characters": (lambda: (push_body(A, B), {"X-GitHub-Delivery": "d" * 201}), 400,
                                        "X-GitHub-Delivery must be 1-200 printable ASCII characters"),
    "an event name of a megabyte": (lambda: (push_body(A, B), {"X-GitHub-Event": "x" * 1_000_000}), 202,
                                    "is not handled; only push"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_deliveries_get_a_json_4xx_never_a_500(app_env: dict[str, Any], case: str) -> None:
    make, status, message = HOSTILE[case]
    body, headers = make()
    client = CountingClient()
    (response,) = asyncio.run(deliver_all(client, [delivery(body, "d-hostile", headers=headers)]))
    assert response.status_code == status
    answer = json_body(response)
    text = answer["error"]["message"] if status >= 400 else answer["reason"]
    assert message in text and len(text) < 400 and "\n" not in text
    assert response.headers["Content-Type"] == "application/json"
    assert client.calls == 0


@pytest.mark.usefixtures("jwt_env")
def test_an_api_token_for_a_tenant_with_no_row_is_refused_with_403(app_env: dict[str, Any]) -> None:
    for name, method, body in (("list_jobs", "GET", b""), ("put_settings", "PUT", b'{"allow_self_approval": true}'),
                               ("audit_verify", "GET", b"")):
        response = call(name, token("ghost-tenant", "admin"), method=method, body=body)
        assert response.status_code == 403, name
        assert "tenant is not provisioned on this deployment" in json_body(response)["error"]["message"]
    assert call("list_jobs", token(app_env["tenant"], "admin")).status_code == 200


def test_a_store_that_is_down_is_a_503_not_a_500(app_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from functions import resources

    monkeypatch.setenv("IRONLAYER_DATABASE_URL", "postgresql://ironlayer_app@127.0.0.1:1/nothing")
    monkeypatch.setenv("IRONLAYER_MIGRATION_DATABASE_URL", "")
    resources.reset()
    client = Mock()
    (response,) = asyncio.run(deliver_all(client, [delivery(push_body(A, B), "d-down")]))
    assert response.status_code == 503
    assert "state store unreachable" in json_body(response)["error"]["message"]
