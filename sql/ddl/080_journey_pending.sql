-- Cross-day state of campaign chains: customers waiting at a step until `due_at`. Rows are written
-- by the run of `partition_date` and read by the run of the day they are due, so a re-run of a date
-- replaces exactly what that date left waiting.
CREATE TABLE IF NOT EXISTS journey_pending (
    campaign_id     TEXT            NOT NULL,
    partition_date  DATE            NOT NULL,
    customer_id     BIGINT          NOT NULL,
    occasion        TEXT            NOT NULL,
    node            TEXT            NOT NULL,  -- path of the step in the chain, e.g. '3/else/0'
    due_at          TIMESTAMP       NOT NULL,  -- UTC
    variant         TEXT,
    event_date      DATE            NOT NULL,
    check_id        TEXT,
    check_total     NUMERIC(14, 2),
    event_amount    NUMERIC(14, 2),
    PRIMARY KEY (campaign_id, customer_id, occasion, node)
);
CREATE INDEX IF NOT EXISTS ix_journey_pending_due ON journey_pending (campaign_id, due_at);
