"""The one map from our errors to HTTP statuses; every handler answers an error through it.

The core raises domain errors (`shared_core.core.errors`) and knows nothing of HTTP. Here each error class
gets its status by what it means: the caller's bad input is a 4xx, a server misconfiguration or broken
stored data a 500, a dependency that is down a 503. A class inherits its nearest listed ancestor's
status; every class of the tree is listed, so the fallback (500) only catches an error that a later
change forgot to classify, and then as the server's fault, never the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from shared_core.core import errors

#: Error class -> HTTP status. Ordered like the tree in `shared_core.core.errors`.
STATUSES: Mapping[type[errors.CoreError], int] = MappingProxyType({
    errors.CoreError: 500,
    errors.InputError: 400,
    errors.PayloadTooLargeError: 413,
    errors.WebhookError: 400,
    errors.WebhookSignatureError: 401,
    errors.StripeSignatureError: 400,
    errors.SecurityCommandError: 400,
    errors.RepositorySettingsError: 400,
    errors.DateRangeError: 400,
    errors.PlanLimitError: 400,
    errors.NotFoundError: 404,
    errors.NotOnboardedError: 404,
    errors.ConflictError: 409,
    errors.ModelError: 400,
    errors.UnsafeSqlError: 400,
    errors.RefError: 400,
    errors.CycleError: 400,
    errors.CheckFailedError: 400,
    errors.ProjectError: 400,
    errors.WatermarkError: 400,
    errors.PlanError: 500,  # the Functions read only plans they stored: a bad one is our data at fault
    errors.SourceError: 400,
    errors.SourceUnavailableError: 503,
    errors.ExecutionError: 400,
    errors.BlockedBatchError: 400,
    errors.StateError: 500,
    errors.StateUnavailableError: 503,
    errors.BlobMissingError: 500,
    errors.StalePlanError: 409,
    errors.LockTimeoutError: 409,
    errors.SettingsError: 500,
    errors.AuthSettingsError: 500,
    errors.ApprovalError: 400,
    errors.InvalidTokenError: 401,
    errors.ExpiredTokenError: 410,
    errors.ReusedTokenError: 410,
    errors.WrongPlanError: 403,
    errors.WrongActionError: 403,
    errors.AuthenticationError: 401,
    errors.JwksUnavailableError: 503,
    errors.AuthorizationError: 403,
    errors.ActivityError: 500,
    errors.OrchestrationUnavailableError: 503,
    errors.AuditError: 500,
    errors.CredentialError: 500,
    errors.RateLimitedError: 429,
    errors.ConcurrencyLimitError: 429,
    errors.PaymentRequiredError: 402,
})


def status_of(exc: errors.CoreError) -> int:
    """The HTTP status for one of our errors: that of its class, or of its nearest listed ancestor.

    >>> status_of(errors.ExpiredTokenError("expired")), status_of(errors.SettingsError("IRONLAYER_X is bad"))
    (410, 500)
    """
    for kind in type(exc).__mro__:
        if issubclass(kind, errors.CoreError) and kind in STATUSES:
            return STATUSES[kind]
    return 500
