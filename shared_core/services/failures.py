"""The one text of a failure: what IronLayer stores, returns, prints and hands to Durable history.

A failure's message can carry anything its cause put there: a connection string, a token in a URL, an
engine message quoting data (the engine adapter already reduces those to class and position). Every use
case that turns a failure into text it keeps or shows (the run table's error, a step's outcome in the
CLI's apply summary, an activity's output, a job's detail and its commit status) takes it from
`failure_text`, so all of them show the same scrubbed text. The state store scrubs free text again as it
writes it (scrubbing is idempotent), which guards any caller that bypasses the services.
"""

from __future__ import annotations

from shared_core.security.scrub import scrub


def failure_text(failure: BaseException | str) -> str:
    """The scrubbed text of `failure`: its message, or its class name when it has none.

    >>> failure_text(ValueError("cannot reach postgresql://etl:hunter2@db/x"))
    'cannot reach postgresql://etl:***@db/x'
    >>> failure_text(TimeoutError())
    'TimeoutError'
    """
    text = failure if isinstance(failure, str) else str(failure) or type(failure).__name__
    return scrub(text)
