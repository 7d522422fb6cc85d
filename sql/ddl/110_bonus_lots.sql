-- The bonus ledger's lots (transforms/ledger.py): one row per accrual (ledger transaction or
-- campaign accrual) and per overdraft, with what remains of it after FIFO redemptions and expiry.
-- Holds one date only, the latest written, named by the one row of `bonus_lots_as_of` (a backfill of
-- an older date leaves it); each date's changes are written in one transaction (warehouse/lots.py).
-- What the loyalty module and the customer card read.
CREATE TABLE IF NOT EXISTS bonus_lots (
    customer_id     BIGINT          NOT NULL,
    lot_id          TEXT            NOT NULL,  -- ledger:<txn_id> | accrual:<accrual_id> | overdraft:<txn_id>
    source          TEXT            NOT NULL,  -- the ledger txn_id or the campaign accrual_id
    amount          NUMERIC(14, 2)  NOT NULL,
    remaining       NUMERIC(14, 2)  NOT NULL,  -- negative for an overdraft
    redeemed        NUMERIC(14, 2)  NOT NULL,
    expired         NUMERIC(14, 2)  NOT NULL,
    accrued_at      TIMESTAMP       NOT NULL,  -- UTC
    expires_at      TIMESTAMP,                 -- UTC; null: never expires
    legal_entity    TEXT,
    PRIMARY KEY (customer_id, lot_id)
);

-- The date `bonus_lots` holds. Its own one-row table, not a column of every lot: a day then writes
-- only the lots it changed instead of restamping all of them (5.1M rows a day at 1M customers).
-- `lots_digest` (count and sums of the lots written) lets the next day check that the table holds
-- the frame it starts from without scanning the table.
CREATE TABLE IF NOT EXISTS bonus_lots_as_of (
    as_of_date      DATE            NOT NULL,
    lots_digest     TEXT
);
