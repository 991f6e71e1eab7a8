"""`PostgresStateStore`: the whole state store over one asyncpg pool, and how the application opens it.

The store is composed of one class per concern, each over the same pool (`_connection.PostgresConnection`):
the ledger (`ledger.py`), plans (`plans.py`), runs (`runs.py`) and range locks (`locks.py`), jobs and
webhook deliveries (`jobs.py`), security state (`security.py`), per-repository settings (`repositories.py`),
identities and decisions (`approvals.py`), deployed versions and plan bases (`deployments.py`),
execution telemetry (`telemetry.py`), metering and subscriptions (`billing.py`) and migrations
(`migrate.py`). Every query
names its tenant and runs in a transaction bound to it (row-level security); see `shared_core.ports` for
the Protocols these classes implement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from shared_core.adapters.postgres.approvals import PostgresApprovalStore
from shared_core.adapters.postgres.billing import PostgresBillingStore
from shared_core.adapters.postgres.deployments import PostgresDeploymentStore
from shared_core.adapters.postgres.jobs import PostgresJobStore
from shared_core.adapters.postgres.ledger import PostgresLedgerStore
from shared_core.adapters.postgres.locks import PostgresLockStore
from shared_core.adapters.postgres.migrate import PostgresMigrations, migrations
from shared_core.adapters.postgres.plans import PostgresPlanStore
from shared_core.adapters.postgres.repositories import PostgresRepositoryStore
from shared_core.adapters.postgres.runs import PostgresRunStore
from shared_core.adapters.postgres.security import PostgresSecurityStore
from shared_core.adapters.postgres.telemetry import PostgresTelemetryStore
from shared_core.core.errors import StateError

__all__ = ["APP_ROLE", "PostgresStateStore", "app_url_for", "migrations", "open_store"]

APP_ROLE = "ironlayer_app"


class PostgresStateStore(
    PostgresLedgerStore,
    PostgresPlanStore,
    PostgresRunStore,
    PostgresLockStore,
    PostgresJobStore,
    PostgresSecurityStore,
    PostgresRepositoryStore,
    PostgresApprovalStore,
    PostgresDeploymentStore,
    PostgresTelemetryStore,
    PostgresBillingStore,
    PostgresMigrations,
):
    """The state store over one asyncpg pool (created lazily, reused): every concern, one object.

    It implements `shared_core.ports.StateStore`; the owner role also migrates through it.
    """


if TYPE_CHECKING:  # mypy proves the facade implements every store port: a signature drift fails `mypy shared_core`
    from shared_core.ports import StateStore

    _IMPLEMENTS_PORTS: StateStore = PostgresStateStore("postgresql://")


def app_url_for(owner_url: str) -> str:
    """The same server and database as `owner_url`, as the application role (trust or peer auth locally).

    >>> app_url_for("postgresql://postgres@127.0.0.1:5432/ironlayer")
    'postgresql://ironlayer_app@127.0.0.1:5432/ironlayer'
    """
    scheme, _, rest = owner_url.partition("://")
    host = rest.rsplit("@", 1)[-1]
    return f"{scheme}://{APP_ROLE}@{host}"


async def open_store(app_url: str, migration_url: str | None, tenant_id: str) -> PostgresStateStore:
    """The application's store: migrates first (as the owner) when the schema is behind, binds nothing.

    Raises:
        StateError: the schema is behind and no migration URL (owner role) is configured.
    """
    latest = migrations()[-1][0]
    store = PostgresStateStore(app_url)
    try:
        current = await store.schema_version()
    except asyncpg.PostgresError:
        current = -1  # the application role cannot read the schema yet: it may not exist before 0003
    except StateError:
        if not migration_url:
            raise
        current = -1
    if current < latest:
        if not migration_url:
            await store.close()
            raise StateError(
                f"the state store schema is at version {max(current, 0)}, this IronLayer needs {latest}; run "
                "'ironlayer migrate' with IRONLAYER_MIGRATION_DATABASE_URL set to the owner role"
            )
        owner = PostgresStateStore(migration_url)
        try:
            await owner.migrate()
        finally:
            await owner.close()
        await store.close()
        store = PostgresStateStore(app_url)
    await store.ensure_tenant(tenant_id, tenant_id)
    return store
