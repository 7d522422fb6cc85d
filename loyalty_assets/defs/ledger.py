"""The bonus ledger asset: D's lots from D−1's lots plus D's movements → `bonus_lots`.

Its inputs are declared: the ledger source, its own previous day (a stored frame; absent on the
first date) and `loyalty_state` of D, which holds every accrual this project made up to D (the
day's campaigns included). With D−1's lots it advances them by D's entries; without them it
rebuilds from the whole history. Both give the same lots (`transforms.ledger`, property-tested).
The frame carried from day to day holds only the lots with something remaining (`ledger.carried`:
a closed lot never changes again); the table keeps every lot.
The warehouse table `bonus_lots` is written, never read back. Business logic is in
`transforms.ledger`; this only wires.
"""

from collections.abc import Callable

import dagster as dg
import polars as pl

from loyalty_assets.config.catalog import Catalog
from loyalty_assets.defs.partitions import PREVIOUS_DAY, as_of
from loyalty_assets.defs.resources import STATE_FRAMES, STATE_KEY, WITH_VISIBLE_DAY, WarehouseResource
from loyalty_assets.defs.sources import source_key
from loyalty_assets.sources.frames import OWN_ACCRUALS_SCHEMA
from loyalty_assets.sources.store import VISIBLE_DAY
from loyalty_assets.transforms.day_state import DayState
from loyalty_assets.transforms.ledger import (
    advance_lots,
    build_lots,
    carried,
    expiry_mismatches,
    ledger_entries,
    pending_accruals,
    touched_customers,
)
from loyalty_assets.warehouse.lots import write_lots

BONUS_LEDGER_KEY = dg.AssetKey(["bonus_ledger"])


def build_ledger_asset(catalog: Catalog, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    program = catalog.program

    @dg.asset(
        key=BONUS_LEDGER_KEY,
        ins={
            "bonus_transactions": dg.AssetIn(source_key("bonus_transactions"), metadata={WITH_VISIBLE_DAY: True}),
            # the accruals only: the state's carried features and lots are not the ledger's business
            "state": dg.AssetIn(STATE_KEY, metadata={STATE_FRAMES: ["accruals"]}),
            "previous": dg.AssetIn(BONUS_LEDGER_KEY, partition_mapping=PREVIOUS_DAY),
        },
        group_name="bonuses",
        partitions_def=partitions,
        kinds={"polars", "sql"},
        description="Bonus lots as of the end of D (FIFO by expiry, overdrafts, expiries) → bonus_lots.",
    )
    def bonus_ledger(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        bonus_transactions: pl.LazyFrame,  # the store's scan as of D: read whole only to rebuild
        state: dict[str, pl.DataFrame],
        previous: pl.DataFrame | None,
    ) -> dg.Output[pl.DataFrame]:
        point = as_of(context, program)
        wh = warehouse.warehouse
        # every accrual written up to D (D's campaigns included) and accrued before D's cutoff
        written_up_to_d = DayState.from_frames(state).accruals.filter(pl.col("accrued_at") < point.cutoff_literal)
        own = written_up_to_d.select(list(OWN_ACCRUALS_SCHEMA))

        def every_entry() -> pl.DataFrame:
            return ledger_entries(bonus_transactions.drop(VISIBLE_DAY).collect(), own)

        def every_lot() -> pl.DataFrame:
            """The lots from the whole history, closed ones included (what a replaced table holds)."""
            return build_lots(every_entry(), point.cutoff)

        touched = None  # the customers whose lots D can change: the write compares only theirs
        every: Callable[[], pl.DataFrame] | None = None  # how a replaced table gets the closed lots
        if previous is None:
            entries = every_entry()
            lots, mode = build_lots(entries, point.cutoff), "rebuilt from history"
        else:
            # only the rows D can change are read (the filter is pushed into the store's scan): D's
            # rows and the source accruals that arrived on D stamped earlier (a late accrual became a
            # lot on the day it arrived, so earlier ones are all in D-1's lots); of the own accruals,
            # those D−1's lots do not hold (`pending_accruals`: its closed lots are not carried)
            late = (pl.col("kind") == "accrual") & (pl.col(VISIBLE_DAY) == point.date)
            day_rows = bonus_transactions.filter((pl.col("ts") >= point.start_literal) | late)
            pending = pending_accruals(written_up_to_d, point).select(list(OWN_ACCRUALS_SCHEMA))
            new = (pl.col("ts") >= point.start_literal) | (pl.col("kind") == "accrual")
            entries = ledger_entries(day_rows.drop(VISIBLE_DAY).collect(), pending).filter(new)
            touched = touched_customers(previous, entries, point.cutoff)
            lots, mode = advance_lots(previous, entries, point.cutoff, touched), "advanced from D-1"
            every = every_lot
        kept = carried(lots)
        written = write_lots(wh, lots, point.date, previous, touched, carried=kept, every=every)
        mismatches = expiry_mismatches(lots, entries, point.cutoff, since=point.start)  # D's instants
        if mismatches.height:
            context.log.warning(f"{mismatches.height} source expiry rows disagree with the ledger on D (ledger wins)")
        balance = lots.get_column("remaining").sum()
        return dg.Output(
            kept,
            metadata={
                "mode": dg.MetadataValue.text(mode),
                "written": dg.MetadataValue.text(str(written)),
                "lots": dg.MetadataValue.int(kept.height),  # carried to D+1: those with something left
                "live_lots": dg.MetadataValue.int(lots.filter(pl.col("remaining") > 0).height),
                "overdrafts": dg.MetadataValue.int(lots.filter(pl.col("remaining") < 0).height),
                "customers": dg.MetadataValue.int(kept.get_column("customer_id").n_unique()),
                "balance_total": dg.MetadataValue.text(str(balance)),
                "expiry_mismatches": dg.MetadataValue.int(mismatches.height),
                "expiry_mismatch_sample": dg.MetadataValue.json(
                    [
                        {
                            "customer_id": r[0],
                            "expired_at": r[1].isoformat(),
                            "reported": str(r[2]),
                            "ledger": str(r[3]),
                        }
                        for r in mismatches.head(5).iter_rows()
                    ]
                ),
                "dagster/row_count": dg.MetadataValue.int(kept.height),
            },
        )

    return bonus_ledger
