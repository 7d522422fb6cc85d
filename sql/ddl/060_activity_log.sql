-- The customer's activity history as the campaigns saw it (triggered, accrued, message queued or skipped and why).
CREATE TABLE IF NOT EXISTS activity_log (
    event_id        TEXT        NOT NULL PRIMARY KEY,
    customer_id     BIGINT      NOT NULL,
    ts              TIMESTAMP   NOT NULL,  -- UTC
    campaign_id     TEXT        NOT NULL,
    kind            TEXT        NOT NULL,
    details         TEXT,
    stage           TEXT        NOT NULL,  -- the asset that wrote it: triggered, accruals, messages
    partition_date  DATE        NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_activity_log_customer ON activity_log (customer_id, ts);
CREATE INDEX IF NOT EXISTS ix_activity_log_partition ON activity_log (campaign_id, partition_date, stage);
