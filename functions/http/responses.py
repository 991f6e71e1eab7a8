"""Shaping HTTP replies: JSON bodies, HTML pages, and the JSON body of an error (status from `errors`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import azure.functions as func

from functions.http.errors import status_of
from shared_core.core.errors import AuthenticationError, CoreError, RateLimitedError

logger = logging.getLogger(__name__)

JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def json_response(body: object, status: int = 200) -> func.HttpResponse:
    """`body` as JSON (sorted keys; dates and other values as text) with `JSON_HEADERS`."""
    return func.HttpResponse(json.dumps(body, sort_keys=True, default=str), status_code=status, headers=JSON_HEADERS)


def error_response(exc: CoreError, *, correlation: str = "") -> func.HttpResponse:
    """A JSON error body `{"error": {"status", "message"}}`; the message is one line, never a traceback.

    A rate-limit refusal carries `Retry-After`; a 401 for a missing or bad access token carries
    `WWW-Authenticate` (the scheme the API expects).
    """
    status = status_of(exc)
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if status >= 500:
        logger.error("request %s failed: %s", correlation, message)
    response = json_response({"error": {"status": status, "message": message}}, status)
    if isinstance(exc, RateLimitedError) and exc.retry_after_seconds:
        response.headers["Retry-After"] = str(exc.retry_after_seconds)
    if isinstance(exc, AuthenticationError) and status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ironlayer"'
    return response


def html_response(body: str, status: int = 200, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    """An HTML page with the given extra headers (the approval pages pass their security headers)."""
    return func.HttpResponse(body, status_code=status, headers={"Content-Type": "text/html; charset=utf-8",
                                                                  **(headers or {})})
