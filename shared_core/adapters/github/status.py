"""`GitHubStatusPublisher`: commit statuses on the pushed commit (pending with the approval link, then
success or failure); `LoggedStatusPublisher` logs them in local development, where there is no token.

A rejected or expired plan is a failure, never neutral: a merge gate must not read it as green.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared_core.core.errors import SourceError, SourceUnavailableError

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)
STATES = ("pending", "success", "failure", "error")
CONTEXT = "ironlayer/plan"


class GitHubStatusPublisher:
    """POST /repos/{owner}/{repo}/statuses/{sha} with a token (never logged)."""

    def __init__(self, repository: str, *, token: str, base_url: str = "https://api.github.com",
                 transport: httpx.BaseTransport | None = None) -> None:
        import httpx

        self.repository = repository
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), transport=transport, timeout=10.0,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                     "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "ironlayer"},
        )

    def publish(self, sha: str, state: str, description: str, target_url: str | None = None) -> None:
        """Set the commit status.

        Raises:
            SourceUnavailableError: GitHub cannot be reached, fails (5xx) or rate-limits (safe to retry).
            SourceError: GitHub refuses the status (the token's permission); one line, never the token.
        """
        import httpx

        if state not in STATES:
            raise ValueError(f"unknown commit status state {state!r}")
        body: dict[str, str] = {"state": state, "description": description[:140], "context": CONTEXT}
        if target_url:
            body["target_url"] = target_url
        try:
            response = self._client.post(f"/repos/{self.repository}/statuses/{sha}", json=body)
        except httpx.HTTPError as exc:
            raise SourceUnavailableError(f"GitHub unreachable setting the status of {sha[:12]}: "
                                         f"{type(exc).__name__}; retry later") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise SourceUnavailableError(f"GitHub could not set the commit status of {self.repository}@{sha[:12]}: "
                                         f"HTTP {response.status_code}; retry later")
        if response.status_code >= 400:
            raise SourceError(f"GitHub refused the commit status of {self.repository}@{sha[:12]}: "
                              f"HTTP {response.status_code}; check the token's repo:status permission")


class LoggedStatusPublisher:
    """Local development without a GitHub token: statuses go to the log (the job row keeps the detail)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str, str, str | None]] = []

    def publish(self, sha: str, state: str, description: str, target_url: str | None = None) -> None:
        if state not in STATES:
            raise ValueError(f"unknown commit status state {state!r}")
        self.published.append((sha, state, description, target_url))
        logger.info("commit status %s %s: %s %s", sha[:12], state, description, target_url or "")
