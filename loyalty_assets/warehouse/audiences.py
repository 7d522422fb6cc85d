"""Target audiences for the loyalty module (seed 004: «Передать в Программу Лояльности»).

Per audience label, `target_audiences` holds exactly the members of the latest exported date, and
`audience_exports` logs every export. A backfill of an older date must not overwrite a newer export
(even an empty one), so the replace is skipped when the log holds a later date; the check, the
replace and the log entry run in one transaction holding the audience's lock. Audiences a segment
no longer exports (label removed, `export: false`) are emptied, so the loyalty module never keeps
targeting a stale list.
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import sqlalchemy as sa

from loyalty_assets.warehouse.warehouse import Warehouse


def _latest_export(conn: sa.Connection, table: sa.Table, audience: str) -> date | None:
    latest = conn.execute(
        sa.select(sa.func.max(table.c.partition_date)).where(table.c.audience == audience)
    ).scalar_one_or_none()
    return date.fromisoformat(latest) if isinstance(latest, str) else latest


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
    log = warehouse.table("audience_exports")
    audiences = warehouse.table("target_audiences")
    outcome: dict[str, int | str] = {}
    for label in labels:
        with warehouse.transaction() as conn:
            warehouse.lock(conn, "target_audiences", f"audience={label}")
            latest = _latest_export(conn, log, label)
            if latest is not None and latest > partition_date:
                outcome[label] = f"skipped: holds the newer export of {latest.isoformat()}"
                continue
            rows = members.select("customer_id").with_columns(
                pl.lit(exported_at).cast(pl.Datetime("us", "UTC")).alias("exported_at"),
                pl.lit(segment_id).alias("segment_id"),
                pl.lit(partition_date).alias("partition_date"),
            )
            outcome[label] = warehouse.replace("target_audiences", rows, {"audience": label}, conn=conn)
            entry = pl.DataFrame(
                {"segment_id": [segment_id], "members": [rows.height], "exported_at": [exported_at]}
            ).with_columns(pl.col("exported_at").cast(pl.Datetime("us", "UTC")))
            warehouse.replace(
                "audience_exports", entry, {"audience": label, "partition_date": partition_date}, conn=conn
            )
    with warehouse.transaction() as conn:
        stale = conn.execute(
            sa.select(audiences.c.audience)
            .where(audiences.c.segment_id == segment_id)
            .where(audiences.c.audience.not_in(list(labels)) if labels else sa.true())
            .distinct()
        ).scalars()
        for audience in sorted(stale):
            warehouse.lock(conn, "target_audiences", f"audience={audience}")
            conn.execute(
                sa.delete(audiences).where(audiences.c.audience == audience, audiences.c.segment_id == segment_id)
            )
            outcome[audience] = "emptied: no longer exported by this segment"
    return outcome
