"""The first hour on real PostgreSQL and DuckDB: Ctrl-C during apply, `ironlayer run`, the read commands' JSON.

Ctrl-C is a real SIGINT to a real `ironlayer apply` process in the middle of a slow step; the state store and
the warehouse are then inspected, and applying the plan again must end where an uninterrupted apply ends.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import duckdb
import pytest

from shared_core.cli.main import main
from tests.integration.test_apply import (
    DAILY,
    RAW,
    TOTALS,
    apply,
    commit,
    ledger,
    plan,
    query,
    raw_rows,
    tables,
)

pytestmark = pytest.mark.integration

SLOW_DAILY = DAILY.replace(
    "FROM {{ ref('raw.events') }}",
    "FROM {{ ref('raw.events') }} CROSS JOIN (SELECT count(*) AS n FROM range(2000000)) AS slow")


def successes(env: dict[str, Any], plan_id: str) -> int:
    return int(query(env, "SELECT count(*) FROM runs WHERE tenant_id = $1 AND plan_id = $2 AND status = 'success' "
                          "AND model = 'mart.daily'", env["tenant"], plan_id)[0][0])


def test_ctrl_c_during_apply_says_what_committed_leaves_nothing_running_and_rerunning_resumes(
    env: dict[str, Any],
) -> None:
    head = commit(env, {"models/raw.sql": RAW.format(rows=raw_rows(28)), "models/daily.sql": SLOW_DAILY,
                        "models/totals.sql": TOTALS}, "2024-02-10T00:00:00+00:00")
    plan_file = plan(env, "0" * 40, head, "p1.json")
    plan_id = json.loads(plan_file.read_text())["plan_id"]
    warehouse = env["tmp"] / "ctrl-c.duckdb"
    command = [sys.executable, "-m", "shared_core.cli", "apply", str(plan_file), "--repo", str(env["repo"]),
               "--warehouse", str(warehouse), "--auto-approve"]
    child = subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while successes(env, plan_id) < 5 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    stderr = err.decode()
    assert child.returncode == 130, stderr
    assert "Traceback" not in stderr
    said = re.search(r"interrupted: (\d+) of 42 batches of plan (\w{12}) are committed in (\S+); the rest did not "
                     r"run, and the plan is marked cancelled\. Run the same command again to resume", stderr)
    assert said is not None, stderr
    assert said.group(2) == plan_id[:12] and said.group(3) == str(warehouse)
    conn = duckdb.connect(str(warehouse), read_only=True)
    markers = conn.execute("SELECT count(*) FROM _ironlayer.committed_batches WHERE plan_id = ?", [plan_id]).fetchone()
    conn.close()
    assert markers is not None and int(said.group(1)) == markers[0]  # what it says is what the warehouse holds
    assert 5 <= successes(env, plan_id) < 40  # stopped in the middle of the slow step
    # nothing stays running: the plan is cancelled, no run is running, no range lock is held
    assert [r["status"] for r in query(env, "SELECT status FROM plans WHERE tenant_id = $1 AND plan_id = $2",
                                       env["tenant"], plan_id)] == ["cancelled"]
    assert query(env, "SELECT count(*) FROM runs WHERE tenant_id = $1 AND status IN ('running', 'pending')",
                 env["tenant"])[0][0] == 0
    assert query(env, "SELECT count(*) FROM range_locks WHERE tenant_id = $1", env["tenant"])[0][0] == 0
    actions = [r["action"] for r in query(env, "SELECT action FROM audit_log WHERE tenant_id = $1 ORDER BY seq",
                                          env["tenant"])]
    assert actions == ["apply.started", "apply.interrupted"]

    assert apply(env, plan_file, "ctrl-c.duckdb") == 0  # re-running resumes
    assert [r["status"] for r in query(env, "SELECT status FROM plans WHERE tenant_id = $1 AND plan_id = $2",
                                       env["tenant"], plan_id)] == ["succeeded"]
    assert ledger(env, "mart.daily") == [("2024-01-01", "2024-02-10")]
    resumed = tables(warehouse)
    os.environ["IRONLAYER_TENANT"] = env["tenant"] + "b"  # a second tenant: an uninterrupted apply from scratch
    try:
        assert apply(env, plan_file, "clean.duckdb") == 0
    finally:
        os.environ["IRONLAYER_TENANT"] = env["tenant"]
    assert resumed == tables(env["tmp"] / "clean.duckdb")
    assert len(resumed["mart.daily"]) == 28


SCHEDULED = DAILY.replace("-- start: 2024-01-01\n", "-- start: 2024-01-01\n-- cron: 0 3 * * *\n")


def test_run_plans_and_applies_what_the_schedule_made_due_then_nothing(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    head = commit(env, {"models/raw.sql": RAW.format(rows=raw_rows(9)), "models/daily.sql": SCHEDULED,
                        "models/totals.sql": TOTALS})
    assert apply(env, plan(env, "0" * 40, head, "p1.json")) == 0
    assert ledger(env, "mart.daily") == [("2024-01-01", "2024-01-10")]
    run = ["run", str(env["repo"]), "--now", "2024-01-15T04:00:00Z", "--warehouse", str(env["tmp"] / "w.duckdb"),
           "--auto-approve"]
    capsys.readouterr()
    assert main(run) == 0
    out = capsys.readouterr().out
    assert "due: mart.daily (schedule fired at 2024-01-15T03:00:00Z)" in out
    assert "5/5 batches" in out  # [01-10, 01-15): the days completed since, counted in batches
    assert ledger(env, "mart.daily") == [("2024-01-01", "2024-01-15")]
    plans = query(env, "SELECT base, target, status FROM plans WHERE tenant_id = $1 AND base = target", env["tenant"])
    assert [tuple(p) for p in plans] == [(head, head, "succeeded")]  # a catch-up of the commit, as the timer plans

    assert main(run) == 0
    assert "nothing is due at 2024-01-15T04:00:00Z: 1 scheduled model has every complete batch" in (
        capsys.readouterr().out)
    changed = commit(env, {"models/daily.sql": SCHEDULED.replace("count(*) AS events", "count(id) AS events")},
                     "2024-01-15T12:00:00+00:00")  # pushed, never planned: the schedule waits for an approved plan
    assert main(["run", str(env["repo"]), "--ref", changed, "--now", "2024-01-17T04:00:00Z", "--auto-approve"]) == 0
    assert ("nothing ran: mart.daily is due at 2024-01-17T04:00:00Z but waits for an approved plan" in
            capsys.readouterr().out)
    assert ledger(env, "mart.daily") == [("2024-01-01", "2024-01-15")]
    unscheduled = commit(env, {"models/daily.sql": DAILY}, "2024-01-16T00:00:00+00:00")
    assert main(["run", str(env["repo"]), "--ref", unscheduled, "--auto-approve"]) == 0
    assert "no incremental model at" in capsys.readouterr().out


def test_read_commands_answer_in_json_and_runs_takes_a_limit(env: dict[str, Any],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    head = commit(env, {"models/raw.sql": RAW.format(rows=raw_rows(9)), "models/daily.sql": DAILY})
    plan_file = plan(env, "0" * 40, head, "p1.json")
    plan_id = json.loads(plan_file.read_text())["plan_id"]
    capsys.readouterr()
    assert apply(env, plan_file) == 0
    assert "10/10 batches" in capsys.readouterr().out  # progress counts batches: raw.events 1, mart.daily 9

    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["tenant"] == env["tenant"]
    assert [(p["plan_id"], p["status"], p["as_of"]) for p in status["plans"]] == [
        (plan_id, "succeeded", "2024-01-10T12:00:00Z")]
    assert status["ledger"] == {"mart.daily": [["2024-01-01T00:00:00Z", "2024-01-10T00:00:00Z"]]}

    assert main(["runs", "--json", "--limit", "3"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["batch_start"], r["status"]) for r in runs] == [
        ("mart.daily", f"2024-01-{day:02d}T00:00:00Z", "success") for day in (7, 8, 9)]  # the newest three
    assert main(["runs", "--limit", "2"]) == 0
    text = capsys.readouterr().out
    assert text.count("mart.daily") == 2 and "(the newest 2 runs; --limit N shows more)" in text
    assert main(["runs", "--limit", "0"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err

    assert main(["audit", "verify", "--json"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified == {"tenant": env["tenant"], "ok": True, "checked": 2, "first_broken_seq": None,
                        "reason": "2 entries verified"}
    assert main(["audit", "show", "--json"]) == 0
    assert [e["action"] for e in json.loads(capsys.readouterr().out)] == ["apply.started", "apply.finished"]
