"""Integration tests use `database_url` from tests/conftest.py (a fresh database per session) and Azurite.

`env` is the command line's environment for one test: its own tenant on the session database, its own
IronLayer home and an empty git repository (test_apply.py, test_stale_plans.py and test_first_hour.py drive
`ironlayer` in it).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from azurite import azurite_blob_fixture  # noqa: F401  (the `azurite_blob` fixture)

from shared_core.adapters.git_writer import init_repo


@pytest.fixture()
def env(database_url: str, admin_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    tenant = f"t{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("IRONLAYER_DATABASE_URL", database_url)
    monkeypatch.setenv("IRONLAYER_TENANT", tenant)
    monkeypatch.setenv("IRONLAYER_HOME", str(tmp_path / "home"))
    repo = init_repo(tmp_path / "repo")
    monkeypatch.setenv("IRONLAYER_MIGRATION_DATABASE_URL", admin_database_url)
    return {"url": database_url, "admin": admin_database_url, "tenant": tenant, "repo": repo, "tmp": tmp_path}
