"""One Settings for the CLI and the Functions: defaults, the CLI's own settings, and invalid values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared_core.cli import _runtime
from shared_core.core.errors import CoreError
from shared_core.settings import load_settings


def test_defaults_are_those_the_cli_and_the_functions_always_used() -> None:
    settings = load_settings({})
    assert (settings.tenant_id, settings.home, settings.database_url, settings.migration_database_url) == (
        "local", Path(".ironlayer"), "", "")
    assert settings.blob_dir == Path(".ironlayer/blobs") and settings.warehouse == Path(".ironlayer/warehouse.duckdb")
    assert settings.cache_dir is None and settings.actor == "cli" and settings.credential_keys == ""


@pytest.mark.parametrize(
    ("environ", "actor"),
    [
        ({"IRONLAYER_ACTOR": "ci-bot", "USER": "alice"}, "ci-bot"),
        ({"USER": "alice"}, "alice"),
        ({"IRONLAYER_ACTOR": "", "USER": ""}, "cli"),
    ],
)
def test_the_actor_is_ironlayer_actor_then_user_then_cli(environ: dict[str, str], actor: str) -> None:
    assert load_settings(environ).actor == actor


def test_home_moves_the_derived_folders_and_the_cache_dir_is_read() -> None:
    settings = load_settings({"IRONLAYER_HOME": "/srv/il", "IRONLAYER_CACHE_DIR": "/var/cache/il"})
    assert settings.blob_dir == Path("/srv/il/blobs") and settings.cache_dir == Path("/var/cache/il")


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"IRONLAYER_ENVIRONMENT": "staging"}, "IRONLAYER_ENVIRONMENT='staging'"),
        ({"IRONLAYER_STEP_RETRIES": "0"}, "IRONLAYER_STEP_RETRIES='0' must be a whole number from 1 to 10"),
        ({"IRONLAYER_AUTO_APPROVE": "maybe"}, "IRONLAYER_AUTO_APPROVE='maybe' is not a boolean"),
    ],
)
def test_invalid_values_are_refused_naming_the_setting(environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(CoreError) as caught:
        load_settings(environ)
    assert fragment in str(caught.value)


def test_the_cli_reads_the_settings_once_per_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IRONLAYER_TENANT", "first")
    monkeypatch.delenv("IRONLAYER_CACHE_DIR", raising=False)
    _runtime.begin()
    assert _runtime.tenant() == "first"
    monkeypatch.setenv("IRONLAYER_TENANT", "second")
    monkeypatch.setenv("IRONLAYER_CACHE_DIR", str(tmp_path / "env-cache"))
    assert _runtime.tenant() == "first"  # one command: one reading of the environment
    assert _runtime.cache_dir(None, False, tmp_path / ".git") == tmp_path / ".git" / "ironlayer" / "cache"
    _runtime.begin()  # the next command
    assert _runtime.tenant() == "second"
    assert _runtime.cache_dir(None, False, tmp_path / ".git") == tmp_path / "env-cache"
    assert _runtime.cache_dir(str(tmp_path / "flag"), False, tmp_path / ".git") == tmp_path / "flag"
    assert _runtime.cache_dir(str(tmp_path / "flag"), True, tmp_path / ".git") is None
    _runtime.begin()
