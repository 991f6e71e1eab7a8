"""Blob stores: the same behavioural cases against `LocalBlobStore` (a temp folder) and `AzureBlobStore`
on a real Azurite (see `azurite.py`); each Azure test owns a fresh container and deletes it afterwards.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from azurite import azurite_blob_fixture  # noqa: F401 - registers the session fixture `azurite_blob`

from shared_core.adapters.blobs import AzureBlobStore, LocalBlobStore
from shared_core.core.errors import StateError, StateUnavailableError
from shared_core.ports import BlobStore

pytestmark = pytest.mark.integration

PLAN = b'{"plan_id":"abc","steps":[]}'
INVALID_KEYS = ["", "/plans/a.json", "../a", "plans/../../a", "plans//a", "./a", "plans/.", "a\\b", "x" * 1025]


@pytest.fixture(params=["local", "azure"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
        return
    connection_string = request.getfixturevalue("azurite_blob")
    container = f"test-{uuid.uuid4().hex[:12]}"
    azure = AzureBlobStore(container, connection_string=connection_string)
    try:
        yield azure
    finally:
        azure.close()
        with BlobServiceClient.from_connection_string(connection_string) as service:
            if service.get_container_client(container).exists():
                service.delete_container(container)


def test_missing_key_reads_as_none(store: BlobStore) -> None:
    assert store.get("plans/nope.json") is None
    assert store.exists("plans/nope.json") is False


def test_put_then_get_round_trips_bytes(store: BlobStore) -> None:
    store.put("plans/abc.json", PLAN, content_type="application/json")
    assert store.get("plans/abc.json") == PLAN
    assert store.exists("plans/abc.json") is True
    assert store.get("plans/abc") is None  # keys are exact, not prefixes


def test_binary_empty_and_large_values(store: BlobStore) -> None:
    binary = bytes(range(256)) * 3
    large = hashlib.sha256(b"seed").digest() * (3 * 1024 * 1024 // 32)  # 3 MiB
    store.put("git-blobs/binary", binary)
    store.put("git-blobs/empty", b"")
    store.put("git-blobs/large", large)
    assert store.get("git-blobs/binary") == binary
    assert store.get("git-blobs/empty") == b""
    assert store.exists("git-blobs/empty") is True
    assert store.get("git-blobs/large") == large


def test_put_is_idempotent_and_replaces(store: BlobStore) -> None:
    store.put("advice/p1.json", b"first")
    store.put("advice/p1.json", b"first")
    assert store.get("advice/p1.json") == b"first"
    store.put("advice/p1.json", b"second, longer than the first")
    assert store.get("advice/p1.json") == b"second, longer than the first"
    store.put("advice/p1.json", b"3")
    assert store.get("advice/p1.json") == b"3"


def test_nested_keys_are_independent(store: BlobStore) -> None:
    store.put("a/b/c", b"deep")
    store.put("a/b2", b"side")
    assert store.get("a/b/c") == b"deep"
    assert store.get("a/b2") == b"side"
    assert store.get("a/b") is None  # a "folder" is not a blob
    assert store.exists("a/b") is False
    assert store.get("a") is None


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_refused(store: BlobStore, key: str) -> None:
    for action in (lambda: store.get(key), lambda: store.exists(key), lambda: store.put(key, b"x")):
        with pytest.raises(StateError) as caught:
            action()
        assert "invalid blob key" in str(caught.value)
        assert not isinstance(caught.value, StateUnavailableError)


def test_concurrent_writers_leave_one_whole_value(store: BlobStore) -> None:
    values = [bytes([i]) * 200_000 for i in range(8)]
    errors: list[BaseException] = []

    def write(value: bytes) -> None:
        try:
            store.put("plans/race.json", value)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(v,)) for v in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.get("plans/race.json") in values


def test_health_passes_when_reachable(store: BlobStore) -> None:
    store.health()
    store.health()  # repeatable
    store.put("k", b"v")
    assert store.get("k") == b"v"


# --- LocalBlobStore specifics ---------------------------------------------------------------------


def test_local_put_is_atomic_and_leaves_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalBlobStore(tmp_path)
    store.put("plans/p.json", b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StateUnavailableError) as caught:
        store.put("plans/p.json", b"new")
    monkeypatch.undo()
    assert "plans/p.json" in str(caught.value) and "No space left on device" in str(caught.value)
    assert store.get("plans/p.json") == b"old"
    assert sorted(p.name for p in (tmp_path / "plans").iterdir()) == ["p.json"]


def test_local_keys_map_to_files_under_root(tmp_path: Path) -> None:
    LocalBlobStore(tmp_path / "root").put("plans/abc.json", PLAN)
    assert (tmp_path / "root" / "plans" / "abc.json").read_bytes() == PLAN
    assert not (tmp_path / "a").exists()


def test_local_health_fails_when_root_is_not_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    store = LocalBlobStore(tmp_path / "file" / "blobs")
    with pytest.raises(StateUnavailableError) as caught:
        store.health()
    assert str(tmp_path / "file" / "blobs") in str(caught.value)
    with pytest.raises(StateUnavailableError):
        store.put("k", b"v")
    assert store.get("k") is None


# --- AzureBlobStore specifics ---------------------------------------------------------------------


def test_azure_creates_missing_container_on_first_write(azurite_blob: str) -> None:
    container = f"fresh-{uuid.uuid4().hex[:12]}"
    store = AzureBlobStore(container, connection_string=azurite_blob)
    service = BlobServiceClient.from_connection_string(azurite_blob)
    try:
        assert store.get("plans/x.json") is None  # reading never creates anything
        assert not service.get_container_client(container).exists()
        store.put("plans/x.json", PLAN, content_type="application/json")
        assert service.get_container_client(container).exists()
        assert store.get("plans/x.json") == PLAN
        assert store.content_type("plans/x.json") == "application/json"
        store.put("git-blobs/0123", b"\x00\x01")
        assert store.content_type("git-blobs/0123") == "application/octet-stream"
        assert store.content_type("missing") is None
    finally:
        service.delete_container(container)
        service.close()
        store.close()


def test_azure_health_creates_missing_container(azurite_blob: str) -> None:
    container = f"health-{uuid.uuid4().hex[:12]}"
    store = AzureBlobStore(container, connection_string=azurite_blob)
    with BlobServiceClient.from_connection_string(azurite_blob) as service:
        try:
            store.health()
            assert service.get_container_client(container).exists()
        finally:
            service.delete_container(container)
            store.close()


def test_azure_unreachable_is_one_line_without_secrets(azurite_blob: str) -> None:
    from azurite import ACCOUNT_KEY, connection_string, free_port

    store = AzureBlobStore("plans", connection_string=connection_string(free_port()), retries=0, timeout=2)
    for action in (store.health, lambda: store.get("plans/a.json"), lambda: store.put("plans/a.json", b"x"),
                   lambda: store.exists("plans/a.json")):
        with pytest.raises(StateUnavailableError) as caught:
            action()
        message = str(caught.value)
        assert "\n" not in message
        assert "devstoreaccount1/plans" in message and "safe to retry" in message
        assert ACCOUNT_KEY not in message and ACCOUNT_KEY[:12] not in message
    store.close()


def test_azure_wrong_key_is_unavailable_without_secrets(azurite_blob: str) -> None:
    wrong_key = "V3JvbmdLZXk" + "A" * 77 + "=="
    store = AzureBlobStore("plans", connection_string=azurite_blob.replace(azurite_blob.split("AccountKey=")[1].split(";")[0], wrong_key), retries=0)
    with pytest.raises(StateUnavailableError) as caught:
        store.health()
    message = str(caught.value)
    assert "403" in message and wrong_key not in message and "\n" not in message
    store.close()


def test_azure_needs_exactly_one_way_to_connect() -> None:
    with pytest.raises(StateError, match="exactly one"):
        AzureBlobStore("plans")
    with pytest.raises(StateError, match="exactly one"):
        AzureBlobStore("plans", connection_string="x", account_url="https://a.blob.core.windows.net")
    with pytest.raises(StateError, match="malformed") as caught:
        AzureBlobStore("plans", connection_string="AccountKey=s3cr3t;nonsense")
    assert "s3cr3t" not in str(caught.value)


def test_azure_account_url_uses_the_given_credential(azurite_blob: str) -> None:
    """The account-URL form builds a token-authenticated client (no network until first use)."""

    class NoToken:
        def get_token(self, *scopes: str, **kwargs: object) -> object:
            raise AssertionError("not called: nothing was requested")

    store = AzureBlobStore("plans", account_url="https://example.blob.core.windows.net", credential=NoToken())
    assert repr(store) == "AzureBlobStore(account='example', container='plans')"
    store.close()


def test_azure_account_url_defaults_to_default_azure_credential() -> None:
    from azure.identity import DefaultAzureCredential

    store = AzureBlobStore("plans", account_url="https://example.blob.core.windows.net")
    assert isinstance(store._client.credential, DefaultAzureCredential)
    store.close()


def test_github_blobs_cached_in_the_store_are_not_downloaded_again(store: BlobStore) -> None:
    """`GitHubSource.read_blobs` over each store: the second source finds every blob in the cache."""
    import base64

    import httpx

    from shared_core.adapters.github.source import GitHubSource

    contents = [b"-- name: a.b\n-- kind: FULL_REFRESH\nSELECT 1 AS x\n", b"", bytes(range(256))]
    by_id = {hashlib.sha1(b"blob %d\0" % len(c) + c).hexdigest(): c for c in contents}
    sent: list[str] = []

    def github(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        blob = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, json={"sha": blob, "size": len(by_id[blob]), "encoding": "base64",
                                         "content": base64.b64encode(by_id[blob]).decode() + "\n"})

    def source() -> GitHubSource:
        return GitHubSource("Codertocat/Hello-World", token="t", cache=store, transport=httpx.MockTransport(github))

    assert source().read_blobs(list(by_id)) == by_id
    assert sorted(sent) == sorted(f"/repos/Codertocat/Hello-World/git/blobs/{b}" for b in by_id)
    assert all(store.get(f"git-blobs/{b}") == c for b, c in by_id.items())
    sent.clear()
    assert source().read_blobs(list(by_id)) == by_id
    assert sent == []
