-- One row per campaign, customer and occasion (e.g. 'birthday:2025-03-01'). The primary key makes
-- a second trigger of the same occasion impossible, whichever date's run tries to write it.
CREATE TABLE IF NOT EXISTS triggered_customers (
    campaign_id     TEXT        NOT NULL,
    partition_date  DATE        NOT NULL,
    customer_id     BIGINT      NOT NULL,
    occasion        TEXT        NOT NULL,
    event_date      DATE        NOT NULL,  -- the date being celebrated or reminded
    triggered_at    TIMESTAMP   NOT NULL,  -- UTC
    variant         TEXT,
    is_control      BOOLEAN     NOT NULL,
    check_id        TEXT,                  -- the triggering check (purchase triggers)
    check_total     NUMERIC(14, 2),
    event_amount    NUMERIC(14, 2),        -- e.g. the bonuses about to expire
    -- the journey's end when it ended in the run that entered it (most journeys: no wait); the view
    -- activity_log derives its `journey_ended` row from these, activity_events keeps the ends of earlier days' entries
    ended_at        TIMESTAMP,             -- UTC
    ended_reason    TEXT,                  -- completed, filtered_out, no_variant
    ended_step      TEXT,                  -- the step it ended at ('' = the end of the chain)
    PRIMARY KEY (campaign_id, customer_id, occasion)
);
CREATE INDEX IF NOT EXISTS ix_triggered_customers_partition ON triggered_customers (campaign_id, partition_date);
