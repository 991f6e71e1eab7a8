"""Integration tests use `database_url` from tests/conftest.py (a fresh database per session)."""
