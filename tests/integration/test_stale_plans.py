"""`ironlayer plan`/`apply`/`backfill` and the deployed versions a plan is built against, on PostgreSQL and DuckDB.

A plan made with the state store records, beside it, the model versions deployed when it was made (its base);
a plan file made without one states its base through its own diff. Applying a plan whose base moved (a newer
plan ran, or a backfill deployed another version) is refused as stale, with "re-plan" as the answer. A plan
that only changes tests runs nothing but deploys the tests once confirmed. Identities are managed here too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared_core.cli.main import main
from tests.integration.test_apply import DAILY, LOOKUP, apply, base_project, commit, plan, query, tables

pytestmark = pytest.mark.integration
ZERO = "0" * 40


def deployed(env: dict[str, Any], model: str) -> tuple[str, str | None, str | None]:
    row = query(env, "SELECT current_hash, tests, plan_id FROM models WHERE tenant_id = $1 AND name = $2",
                env["tenant"], model)[0]
    return row["current_hash"], row["tests"], row["plan_id"]


def test_a_plan_superseded_by_a_newer_plan_is_refused(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    head = base_project(env)
    assert apply(env, plan(env, ZERO, head, "p0.json")) == 0
    uno = commit(env, {"models/lookup.sql": LOOKUP.replace("'one'", "'uno'")}, "2024-01-10T13:00:00+00:00")
    dos = commit(env, {"models/lookup.sql": LOOKUP.replace("'one'", "'dos'")}, "2024-01-10T14:00:00+00:00")
    older, newer = plan(env, head, uno, "p-uno.json"), plan(env, head, dos, "p-dos.json")
    recorded = query(env, "SELECT plan_id, document FROM plan_bases WHERE tenant_id = $1 ORDER BY plan_id",
                     env["tenant"])
    assert len(recorded) == 3  # each plan made with the store recorded its base beside it
    assert apply(env, newer) == 0
    capsys.readouterr()
    assert apply(env, older) == 2
    err = capsys.readouterr().err
    newer_id = json.loads(newer.read_text())["plan_id"]
    assert err.startswith(f"error: stale plan {json.loads(older.read_text())['plan_id'][:12]}: ref.lookup was "
                          f"deployed again by plan {newer_id[:12]}")
    assert err.rstrip().endswith("re-plan and approve the new plan") and err.count("\n") == 1
    assert tables(env["tmp"] / "w.duckdb")["ref.lookup"] == [("1", "dos")]  # nothing of the older plan ran
    again = plan(env, dos, uno, "p-back.json")  # re-planned from what is deployed: applies
    assert apply(env, again) == 0 and tables(env["tmp"] / "w.duckdb")["ref.lookup"] == [("1", "uno")]


def test_a_backfill_that_deploys_another_version_makes_a_pending_plan_stale(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    head = base_project(env)
    assert apply(env, plan(env, ZERO, head, "p0.json")) == 0
    doubled = commit(env, {"models/daily.sql": DAILY.replace("sum(amount)", "2 * sum(amount)")},
                     "2024-01-10T13:00:00+00:00")
    pending = plan(env, head, doubled, "pending.json")  # built against mart.daily as deployed by p0
    tripled = commit(env, {"models/daily.sql": DAILY.replace("sum(amount)", "3 * sum(amount)")},
                     "2024-01-10T14:00:00+00:00")
    before = deployed(env, "mart.daily")
    assert main(["backfill", str(env["repo"]), "mart.daily", "--start", "2024-01-02", "--end", "2024-01-04",
                 "--ref", tripled, "--warehouse", str(env["tmp"] / "w.duckdb"), "--auto-approve"]) == 0
    assert deployed(env, "mart.daily")[0] != before[0]  # the backfill changed the model's version
    capsys.readouterr()
    assert apply(env, pending) == 2
    err = capsys.readouterr().err
    assert "mart.daily was deployed again by plan" in err and "re-plan" in err


def test_a_plan_file_made_without_a_store_states_its_base_through_its_diff(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    head = base_project(env)
    assert apply(env, plan(env, ZERO, head, "p0.json")) == 0
    empty = env["tmp"] / "ledger.json"
    empty.write_text("{}")
    uno = commit(env, {"models/lookup.sql": LOOKUP.replace("'one'", "'uno'")}, "2024-01-10T13:00:00+00:00")
    offline = plan(env, head, uno, "offline.json", "--watermarks", str(empty))
    offline_id = json.loads(offline.read_text())["plan_id"]
    assert query(env, "SELECT 1 FROM plan_bases WHERE tenant_id = $1 AND plan_id = $2", env["tenant"],
                 offline_id) == []  # made without the store: nothing recorded
    dos = commit(env, {"models/lookup.sql": LOOKUP.replace("'one'", "'dos'")}, "2024-01-10T14:00:00+00:00")
    assert apply(env, plan(env, head, dos, "p-dos.json")) == 0
    capsys.readouterr()
    assert apply(env, offline) == 2  # its diff says ref.lookup was at head's version; it no longer is
    assert "ref.lookup was deployed again" in capsys.readouterr().err


def test_a_tests_only_change_runs_nothing_but_deploys_its_tests_once_confirmed(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    head = base_project(env)
    assert apply(env, plan(env, ZERO, head, "p0.json")) == 0
    assert deployed(env, "mart.daily")[1] == "not_null(day)@BLOCK,not_null(events)@BLOCK"
    stricter = commit(env, {"models/daily.sql": DAILY.replace("not_null(events)", "not_null(events), unique(day)")},
                      "2024-01-10T13:00:00+00:00")
    plan_file = plan(env, head, stricter, "tests.json")
    document = json.loads(plan_file.read_text())
    assert document["steps"] == [] and [m["change"] for m in document["models"]] == ["metadata"]
    capsys.readouterr()
    assert main(["apply", str(plan_file), "--repo", str(env["repo"]), "--warehouse",
                 str(env["tmp"] / "w.duckdb")]) == 2  # no terminal to confirm: refused, as for a SQL change
    assert "refusing to apply without confirmation" in capsys.readouterr().err
    assert apply(env, plan_file) == 0
    content_hash, tests, by = deployed(env, "mart.daily")
    assert (tests, by) == ("not_null(day)@BLOCK,not_null(events)@BLOCK,unique(day)@BLOCK", document["plan_id"])
    assert content_hash == document["models"][0]["new_hash"]


def test_identities_are_managed_from_the_command_line(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["identities", "set", "appservice:aad", "0b4f-ann", "--role", "operator", "--github-login", "Ann",
                 "--name", "Ann Example"]) == 0
    assert "role operator, GitHub login ann" in capsys.readouterr().out
    assert main(["identities", "set", "api", "svc"]) == 2
    assert "needs --role" in capsys.readouterr().err
    assert main(["identities", "set", "api", "svc", "--role", "superuser"]) == 2
    assert main(["identities", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == ["appservice:aad/0b4f-ann  operator  github:ann  Ann Example"]
    assert main(["identities", "remove", "appservice:aad", "0b4f-ann"]) == 0
    assert main(["identities", "remove", "appservice:aad", "0b4f-ann"]) == 2
    actions = query(env, "SELECT action FROM audit_log WHERE tenant_id = $1 ORDER BY seq", env["tenant"])
    assert [r["action"] for r in actions] == ["identity.set", "identity.removed"]
