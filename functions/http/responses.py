"""Shaping HTTP replies: JSON bodies, HTML pages, and the one mapping from our errors to statuses."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import azure.functions as func

from shared_core.core.errors import CoreError, StateUnavailableError

logger = logging.getLogger(__name__)

JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def json_response(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, sort_keys=True, default=str), status_code=status, headers=JSON_HEADERS)


def status_of(exc: CoreError) -> int:
    """The HTTP status for one of our errors: its own `status`, 503 when a dependency is down, else 400."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status
    if isinstance(exc, StateUnavailableError):
        return 503
    return 400


def error_response(exc: CoreError, *, correlation: str = "") -> func.HttpResponse:
    """A JSON error body `{"error": {"status", "message"}}`; the message is one line, never a traceback."""
    status = status_of(exc)
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if status >= 500:
        logger.error("request %s failed: %s", correlation, message)
    return json_response({"error": {"status": status, "message": message}}, status)


def html_response(body: str, status: int = 200, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(body, status_code=status, headers={"Content-Type": "text/html; charset=utf-8",
                                                                  **(headers or {})})
