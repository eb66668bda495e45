"""Picking the store backend from `[store]`: PostgreSQL for a `postgresql://` URL, else SQLite."""

from __future__ import annotations

from ..clock import Clock
from ..config import ConfigError, StoreConfig
from .base import Store
from .sqlite import SqliteStore

__all__ = ["store_backend"]


def store_backend(config: StoreConfig, clock: Clock, *, shared: bool = False) -> Store:
    """The (unstarted) store `config.url` names: PostgreSQL for a `postgresql://` URL, else SQLite (`url` or
    `path`; `shared`: opened by a webhook sender process beside the server's, see `SqliteStore`). Raises
    ConfigError when PostgreSQL is asked for without the `postgres` extra installed."""
    if config.backend == "postgresql":
        try:
            from .postgres import PostgresStore  # asyncpg is the optional `postgres` extra
        except ImportError:
            raise ConfigError(
                "store.url: PostgreSQL needs the asyncpg driver: pip install 'jimeng-server[postgres]'"
            ) from None
        return PostgresStore(config.url, clock=clock, pool_size=config.pool_size)
    return SqliteStore(
        config.sqlite_path,
        clock=clock,
        synchronous=config.synchronous,
        read_connections=config.read_connections,
        shared=shared,
    )
