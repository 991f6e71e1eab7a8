"""The one error tree of shared_core; handlers map these to exit codes and HTTP statuses.

```
CoreError                  root of every error raised by shared_core
├── ModelError             a model file cannot be loaded, parsed or validated (carries file:line:col)
│   ├── UnsafeSqlError     a model is not a single read-only query
│   ├── RefError           a ref() that does not resolve, or resolves ambiguously
│   └── CycleError         the model graph has a cycle (carries the cycle path)
├── ProjectError           the project file (ironlayer.toml / [tool.ironlayer]) is invalid
├── WatermarkError         the watermark ledger input is malformed
├── PlanError              a plan file cannot be read or was not produced by this planner
├── SourceError            a git repository or ref cannot be read
├── StateError             the state store refused or failed an operation
│   └── StateUnavailableError  the state store cannot be reached (safe to retry)
├── ApprovalError          an approval link cannot be used; carries the HTTP `status` (itself: 400, bad request)
│   ├── InvalidTokenError  malformed, forged, wrong algorithm/issuer/audience, not yet valid (401)
│   ├── ExpiredTokenError  the link's time is up (410)
│   ├── ReusedTokenError   the link was already used once (410; raised by the JTI store's caller)
│   ├── WrongPlanError     the link belongs to another plan or tenant (403)
│   └── WrongActionError   the link does not grant the decision that was posted (403)
├── AuthSettingsError      the API authentication settings are unsafe or incomplete, e.g. dev mode in production (500)
├── AuthenticationError    an API request has no valid access token: missing, forged, expired, revoked... (401)
│   └── JwksUnavailableError  the identity provider's signing keys cannot be fetched (503; safe to retry)
├── AuthorizationError     the caller's role may not use the endpoint, or may not approve its own plan (403)
├── AuditError             an audit entry cannot be built or read: wrong tenant, time going back, malformed row (500)
├── CredentialError        a credential cannot be decrypted (wrong or retired key, altered or moved token), or
│                          the key list is invalid (500)
└── RateLimitedError       a request exceeds a rate limit (429; carries `retry_after_seconds` for `Retry-After`)
```
Every message says what went wrong, which file/field/value it concerns, and what to do next.
"""

from __future__ import annotations


class CoreError(Exception):
    """Root of every error raised by shared_core."""


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


class ProjectError(CoreError):
    """The project configuration is invalid."""


class WatermarkError(CoreError):
    """The watermark ledger input is malformed."""


class PlanError(CoreError):
    """A plan document cannot be read or fails its own integrity check."""


class SourceError(CoreError):
    """A repository, commit or file cannot be read from the source."""


class StateError(CoreError):
    """The state store refused or failed an operation."""


class StateUnavailableError(StateError):
    """The state store cannot be reached; the operation is safe to retry."""


class ApprovalError(CoreError):
    """An approval link cannot be used; `status` is the HTTP status of the page that says so.

    Raised as itself (400) when the request around a genuine token is malformed, e.g. an unknown decision.
    """

    status: int = 400


class InvalidTokenError(ApprovalError):
    """The token is malformed, forged, signed with another algorithm, or not meant for approvals."""

    status: int = 401


class ExpiredTokenError(ApprovalError):
    """The token's lifetime has ended; a new link must be requested."""

    status: int = 410


class ReusedTokenError(ApprovalError):
    """The token's `jti` was already used; each link decides once."""

    status: int = 410


class WrongPlanError(ApprovalError):
    """The token is genuine but was issued for another plan or tenant."""

    status: int = 403


class WrongActionError(ApprovalError):
    """The token is genuine but does not grant the decision that was posted."""

    status: int = 403


class AuthSettingsError(CoreError):
    """The API authentication settings are unsafe or incomplete; the message names the setting.

    Raised at start-up by `AuthConfig`; if one ever reaches a request it is the server's fault (500).
    """

    status: int = 500


class AuthenticationError(CoreError):
    """An API request carries no valid access token; the message never echoes the token."""

    status: int = 401


class JwksUnavailableError(AuthenticationError):
    """The identity provider's signing keys cannot be fetched (or are malformed); safe to retry."""

    status: int = 503


class AuthorizationError(CoreError):
    """The caller is authenticated but its role may not use the endpoint, or it may not approve its own plan."""

    status: int = 403


class AuditError(CoreError):
    """An audit entry cannot be built (wrong tenant, time going backwards, malformed field) or read from a row.

    A broken chain is not an error: `audit.verify_chain` reports it.
    """

    status: int = 500


class CredentialError(CoreError):
    """A credential cannot be encrypted or decrypted, or the key list is invalid; never shows a key or value."""

    status: int = 500


class RateLimitedError(CoreError):
    """A request exceeds a rate limit; answer 429 with `Retry-After: retry_after_seconds`."""

    status: int = 429

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(message)
