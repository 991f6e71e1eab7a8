"""The parity scenarios on a real Databricks SQL warehouse (marked `remote`; not run in CI).

Runs when these are set, and is skipped otherwise:

    IRONLAYER_TEST_DATABRICKS_HOST       adb-1234567890123456.7.azuredatabricks.net
    IRONLAYER_TEST_DATABRICKS_HTTP_PATH  /sql/1.0/warehouses/<id>
    IRONLAYER_TEST_DATABRICKS_CATALOG    a catalog the principal may create schemas in
    IRONLAYER_TEST_DATABRICKS_TOKEN      a token, or IRONLAYER_TEST_DATABRICKS_CLIENT_ID and _CLIENT_SECRET

    .venv/bin/pytest -m remote tests/integration/test_databricks_remote.py

Every scenario writes into schemas named for this run (`il<hex>_raw`, `il<hex>_silver`, ...), which are
dropped afterwards with the run's markers. The rows and test results must equal the scenario's expected
ones, as on DuckDB; a wrong token and a missing catalog must fail with their one-line messages.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import cast

import pytest

from shared_core.adapters.engines.databricks import Credentials, DatabricksExecutor, Limits, Target
from shared_core.adapters.engines.results import TestOutcome
from shared_core.core.errors import BlockedBatchError, ExecutionError
from shared_core.core.planning.markers import BatchMarker
from shared_core.core.project.models import ModelSource, load_project
from tests.integration.parity_scenarios import SCENARIOS, Scenario, normalize

ENV = {name: os.environ.get(f"IRONLAYER_TEST_DATABRICKS_{name}", "")
       for name in ("HOST", "HTTP_PATH", "CATALOG", "TOKEN", "CLIENT_ID", "CLIENT_SECRET")}
CONFIGURED = bool(ENV["HOST"] and ENV["HTTP_PATH"] and ENV["CATALOG"]
                  and (ENV["TOKEN"] or (ENV["CLIENT_ID"] and ENV["CLIENT_SECRET"])))

pytestmark = [pytest.mark.remote, pytest.mark.skipif(not CONFIGURED, reason="IRONLAYER_TEST_DATABRICKS_* not set")]

RUN = f"il{uuid.uuid4().hex[:8]}"
SCHEMAS = ("raw", "silver", "gold")


def credentials() -> Credentials:
    if ENV["TOKEN"]:
        return Credentials(token=ENV["TOKEN"], source="IRONLAYER_TEST_DATABRICKS_TOKEN")
    return Credentials(client_id=ENV["CLIENT_ID"], client_secret=ENV["CLIENT_SECRET"],
                       source="IRONLAYER_TEST_DATABRICKS_CLIENT_ID/_CLIENT_SECRET")


def isolated(text: str) -> str:
    for schema in SCHEMAS:
        text = text.replace(f"{schema}.", f"{RUN}_{schema}.")
    return text


@pytest.fixture(scope="module")
def executor() -> Iterator[DatabricksExecutor]:
    executor = DatabricksExecutor(Target(ENV["HOST"], ENV["HTTP_PATH"], ENV["CATALOG"]), credentials(),
                                  tenant="ironlayer-remote-tests", limits=Limits(start_timeout=600))
    yield executor
    session = executor._session()
    catalog = executor.catalog
    for schema in SCHEMAS:
        session.run(f"DROP SCHEMA IF EXISTS `{catalog}`.`{RUN}_{schema}` CASCADE", label="cleanup", tags={})
    session.run(f"DELETE FROM `{catalog}`.`_ironlayer`.`committed_batches` WHERE plan_id LIKE :run",
                {"run": f"{RUN}-%"}, label="cleanup", tags={})
    executor.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_each_scenario_ends_on_databricks_with_the_expected_rows(scenario: Scenario,
                                                                executor: DatabricksExecutor) -> None:
    tests: list[tuple[str, str, int]] = []
    target = isolated(scenario.target)
    for index, run in enumerate(scenario.runs):
        project = scenario.project(run)
        models = {name: project[name] for name in ("raw.events", scenario.target)}
        renamed = load_project([ModelSource(m.path, isolated(m.text)) for m in models.values()])
        executor.run_batch(renamed[isolated("raw.events")], start=None, end=None, reset=False)
        start, end = scenario.window(run)
        try:
            result = executor.run_batch(renamed[target], start=start, end=end, reset=run.reset,
                                        marker=BatchMarker(f"{RUN}-{scenario.name}", f"step-{index + 1}", RUN))
            tests = [(t.test, t.severity, t.failing_rows) for t in result.tests]
        except BlockedBatchError as exc:
            assert scenario.blocked and index == len(scenario.runs) - 1
            tests = [(t.test, t.severity, t.failing_rows) for t in cast(tuple[TestOutcome, ...], exc.outcomes)]
    rows = executor._session().run(f"SELECT * FROM `{executor.catalog}`.`{target.replace('.', '`.`')}`",
                                   label="check", tags={}).rows
    assert normalize(rows) == scenario.expected
    if scenario.tests is not None:
        assert tests == scenario.tests


def test_a_wrong_token_and_a_missing_catalog_fail_with_one_line() -> None:
    with pytest.raises(ExecutionError) as wrong:
        DatabricksExecutor(Target(ENV["HOST"], ENV["HTTP_PATH"], ENV["CATALOG"]),
                           Credentials(token="dapi" + "0" * 32, source="a test token"), tenant="t")
    assert "rejected the token (HTTP 401" in str(wrong.value)
    with pytest.raises(ExecutionError) as missing:
        DatabricksExecutor(Target(ENV["HOST"], ENV["HTTP_PATH"], f"{RUN}_no_such_catalog"), credentials(), tenant="t")
    assert f"catalog {RUN}_no_such_catalog does not exist" in str(missing.value)
