"""Reading request bodies: one JSON object of bounded size, refused with our errors otherwise."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from shared_core.core.errors import InputError, PayloadTooLargeError

MAX_BODY_BYTES = 64 * 1024


def json_object(req: func.HttpRequest, *, max_bytes: int = MAX_BODY_BYTES) -> dict[str, Any]:  # Any: parsed JSON
    """The request's JSON object (an empty body is `{}`).

    Raises:
        PayloadTooLargeError: the body is larger than `max_bytes`.
        InputError: the body is not a JSON object.
    """
    raw = req.get_body()
    if len(raw) > max_bytes:
        raise PayloadTooLargeError(f"body too large (at most {max_bytes // 1024} KiB)")
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InputError("body must be a JSON object")
    return body
