"""What reaches Durable history from an activity: its output and its failure, scrubbed of secrets and PII.

Durable Functions records every activity's return value and every exception it raises (message and stack)
in the task hub's history, which outlives the job and is readable by whoever reads the hub. `scrubbed`
wraps an activity so that its output passes through `scrub_mapping` and any failure leaves as an
`ActivityError` whose message is `failure_text` of the original (its class named, its message scrubbed),
raised without the original attached, so no unscrubbed text reaches the recorded stack either. The
original is logged (the log record is scrubbed by the app's record factory) for the operators.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable, Coroutine, Mapping
from typing import ParamSpec, TypeVar, cast

logger = logging.getLogger(__name__)

P = ParamSpec("P")
Message = TypeVar("Message", bound=Mapping[str, object])  # an activity's output: a TypedDict of messages.py
Activity = Callable[P, Coroutine[object, object, Message]]


def scrubbed(activity: Activity[P, Message]) -> Activity[P, Message]:
    """Wrap an activity so its output and failures reach Durable history scrubbed (see the module docstring).

    The wrapper keeps the activity's name and signature (the host binds the input by parameter name) and
    hides no `__wrapped__`, so whoever calls the registered function runs the scrubbing too.
    """

    async def run(*args: P.args, **kwargs: P.kwargs) -> Message:
        from shared_core.core.errors import ActivityError
        from shared_core.security.scrub import scrub_mapping
        from shared_core.services.failures import failure_text

        try:
            output = await activity(*args, **kwargs)
        except Exception as exc:
            logger.warning("activity %s failed", activity.__name__, exc_info=True)
            text = failure_text(exc)
            raise ActivityError(text if text == type(exc).__name__ else f"{type(exc).__name__}: {text}") from None
        # Scrubbing keeps the message's keys and types (it rewrites text, and masks only secret-named keys, which
        # no message has), so the output is still the activity's message type.
        return cast(Message, scrub_mapping(output))

    run.__name__, run.__qualname__ = activity.__name__, activity.__qualname__
    run.__doc__, run.__module__ = activity.__doc__, activity.__module__
    # the annotations resolved in the activity's own module: the host evaluates them from this wrapper
    run.__annotations__ = typing.get_type_hints(activity)
    run.__signature__ = inspect.signature(activity)  # type: ignore[attr-defined]  # the host reads the bindings here
    return run
