"""Dagster's SQLite event log, with one engine kept per database file instead of one per event.

Why: a daily run records ~280 events (step starts, outputs, materialisations, checks), and Dagster's
`SqliteEventLogStorage._connect` builds an engine, connects, commits and disposes it for each one;
disposing closes the file's last connection, which checkpoints the write-ahead log and syncs the
disk. At 5,000 customers that was 1.4 of the run's ~8 CPU s, and 5–7 s of wall time on a busy disk.
Kept engines pool their connections (`synchronous=NORMAL`: in WAL mode a commit is durable against a
crash of the process; only a power cut can lose the last events, and the run is then re-run, which is
idempotent). Everything else is Dagster's own `_connect`, reproduced; the storage is changed only when
it is exactly the class and version this was written against (dagster is pinned in pyproject.toml),
otherwise it is left as it is.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any

import sqlalchemy as sa

#: The dagster release whose `SqliteEventLogStorage._connect` is reproduced below.
WRITTEN_FOR = "1.13.27"
#: Engines kept, the most recently used: the index shard and the current run's, with room to spare
#: (each holds a few files open; `loyalty backfill` runs hundreds of dates on one instance).
KEPT_ENGINES = 4


def pool_event_log(instance: Any) -> OrderedDict[str, sa.Engine] | None:
    """Keep one engine per shard (run) of `instance`'s SQLite event log; the engines, to dispose of
    when the instance closes (None: the storage is another kind, or another dagster, left alone)."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
        SQLITE_BUSY_TIMEOUT_SECONDS,
        SqliteEventLogStorage,
    )

    storage = instance.event_log_storage
    if type(storage) is not SqliteEventLogStorage or version("dagster") != WRITTEN_FOR:
        return None
    engines: OrderedDict[str, sa.Engine] = OrderedDict()

    @contextmanager
    def connect(shard: str) -> Iterator[sa.Connection]:
        with storage._db_lock:
            engine = engines.get(shard)
            if engine is None:
                engine = sa.create_engine(
                    storage.conn_string_for_shard(shard), connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
                )
                sa.event.listen(engine, "connect", _normal_sync)
                engines[shard] = engine
                while len(engines) > KEPT_ENGINES:  # a backfill opens a database per date: keep the last few
                    engines.popitem(last=False)[1].dispose()
            engines.move_to_end(shard)
            if shard not in storage._initialized_dbs:
                storage._initdb(engine)
                storage._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    storage._connect = connect  # type: ignore[method-assign]  # the point of this module
    return engines


def _normal_sync(dbapi_connection: Any, _record: object) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")
