"""The request guard of the API: one decorator admits the caller, runs the handler, and answers its errors.

    @bp.route(route="plans", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    @guarded("list_plans")
    async def list_plans(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
        return {"plans": await store.list_plans(principal.tenant_id, 100)}

The handler receives the request, the authenticated `Principal` and the state store (plus the Durable
`client` when it declares one) and returns a JSON body (answered 200), a `Reply` (JSON with another
status) or a ready `func.HttpResponse`. Every `CoreError` it or the guard raises becomes the JSON error
answer of `functions.http.responses.error_response`, with its status from `functions.http.errors`; any
other exception fails loudly, for the platform to log. The function the Functions host indexes keeps
the handler's name and exactly the host's bindings (`req`, and `client` when declared).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import azure.durable_functions as df
import azure.functions as func

from functions.http.auth import admit
from functions.http.responses import error_response, json_response
from shared_core.core.errors import CoreError


@dataclass(frozen=True)
class Reply:
    """A JSON body answered with a status other than 200 (e.g. 202 for work that was started)."""

    body: Mapping[str, object]
    status: int


#: What a guarded handler returns.
Body = Mapping[str, object] | Reply | func.HttpResponse
Handler = Callable[..., Awaitable[Body]]
Endpoint = Callable[..., Awaitable[func.HttpResponse]]

#: The role-policy names of every guarded endpoint (the tests compare them with the policy).
GUARDED: set[str] = set()

_PLAIN = ("req", "principal", "store")
_WITH_CLIENT = (*_PLAIN, "client")


def guarded(*endpoints: str, pick: Callable[[func.HttpRequest], str] | None = None) -> Callable[[Handler], Endpoint]:
    """Guard an API handler: authenticate, authorize for its endpoint, rate-limit, then map its errors.

    Args:
        endpoints: the endpoint's name(s) in `shared_core.security.roles.POLICY`.
        pick: for a handler serving several endpoints (approve and reject), chooses the endpoint of a
            request before the caller is admitted; it may raise `InputError` for a malformed request.

    Raises:
        TypeError: the handler's parameters are not `(req, principal, store)` or `(req, principal, store,
            client)` (a programming error, raised on import).
    """
    if not endpoints or (len(endpoints) > 1) != (pick is not None):
        raise TypeError("guard one endpoint, or several with a `pick` that chooses among them")
    GUARDED.update(endpoints)

    def endpoint_of(req: func.HttpRequest) -> str:
        if pick is None:
            return endpoints[0]
        name = pick(req)
        if name not in endpoints:
            raise ValueError(f"pick chose {name!r}, which is not one of the guarded endpoints {endpoints}")
        return name

    def decorate(handler: Handler) -> Endpoint:
        parameters = tuple(inspect.signature(handler).parameters)

        async def plain(req: func.HttpRequest) -> func.HttpResponse:
            return await _serve(req, handler, endpoint_of)

        async def with_client(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
            return await _serve(req, handler, endpoint_of, client=client)

        if parameters == _PLAIN:
            served: Endpoint = plain
        elif parameters == _WITH_CLIENT:
            served = with_client
        else:
            raise TypeError(f"{handler.__qualname__} takes {parameters}; a guarded handler takes {_PLAIN} "
                            "and, to use the Durable client, `client` last")
        # The host indexes the function by its name and binds its parameters: keep the handler's name and
        # docstring, but not `__wrapped__`, so the bindings seen are the host's (`req`, `client`).
        served.__name__, served.__qualname__ = handler.__name__, handler.__qualname__
        served.__doc__, served.__module__ = handler.__doc__, handler.__module__
        return served

    return decorate


async def _serve(req: func.HttpRequest, handler: Handler, endpoint_of: Callable[[func.HttpRequest], str],
                 **bindings: object) -> func.HttpResponse:
    try:
        principal, store = await admit(req, endpoint_of(req))
        body = await handler(req, principal, store, **bindings)
    except CoreError as exc:
        return error_response(exc)
    if isinstance(body, func.HttpResponse):
        return body
    if isinstance(body, Reply):
        return json_response(body.body, body.status)
    return json_response(body)

