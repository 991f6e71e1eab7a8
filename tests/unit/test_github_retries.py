"""Which GitHub failures are worth retrying: unavailable, failing or rate-limiting GitHub (`SourceUnavailableError`,
transient), never a refusal or an unknown ref (permanent: the same request fails the same way).

The orchestrator retries exactly the transient errors under a bounded policy and ends the job at once on a
permanent one, so this classification decides between a retry and a failed commit status.
"""

from __future__ import annotations

import httpx
import pytest

from shared_core.adapters.github.status import GitHubStatusPublisher
from shared_core.core.errors import SourceError, SourceUnavailableError, is_transient
from tests.unit.test_github_source import RATE_LIMITED, REPO, ScriptedGitHub, error_json

SHA = "b" * 40


@pytest.mark.parametrize(
    ("status", "headers", "transient"),
    [
        (500, {}, True), (502, {}, True), (503, {}, True), (504, {}, True),
        (429, {"retry-after": "30"}, True),  # secondary rate limit
        (403, {"retry-after": "60", "x-ratelimit-remaining": "4000"}, True),
        (403, RATE_LIMITED, True),  # primary rate limit: it resets
        (401, {"x-ratelimit-remaining": "59"}, False),  # a bad token stays bad
        (403, {"x-ratelimit-remaining": "4999"}, False),  # so does a missing permission
        (409, {}, False), (422, {}, False),  # an empty repository, an unknown ref
    ],
)
def test_reading_a_repository_is_retried_only_while_github_is_unavailable(status: int, headers: dict[str, str],
                                                                         transient: bool) -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{REPO}/commits/master", error_json(status, "stand-in"), status, headers)
    with pytest.raises(SourceError) as caught:
        github.source().resolve("master")
    assert is_transient(caught.value) is transient
    assert isinstance(caught.value, SourceUnavailableError) is transient


def test_an_unreachable_github_is_retried() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(SourceUnavailableError):
        ScriptedGitHub({f"/repos/{REPO}/commits/master": fail}).source().resolve("master")


@pytest.mark.parametrize(("answer", "transient"), [(503, True), (500, True), (429, True), (403, False), (404, False),
                                                    (422, False), ("unreachable", True)])
def test_a_commit_status_is_retried_only_while_github_is_unavailable(answer: int | str, transient: bool) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if answer == "unreachable":
            raise httpx.ConnectError("refused", request=request)
        assert isinstance(answer, int)
        return httpx.Response(answer, json={"message": "stand-in"})

    publisher = GitHubStatusPublisher(REPO, token="t", transport=httpx.MockTransport(respond))
    with pytest.raises(SourceError) as caught:
        publisher.publish(SHA, "failure", "IronLayer plan failed")
    assert is_transient(caught.value) is transient
    assert "\n" not in str(caught.value) and SHA[:12] in str(caught.value)


def test_a_status_github_takes_raises_nothing() -> None:
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={})

    GitHubStatusPublisher(REPO, token="t", transport=httpx.MockTransport(respond)).publish(SHA, "success", "done")
    assert [r.url.path for r in seen] == [f"/repos/{REPO}/statuses/{SHA}"]
