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
└── ApprovalError          an approval link cannot be used; carries the HTTP `status` (itself: 400, bad request)
    ├── InvalidTokenError  malformed, forged, wrong algorithm/issuer/audience, not yet valid (401)
    ├── ExpiredTokenError  the link's time is up (410)
    ├── ReusedTokenError   the link was already used once (410; raised by the JTI store's caller)
    ├── WrongPlanError     the link belongs to another plan or tenant (403)
    └── WrongActionError   the link does not grant the decision that was posted (403)
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
