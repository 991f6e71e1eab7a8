"""The one error tree of IronLayer: every error the product raises is defined here, classified by meaning.

The core raises these; the edges translate them: the CLI into exit codes (`shared_core.cli.main`), the
Functions into HTTP statuses (`functions.http.errors`, the one error -> status map; statuses never live on
the errors themselves). The status in brackets is what the Functions answer.

```
CoreError                      root of every error raised by shared_core
├── InputError                 a request or command argument is malformed: an ID, a field, a body [400]
│   ├── PayloadTooLargeError   a request body exceeds its size limit [413]
│   ├── WebhookError           a webhook delivery is malformed: JSON, a header, the push payload [400]
│   │   ├── WebhookSignatureError  X-Hub-Signature-256 is missing or does not match the secret [401]
│   │   └── StripeSignatureError   Stripe-Signature is missing, stale or does not match the secret [400]
│   ├── SecurityCommandError   `ironlayer audit|credentials|rotate-keys` cannot run as asked [400]
│   ├── RepositorySettingsError  a repository's execution settings are invalid: the setting, its value, the fix [400]
│   ├── DateRangeError         a date moves outside 0001-01-01..9999-12-31 (an as_of, a range, a start) [400]
│   └── PlanLimitError         a plan would hold more batches than `planner.max_batches_per_plan` [400]
├── NotFoundError              the plan or job named does not exist for the caller's tenant [404]
│   └── NotOnboardedError      a repository has no tenant, or no execution settings, on this deployment [404]
├── ConflictError              it exists, but its state forbids the request: a finished job, a decided plan [409]
├── ModelError                 a model file cannot be loaded, parsed or validated (carries file:line:col) [400]
│   ├── UnsafeSqlError         a model is not a single read-only query
│   ├── RefError               a ref() that does not resolve, or resolves ambiguously
│   ├── CycleError             the model graph has a cycle (carries the cycle path)
│   └── CheckFailedError       `check` finds problems in a pushed commit: it is not planned (carries them)
├── ProjectError               the project file (ironlayer.toml / [tool.ironlayer]) is invalid [400]
├── WatermarkError             the watermark ledger input is malformed [400]
├── PlanError                  a plan document is invalid or was not produced by this planner [500: the
│                              Functions only read plans they stored; the CLI reads files it is given]
├── SourceError                a git repository or ref cannot be read [400]
│   └── SourceUnavailableError GitHub cannot be reached, fails (5xx) or rate-limits us; safe to retry [503]
├── ExecutionError             a batch failed on the engine (the model's SQL) [400]
│   └── BlockedBatchError      a BLOCK quality test failed; the batch was rolled back
├── StateError                 the state store refused or failed an operation [500]
│   ├── StateUnavailableError  the state store cannot be reached; safe to retry [503]
│   ├── BlobMissingError       the state store records a plan whose blob is missing [500]
│   ├── StalePlanError         what a plan was built on moved (watermarks, deployed model versions); re-plan [409]
│   └── LockTimeoutError       a range stayed locked by another apply past the timeout [409]
├── SettingsError              a deployment setting is missing or invalid: the server's fault [500]
│   └── AuthSettingsError      the authentication settings are unsafe or incomplete, e.g. dev mode in production
├── ApprovalError              an approval link cannot be used; itself: the request around it is malformed [400]
│   ├── InvalidTokenError      malformed, forged, wrong algorithm/issuer/audience, not yet valid, revoked [401]
│   ├── ExpiredTokenError      the link's time is up [410]
│   ├── ReusedTokenError       the link was already used once [410]
│   ├── WrongPlanError         the link belongs to another plan or tenant [403]
│   └── WrongActionError       the link does not grant the decision that was posted [403]
├── AuthenticationError        an API request has no valid access token: missing, forged, expired, revoked [401]
│   └── JwksUnavailableError   the identity provider's signing keys cannot be fetched; safe to retry [503]
├── AuthorizationError         the caller's role may not use the endpoint, or may not approve its own plan [403]
├── ActivityError              an activity failed: what Durable history records, its class and scrubbed message [500]
├── OrchestrationUnavailableError  a decision could not be delivered to the plan's orchestration; nothing was
│                              recorded, the link still works: safe to retry [503]
├── AuditError                 an audit entry cannot be built or read: wrong tenant, time going back, bad row [500]
├── CredentialError            a credential cannot be decrypted (wrong or retired key, altered or moved
│                              token), or the key list is invalid [500]
├── RateLimitedError           a request exceeds a rate limit (carries `retry_after_seconds`) [429]
│   └── ConcurrencyLimitError  the tenant's tier runs no more plans at once; the plan waits [429]
└── PaymentRequiredError       the subscription is unpaid or ended, or the month's steps are used up [402]
```
Every message says what went wrong, which file/field/value it concerns, and what to do next. Programming
errors (a naive `now`, an endpoint missing from the role policy) stay `ValueError`s: no caller can fix them.

Transient errors (`TRANSIENT_ERRORS`: a dependency that is down, busy or rate-limiting) say "try again
later": the Functions retry them with a bounded policy. Every other error is permanent: retrying the same
input gives the same answer, so it ends the job at once with its message.
"""

from __future__ import annotations


class CoreError(Exception):
    """Root of every error raised by shared_core."""


class InputError(CoreError):
    """A request or command argument is malformed; the message names the field and the value expected."""


class PayloadTooLargeError(InputError):
    """A request body exceeds its size limit; the message gives the limit."""


class WebhookError(InputError):
    """A webhook delivery that must be refused: malformed JSON, a missing header, an invalid push payload."""


class WebhookSignatureError(WebhookError):
    """`X-Hub-Signature-256` is missing or was not made with the configured secret."""


class StripeSignatureError(WebhookError):
    """A Stripe webhook's `Stripe-Signature` is missing, older than the tolerance, or not made with the secret."""


class SecurityCommandError(InputError):
    """A security command (`audit`, `credentials`, `rotate-keys`) cannot run as asked."""


class RepositorySettingsError(InputError):
    """A repository's execution settings are invalid: the message names the setting, its value and the fix."""


class DateRangeError(InputError):
    """A date given (or derived from one given) falls outside the dates 0001-01-01 to 9999-12-31."""


class PlanLimitError(InputError):
    """A plan would hold more batches than the project allows (`planner.max_batches_per_plan`)."""


class NotFoundError(CoreError):
    """The plan or job named in a request does not exist for the caller's tenant."""


class NotOnboardedError(NotFoundError):
    """A repository has no tenant, or no execution settings, here: nothing of it may be read or run."""


class ConflictError(CoreError):
    """The thing named exists, but its state forbids the request (a finished job, a plan already decided)."""


class ModelError(CoreError):
    """A model file cannot be loaded, parsed or validated."""

    def __init__(self, message: str, *, path: str = "", line: int = 0, col: int = 0) -> None:
        self.path = path
        self.line = line
        self.col = col
        self.detail = message
        super().__init__(f"{self.location}: {message}" if path else message)

    @property
    def location(self) -> str:
        """`path`, `path:line` or `path:line:col`, whichever is known."""
        if not self.path:
            return ""
        if self.line and self.col:
            return f"{self.path}:{self.line}:{self.col}"
        if self.line:
            return f"{self.path}:{self.line}"
        return self.path


class UnsafeSqlError(ModelError):
    """A model body is not exactly one read-only query (SELECT, WITH ... SELECT, set operation)."""


class RefError(ModelError):
    """A `ref()` or `dependencies` entry names no model, or a short name matches several."""


class CycleError(ModelError):
    """The models reference each other in a cycle."""

    def __init__(self, cycle: list[str], *, path: str = "") -> None:
        self.cycle = cycle
        super().__init__(
            "dependency cycle " + " -> ".join(cycle) + "; break it by removing one of these ref()s",
            path=path,
        )


class CheckFailedError(ModelError):
    """`check` found problems in the models of a commit, so it is not planned; `problems` holds every one."""

    SHOWN = 5

    def __init__(self, problems: list[ModelError], *, where: str) -> None:
        self.problems = problems
        shown = "; ".join(str(problem) for problem in problems[: self.SHOWN])
        more = f"; and {len(problems) - self.SHOWN} more" if len(problems) > self.SHOWN else ""
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{count} in the models at {where} (`ironlayer check` lists them all): {shown}{more}")


class ProjectError(CoreError):
    """The project configuration is invalid."""


class WatermarkError(CoreError):
    """The watermark ledger input is malformed."""


class PlanError(CoreError):
    """A plan document cannot be read or fails its own integrity check."""


class SourceError(CoreError):
    """A repository, commit or file cannot be read from the source."""


class SourceUnavailableError(SourceError):
    """GitHub (or the repository's host) cannot be reached, fails with 5xx or rate-limits us; safe to retry."""


class ExecutionError(CoreError):
    """A batch failed on the engine (SQL error) or was blocked by a quality test."""


class BlockedBatchError(ExecutionError):
    """A BLOCK quality test failed; the batch was rolled back."""

    def __init__(self, message: str, outcomes: tuple[object, ...]) -> None:
        self.outcomes = outcomes
        super().__init__(message)


class StateError(CoreError):
    """The state store refused or failed an operation."""


class StateUnavailableError(StateError):
    """The state store cannot be reached; the operation is safe to retry."""


class BlobMissingError(StateError):
    """The state store records something (a plan) whose bytes are missing from the blob store."""


class StalePlanError(StateError):
    """What a plan was built on has moved (the watermarks it read, the model versions deployed); re-plan."""


class LockTimeoutError(StateError):
    """A range stayed locked by another apply longer than the lock timeout."""


class SettingsError(CoreError):
    """A setting is missing or invalid; the message names it. The server's fault, never the caller's."""


class AuthSettingsError(SettingsError):
    """The API authentication settings are unsafe or incomplete; the message names the setting.

    Raised at start-up by `AuthConfig`; if one ever reaches a request it is the server's fault.
    """


class ApprovalError(CoreError):
    """An approval link cannot be used.

    Raised as itself when the request around a genuine token is malformed, e.g. an unknown decision.
    """


class InvalidTokenError(ApprovalError):
    """The token is malformed, forged, signed with another algorithm, revoked, or not meant for approvals."""


class ExpiredTokenError(ApprovalError):
    """The token's lifetime has ended; a new link must be requested."""


class ReusedTokenError(ApprovalError):
    """The token's `jti` was already used; each link decides once."""


class WrongPlanError(ApprovalError):
    """The token is genuine but was issued for another plan or tenant."""


class WrongActionError(ApprovalError):
    """The token is genuine but does not grant the decision that was posted."""


class AuthenticationError(CoreError):
    """An API request carries no valid access token; the message never echoes the token."""


class JwksUnavailableError(AuthenticationError):
    """The identity provider's signing keys cannot be fetched (or are malformed); safe to retry."""


class AuthorizationError(CoreError):
    """The caller is authenticated but its role may not use the endpoint, or it may not approve its own plan."""


class ActivityError(CoreError):
    """An activity failed; Durable history records this instead: the original's class and scrubbed message."""
class OrchestrationUnavailableError(CoreError):
    """The Durable orchestration of a plan could not be told of a decision; nothing was recorded, retry."""


class AuditError(CoreError):
    """An audit entry cannot be built (wrong tenant, time going backwards, malformed field) or read from a row.

    A broken chain is not an error: `audit.verify_chain` reports it.
    """


class CredentialError(CoreError):
    """A credential cannot be encrypted or decrypted, or the key list is invalid; never shows a key or value."""


class RateLimitedError(CoreError):
    """A request exceeds a rate limit; answer with `Retry-After: retry_after_seconds`."""

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(message)


class ConcurrencyLimitError(RateLimitedError):
    """The tenant's tier already runs as many plans at once as it may; the plan waits for a slot."""


class PaymentRequiredError(CoreError):
    """The tenant's subscription is unpaid or ended, or its monthly steps are used up: plans wait, none is lost."""


#: The errors that mean "the same call may succeed later": a dependency that is down, busy or rate-limiting.
TRANSIENT_ERRORS: tuple[type[CoreError], ...] = (StateUnavailableError, SourceUnavailableError, JwksUnavailableError)


def is_transient(error: BaseException) -> bool:
    """Whether `error` is worth retrying as it is (see `TRANSIENT_ERRORS`); permanent errors are not.

    >>> is_transient(StateUnavailableError("state store unreachable")), is_transient(ModelError("bad SQL"))
    (True, False)
    """
    return isinstance(error, TRANSIENT_ERRORS)
