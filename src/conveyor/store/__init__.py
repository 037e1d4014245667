"""Storage: one schema on SQLite or PostgreSQL, reached through :class:`Store`."""

from conveyor.store.database import Database
from conveyor.store.store import Store

__all__ = ["Database", "Store"]
