"""Where a run reads and writes, from the three environment variables of the contract.

Read at call time (not import time) so tests and the CLI can point one process at several places.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from loyalty_assets.config.catalog import DEFAULT_CATALOG
from loyalty_assets.warehouse.warehouse import DEFAULT_URL

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    campaigns_dir: Path
    database_url: str
    storage_dir: Path
    source_database_url: str | None
    #: Where the `loyalty` CLI records its runs when DAGSTER_HOME is unset: the instance `make dev` shows.
    dagster_home: Path = PROJECT_ROOT / ".dagster"
    #: `LOYALTY_EXECUTOR`: how a run's steps execute (`defs.definitions.EXECUTORS`); default: one
    #: process, or a process per step when the day is split in customer shards.
    executor: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        """`LOYALTY_DATA_DIR`, `LOYALTY_CAMPAIGNS_DIR`, `LOYALTY_DATABASE_URL` (+ optional extras).

        `LOYALTY_SOURCE_DATABASE_URL` switches the sources from files to the SQL queries in
        `sql/sources/`; `LOYALTY_STORAGE_DIR` is where intermediate Parquet frames are kept.
        """
        env = os.environ
        return cls(
            data_dir=Path(env.get("LOYALTY_DATA_DIR", PROJECT_ROOT / "data")),
            campaigns_dir=Path(env.get("LOYALTY_CAMPAIGNS_DIR", DEFAULT_CATALOG)),
            database_url=env.get(
                "LOYALTY_DATABASE_URL", f"sqlite:///{PROJECT_ROOT / DEFAULT_URL.removeprefix('sqlite:///')}"
            ),
            storage_dir=Path(env.get("LOYALTY_STORAGE_DIR", PROJECT_ROOT / ".loyalty" / "storage")),
            source_database_url=env.get("LOYALTY_SOURCE_DATABASE_URL") or None,
            dagster_home=Path(env.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster"),
            executor=env.get("LOYALTY_EXECUTOR") or None,
        )
