"""Target audiences for the loyalty module (seed 004: «Передать в Программу Лояльности»).

Per audience label, `target_audiences` holds exactly the members of the latest exported date. A
backfill of an older date must not overwrite a newer export, so the replace is skipped when the
audience already holds a later date; both the check and the replace run in one locked transaction.
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import sqlalchemy as sa

from loyalty_assets.warehouse.warehouse import Warehouse


def export_audiences(
    warehouse: Warehouse,
    members: pl.DataFrame,
    *,
    labels: tuple[str, ...],
    segment_id: str,
    partition_date: date,
    exported_at: datetime,
) -> dict[str, int | str]:
    """Replace each label's audience with `members`; returns rows written (or why skipped) per label."""
    table = warehouse.table("target_audiences")
    outcome: dict[str, int | str] = {}
    for label in labels:
        with warehouse.transaction() as conn:
            warehouse._lock(conn, "target_audiences", f"audience={label}")
            latest = conn.execute(
                sa.select(sa.func.max(table.c.partition_date)).where(table.c.audience == label)
            ).scalar_one_or_none()
            if isinstance(latest, str):
                latest = date.fromisoformat(latest)
            if latest is not None and latest > partition_date:
                outcome[label] = f"skipped: holds the newer export of {latest.isoformat()}"
                continue
            rows = members.select("customer_id").with_columns(
                pl.lit(exported_at).cast(pl.Datetime("us", "UTC")).alias("exported_at"),
                pl.lit(segment_id).alias("segment_id"),
                pl.lit(partition_date).alias("partition_date"),
            )
            outcome[label] = warehouse.replace("target_audiences", rows, {"audience": label}, conn=conn)
    return outcome
