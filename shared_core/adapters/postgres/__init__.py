"""The PostgreSQL adapter: the state store (one module per concern), its migrations, the embedded server.

`PostgresStateStore`, `open_store` and `app_url_for` are re-exported from `store.py`, loaded on first use
so that importing `embedded` alone never imports asyncpg.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["PostgresStateStore", "app_url_for", "open_store"]

if TYPE_CHECKING:
    from shared_core.adapters.postgres.store import PostgresStateStore, app_url_for, open_store
else:

    def __getattr__(name: str) -> object:
        """Load the re-exported names of `store.py` on first use."""
        if name in __all__:
            return getattr(importlib.import_module("shared_core.adapters.postgres.store"), name)
        raise AttributeError(f"module 'shared_core.adapters.postgres' has no attribute {name!r}")
