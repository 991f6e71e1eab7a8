"""Blob stores: `LocalBlobStore` (a folder), `AzureBlobStore` (Azure Blob Storage, or Azurite) and
`PrefixedBlobStore` (one tenant's folder of either).

All implement the `BlobStore` port of `shared_core.ports`: bytes under relative, slash-separated keys
such as `plans/<plan_id>.json` or `git-blobs/<sha>`. All refuse the same malformed keys, so code that
works against the local folder works against Azure. A job only ever gets a `PrefixedBlobStore` over its
tenant's prefix (`tenants/<tenant_id>/`): every key it can form lies under that prefix. The Azure SDK
is imported only when an `AzureBlobStore` is created, so that processes using the local store (the CLI,
a cold Functions worker serving a webhook) never pay for importing it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared_core.core.errors import StateError, StateUnavailableError

if TYPE_CHECKING:
    from azure.core.exceptions import AzureError
    from azure.storage.blob import ContainerClient

    from shared_core.ports import BlobStore

MAX_KEY_LENGTH = 1024  # Azure's limit for a blob name


def check_key(key: str) -> str:
    """Return `key` when it is a valid blob key; raise StateError otherwise.

    A key is a relative path of non-empty parts separated by `/`, without `.`/`..` parts or backslashes.

    >>> check_key("plans/abc.json")
    'plans/abc.json'
    >>> check_key("../x")
    Traceback (most recent call last):
    ...
    shared_core.core.errors.StateError: invalid blob key '../x': use a relative path like 'plans/<id>.json' without '..'
    """
    parts = key.split("/")
    if (
        not key
        or len(key) > MAX_KEY_LENGTH
        or "\\" in key
        or "\0" in key
        or any(part in ("", ".", "..") for part in parts)
    ):
        shown = key if len(key) <= 80 else key[:77] + "..."
        raise StateError(
            f"invalid blob key {shown!r}: use a relative path like 'plans/<id>.json' without '..'"
            if key.startswith("/") or ".." in parts or not key
            else f"invalid blob key {shown!r}: use '/'-separated non-empty parts (no '.', no backslash, "
            f"at most {MAX_KEY_LENGTH} characters)"
        )
    return key


class LocalBlobStore:
    """A `BlobStore` in a local folder: each key is a file under `root`, written atomically."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise StateUnavailableError(
                f"blob store {self.root}: cannot read '{key}' ({exc.strerror or type(exc).__name__}); "
                "check the folder's permissions"
            ) from exc

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Write `data` to a temporary file beside the target, then rename it over the target (atomic)."""
        path = self._path(key)
        temp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
            temp = None
        except OSError as exc:
            raise StateUnavailableError(
                f"blob store {self.root}: cannot write '{key}' ({exc.strerror or type(exc).__name__}); "
                "check free space and the folder's permissions"
            ) from exc
        finally:
            if temp is not None:
                Path(temp).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def health(self) -> None:
        """Check that `root` is (or can be made) a writable folder."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateUnavailableError(
                f"blob store {self.root}: cannot create the folder ({exc.strerror or type(exc).__name__}); "
                "set the blob folder to a writable path"
            ) from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StateUnavailableError(f"blob store {self.root}: folder is not writable; fix its permissions")


class AzureBlobStore:
    """A `BlobStore` in one container of Azure Blob Storage (or Azurite).

    Built from a connection string (Azurite, or a storage account key) or from an account URL with
    `DefaultAzureCredential` (managed identity in Azure, `az login` locally). The container is created
    on first write if it is missing, and by `health()`.

    Args:
        container: the container name (lower-case letters, digits and dashes).
        connection_string: a storage connection string; give this or `account_url`.
        account_url: e.g. `https://<account>.blob.core.windows.net`; authenticated with `credential`,
            by default `DefaultAzureCredential()`.
        credential: a token credential for `account_url` (tests, or a specific identity).
        retries: how many times the SDK retries a failed request before we report the store unavailable.
        timeout: connection and read timeout per request, in seconds.
    """

    def __init__(
        self,
        container: str,
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: Any = None,  # Any: an azure-identity credential (or key); the SDK accepts several kinds
        retries: int = 3,
        timeout: float = 20.0,
    ) -> None:
        from azure.storage.blob import BlobServiceClient

        if (connection_string is None) == (account_url is None):
            raise StateError("AzureBlobStore: give exactly one of connection_string or account_url")
        try:
            if connection_string is not None:
                service = BlobServiceClient.from_connection_string(
                    connection_string, retry_total=retries, connection_timeout=timeout, read_timeout=timeout)
            else:
                if credential is None:
                    from azure.identity import DefaultAzureCredential

                    credential = DefaultAzureCredential()
                service = BlobServiceClient(str(account_url), credential=credential, retry_total=retries,
                                            connection_timeout=timeout, read_timeout=timeout)
        except ValueError as exc:  # malformed connection string or URL; the message could echo a secret
            raise StateError(
                "AzureBlobStore: the connection string or account URL is malformed; check the blob storage setting"
            ) from exc
        self.container = container
        self.account = service.account_name or "?"
        self._client: ContainerClient = service.get_container_client(container)

    def __repr__(self) -> str:
        return f"AzureBlobStore(account={self.account!r}, container={self.container!r})"

    def get(self, key: str) -> bytes | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        check_key(key)
        try:
            return self._client.download_blob(key).readall()
        except ResourceNotFoundError:  # the blob, or the whole container, is missing
            return None
        except AzureError as exc:
            raise self._unavailable(f"reading '{key}'", exc) from exc

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Upload `data` in one request (a blob is replaced whole: readers never see a partial write)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError
        from azure.storage.blob import ContentSettings

        check_key(key)
        settings = ContentSettings(content_type=content_type)
        try:
            try:
                self._client.upload_blob(key, data, overwrite=True, content_settings=settings)
            except ResourceNotFoundError:  # first write into a new container
                self._create_container()
                self._client.upload_blob(key, data, overwrite=True, content_settings=settings)
        except AzureError as exc:
            raise self._unavailable(f"writing '{key}'", exc) from exc

    def exists(self, key: str) -> bool:
        from azure.core.exceptions import AzureError

        check_key(key)
        try:
            return bool(self._client.get_blob_client(key).exists())
        except AzureError as exc:
            raise self._unavailable(f"checking '{key}'", exc) from exc

    def health(self) -> None:
        """Check that the account answers and the container exists (creating it if needed)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            try:
                self._client.get_container_properties()
            except ResourceNotFoundError:
                self._create_container()
        except AzureError as exc:
            raise self._unavailable("checking the container", exc) from exc

    def content_type(self, key: str) -> str | None:
        """The content type stored with `key` (None when there is no such blob)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        check_key(key)
        try:
            properties = self._client.get_blob_client(key).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self._unavailable(f"reading properties of '{key}'", exc) from exc
        content_type: str | None = properties.content_settings.content_type
        return content_type

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def _create_container(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):  # created meanwhile by another worker
            self._client.create_container()

    def _unavailable(self, action: str, exc: AzureError) -> StateUnavailableError:
        """One line naming the account, container, action and status; never the SDK's message (it can be long)."""
        status = getattr(exc, "status_code", None)
        code = getattr(exc, "error_code", None)
        detail = " ".join(str(part) for part in (status, code) if part) or type(exc).__name__
        return StateUnavailableError(
            f"blob store {self.account}/{self.container}: {action} failed ({detail}); "
            "check the storage account, its credentials and network access; safe to retry"
        )


class PrefixedBlobStore:
    """A `BlobStore` that is the folder `prefix` of another: `get("plans/x.json")` reads `<prefix>plans/x.json`.

    Keys are checked (`check_key`: no `..`, no empty or `.` part, no leading `/`, no backslash) before the
    prefix is put in front, so no key reaches outside the prefix: tenant A's store cannot address B's blobs.

    Args:
        inner: the deployment's store (a container, or a local folder).
        prefix: a valid key prefix ending in `/`, e.g. `tenants/acme/`.
    """

    def __init__(self, inner: BlobStore, prefix: str) -> None:
        if not prefix.endswith("/") or prefix.startswith("/"):
            raise StateError(f"blob prefix {prefix[:80]!r} must be a relative folder ending in '/'")
        check_key(prefix[:-1])
        self.inner = inner
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"PrefixedBlobStore({self.inner!r}, {self.prefix!r})"

    def _key(self, key: str) -> str:
        return check_key(self.prefix + check_key(key))

    def get(self, key: str) -> bytes | None:
        return self.inner.get(self._key(key))

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        self.inner.put(self._key(key), data, content_type=content_type)

    def exists(self, key: str) -> bool:
        return self.inner.exists(self._key(key))

    def health(self) -> None:
        self.inner.health()
