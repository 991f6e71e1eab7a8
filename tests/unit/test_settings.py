"""One Settings for the CLI and the Functions: defaults, the CLI's own settings, and invalid values refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared_core.adapters.git_writer import commit_files, init_repo
from shared_core.cli import _runtime
from shared_core.core.errors import CoreError
from shared_core.settings import app_settings_problems, check_app_settings, load_settings


def test_defaults_are_those_the_cli_and_the_functions_always_used(tmp_path: Path) -> None:
    settings = load_settings({"HOME": str(tmp_path / "user")}, cwd=tmp_path)  # no repository around tmp_path
    home = tmp_path / "user" / ".local" / "state" / "ironlayer"
    assert (settings.tenant_id, settings.home, settings.database_url, settings.migration_database_url) == (
        "local", home, "", "")
    assert settings.blob_dir == home / "blobs" and settings.warehouse == home / "warehouse.duckdb"
    assert settings.cache_dir is None and settings.actor == "cli" and settings.credential_keys == ""


def test_local_state_lives_in_the_projects_git_directory_wherever_a_command_runs(tmp_path: Path) -> None:
    project = init_repo(tmp_path / "project")
    (project / "models" / "deep").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = (project / ".git" / "ironlayer").resolve()
    environ = {"HOME": str(tmp_path / "user")}
    # from the work tree, any folder below it, or naming it from outside: one place, inside .git
    assert load_settings(environ, cwd=project).home == state
    assert load_settings(environ, cwd=project / "models" / "deep").home == state
    assert load_settings(environ, cwd=elsewhere, repository=project).home == state
    assert load_settings(environ, cwd=elsewhere, repository=project / "models").home == state
    # the repository a command names wins over the one it runs in; outside any, the user's folder
    other = init_repo(tmp_path / "other")
    assert load_settings(environ, cwd=project, repository=other).home == (other / ".git" / "ironlayer").resolve()
    assert load_settings(environ, cwd=elsewhere).home == tmp_path / "user" / ".local" / "state" / "ironlayer"
    assert load_settings({**environ, "XDG_STATE_HOME": str(tmp_path / "xdg")}, cwd=elsewhere).home == (
        tmp_path / "xdg" / "ironlayer")
    # the Functions' local repository names the project; IRONLAYER_HOME overrides everything (empty: unset)
    assert load_settings({**environ, "IRONLAYER_LOCAL_REPO": str(project)}, cwd=elsewhere).home == state
    assert load_settings({**environ, "IRONLAYER_HOME": "/srv/il"}, cwd=project).home == Path("/srv/il")
    assert load_settings({**environ, "IRONLAYER_HOME": ""}, cwd=project).home == state


def test_worktrees_and_bare_repositories_share_one_state_folder(tmp_path: Path) -> None:
    project = init_repo(tmp_path / "project")
    commit_files(project, {"a.txt": "a\n"}, "one", "2024-01-01T00:00:00+00:00")
    subprocess.run(["git", "-C", str(project), "worktree", "add", "-q", str(tmp_path / "wt"), "-b", "wt"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(project), str(tmp_path / "bare.git")], check=True)
    environ = {"HOME": str(tmp_path / "user")}
    assert load_settings(environ, cwd=tmp_path / "wt").home == (project / ".git" / "ironlayer").resolve()
    assert load_settings(environ, cwd=tmp_path / "bare.git").home == (tmp_path / "bare.git" / "ironlayer").resolve()


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


PRODUCTION_READY = {
    "IRONLAYER_AUTH_MODE": "oidc", "IRONLAYER_DATABASE_URL": "postgresql://ironlayer_app@db.example.com/ironlayer",
    "IRONLAYER_BLOB_ACCOUNT_URL": "https://acct.blob.core.windows.net", "IRONLAYER_ENGINE": "databricks",
}


def test_an_unset_environment_is_none_and_defaults_to_token_authentication() -> None:
    settings = load_settings({})
    assert (settings.environment, settings.local, settings.production, settings.auth_mode) == ("", False, False, "oidc")
    for environment in ("development", "test"):
        local = load_settings({"IRONLAYER_ENVIRONMENT": environment})
        assert (local.local, local.auth_mode) == (True, "dev")


@pytest.mark.parametrize("environment", ["", "production"])
@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"IRONLAYER_AUTH_MODE": "dev"}, "IRONLAYER_AUTH_MODE=dev turns authentication off"),
        ({"IRONLAYER_DATABASE_URL": ""}, "IRONLAYER_DATABASE_URL is empty, which starts an embedded PostgreSQL"),
        ({"IRONLAYER_LOCAL_REPO": "/srv/repo"}, "IRONLAYER_LOCAL_REPO reads models from the worker's disk"),
        ({"IRONLAYER_BLOB_ACCOUNT_URL": ""}, "plans would be kept in the local folder IRONLAYER_BLOB_DIR"),
        ({"IRONLAYER_ENGINE": "duckdb"}, "IRONLAYER_ENGINE=duckdb keeps the warehouse in the local file"),
        ({"IRONLAYER_AUTO_APPROVE": "true"}, "IRONLAYER_AUTO_APPROVE is for development only"),
    ],
)
def test_the_app_refuses_unsafe_settings_outside_an_explicit_local_environment(
        environment: str, change: dict[str, str], fragment: str) -> None:
    environ = {**PRODUCTION_READY, "IRONLAYER_ENVIRONMENT": environment, **change}
    if environment == "production" and ("IRONLAYER_AUTH_MODE" in change or "IRONLAYER_AUTO_APPROVE" in change):
        with pytest.raises(CoreError):  # refused for the CLI too: production says so explicitly
            load_settings(environ)
        return
    settings = load_settings(environ)
    with pytest.raises(CoreError) as caught:
        check_app_settings(settings)
    message = str(caught.value)
    assert fragment in message and "\n" not in message
    assert ("IRONLAYER_ENVIRONMENT unset (production)" if not environment else "IRONLAYER_ENVIRONMENT=production") in (
        message)
    assert len(app_settings_problems(settings)) == 1  # everything else is production-ready


@pytest.mark.parametrize("environment", ["development", "test"])
def test_an_explicit_local_environment_may_use_local_state_and_no_authentication(environment: str) -> None:
    settings = load_settings({"IRONLAYER_ENVIRONMENT": environment, "IRONLAYER_AUTO_APPROVE": "true",
                              "IRONLAYER_LOCAL_REPO": "/srv/repo"})
    assert settings.auth_mode == "dev" and settings.database_url == ""
    check_app_settings(settings)


def test_production_with_every_remote_resource_starts() -> None:
    for environment in ("", "production"):
        settings = load_settings({**PRODUCTION_READY, "IRONLAYER_ENVIRONMENT": environment})
        assert app_settings_problems(settings) == []
        check_app_settings(settings)
