"""Integration tests use `database_url` from tests/conftest.py (a fresh database per session) and Azurite."""

from azurite import azurite_blob_fixture  # noqa: F401  (the `azurite_blob` fixture)
