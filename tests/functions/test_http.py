"""The HTTP layer: the one error tree and its status map, and the request guard (decisions: test_decisions.py).

The statuses below are written out by hand (not derived from `functions.http.errors`). Against the map
before issue 8 they differ only where an error was misclassified as the caller's bad input: a server
misconfiguration (`SettingsError`), the store failing (`StateError`), stored data that is broken
(`PlanError`, `BlobMissingError`), a stale plan or a held lock (409).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from typing import Any

import azure.functions as func
import pytest

import functions
import shared_core
from functions import resources
from functions.http.errors import STATUSES, status_of
from functions.http.responses import error_response
from shared_core.core import errors
from tests.functions.conftest import functions_by_name, json_body
from tests.functions.test_security import call, jwt_env, token  # noqa: F401  (`jwt_env` is a fixture)

EXPECTED = {
    "CoreError": 500, "InputError": 400, "PayloadTooLargeError": 413, "WebhookError": 400,
    "WebhookSignatureError": 401, "SecurityCommandError": 400, "RepositorySettingsError": 400, "DateRangeError": 400,
    "PlanLimitError": 400, "NotFoundError": 404, "NotOnboardedError": 404, "ConflictError": 409,
    "ModelError": 400, "UnsafeSqlError": 400, "RefError": 400, "CycleError": 400, "CheckFailedError": 400,
    "ProjectError": 400, "WatermarkError": 400, "PlanError": 500, "SourceError": 400, "SourceUnavailableError": 503,
    "ExecutionError": 400, "BlockedBatchError": 400,
    "StateError": 500, "StateUnavailableError": 503, "BlobMissingError": 500, "StalePlanError": 409,
    "LockTimeoutError": 409, "SettingsError": 500, "AuthSettingsError": 500, "ApprovalError": 400,
    "InvalidTokenError": 401, "ExpiredTokenError": 410, "ReusedTokenError": 410, "WrongPlanError": 403,
    "WrongActionError": 403, "AuthenticationError": 401, "JwksUnavailableError": 503, "AuthorizationError": 403,
    "ActivityError": 500, "OrchestrationUnavailableError": 503, "AuditError": 500, "CredentialError": 500,
    "RateLimitedError": 429,
    "StripeSignatureError": 400, "ConcurrencyLimitError": 429, "PaymentRequiredError": 402,
}


def _tree() -> dict[str, type[errors.CoreError]]:
    return {name: kind for name, kind in vars(errors).items()
            if isinstance(kind, type) and issubclass(kind, errors.CoreError)}


def _modules() -> list[str]:
    names = []
    for package in (shared_core, functions):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__"):
                names.append(info.name)
    return names


def test_every_error_class_of_the_product_is_in_the_one_tree() -> None:
    strays = []
    for name in _modules():
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if (isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == name
                    and not attribute.startswith("_") and name != errors.__name__):
                strays.append(f"{name}.{attribute}")
    assert strays == []


def test_every_error_has_its_status_written_here_and_none_carries_one() -> None:
    tree = _tree()
    assert set(tree) == set(EXPECTED)
    assert set(STATUSES) == set(tree.values())  # listed explicitly, not inherited by accident
    for name, kind in tree.items():
        assert not hasattr(kind, "status"), name
        assert status_of(kind.__new__(kind)) == EXPECTED[name], name
    assert f"├── {'InputError':<27}" in (errors.__doc__ or "")  # the docstring lists the tree


def test_an_unclassified_error_is_the_servers_fault() -> None:
    class Unlisted(errors.CoreError):
        pass

    class UnlistedInput(errors.InputError):
        pass

    assert (status_of(Unlisted("x")), status_of(UnlistedInput("x"))) == (500, 400)


def test_error_answers_carry_retry_after_and_www_authenticate_only_where_they_mean_something() -> None:
    limited = error_response(errors.RateLimitedError("too many requests; retry in 7 s", retry_after_seconds=7))
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    unauthenticated = error_response(errors.AuthenticationError("not authenticated: no token\nsecond line"))
    assert unauthenticated.headers["WWW-Authenticate"] == 'Bearer realm="ironlayer"'
    assert json_body(unauthenticated) == {"error": {"status": 401, "message": "not authenticated: no token"}}
    for quiet in (errors.WebhookSignatureError("invalid X-Hub-Signature-256"), errors.JwksUnavailableError("down")):
        response = error_response(quiet)
        assert "WWW-Authenticate" not in response.headers and "Retry-After" not in response.headers


def test_the_guarded_endpoints_are_exactly_the_role_policy() -> None:
    from functions.http.guard import GUARDED
    from shared_core.security.roles import POLICY

    functions_by_name()  # imports every blueprint
    assert set(POLICY) == GUARDED


def test_guarded_handlers_expose_exactly_the_hosts_bindings() -> None:
    api = [f for f in functions_by_name().values() if f.get_user_function().__module__ == "functions.api"
           or f.get_function_name() == "telemetry_summary"]  # the telemetry blueprint's guarded endpoint
    assert len(api) == 16
    for function in api:
        user = function.get_user_function()
        bindings = {b.name for b in function.get_bindings() if b.name != "$return"}
        assert set(inspect.signature(user).parameters) == bindings, function.get_function_name()
        hints = typing.get_type_hints(user)  # what the worker resolves when it indexes the app
        assert hints["req"] is func.HttpRequest and hints["return"] is func.HttpResponse
        assert user.__name__ == function.get_function_name()


def test_a_guard_refuses_handlers_that_would_not_bind() -> None:
    from functions.http.guard import guarded

    async def wrong(req: func.HttpRequest, store: Any) -> Any:
        return {}

    with pytest.raises(TypeError, match="takes"):
        guarded("health")(wrong)
    with pytest.raises(TypeError, match="several"):
        guarded("approve_plan", "reject_plan")


def test_a_missing_credential_key_is_the_servers_fault(jwt_env: dict[str, Any],  # noqa: F811
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRONLAYER_CREDENTIAL_KEYS", "")
    resources.reset()
    response = call("put_credential", token(jwt_env["tenant"], "admin"), method="PUT", body=b'{"value": "x"}',
                    route_params={"name": "github_token"})
    assert response.status_code == 500 and "IRONLAYER_CREDENTIAL_KEYS" in json_body(response)["error"]["message"]
