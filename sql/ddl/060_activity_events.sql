-- The decisions of campaigns that no other table records: a message skipped (with the reason), a
-- customer waiting in a chain (until when, at which step), a journey ended (completed, or filtered
-- out at a step). Entries, accruals and queued messages are rows of triggered_customers,
-- bonus_accruals and message_outbox; the view activity_log (061_activity_log.<dialect>.sql) unions
-- them into the customer's complete history, so nothing is stored twice.
CREATE TABLE IF NOT EXISTS activity_events (
    event_id        TEXT        NOT NULL PRIMARY KEY,
    customer_id     BIGINT      NOT NULL,
    ts              TIMESTAMP   NOT NULL,  -- UTC
    campaign_id     TEXT        NOT NULL,
    kind            TEXT        NOT NULL,  -- message_skipped, waiting, journey_ended
    details         TEXT,
    stage           TEXT        NOT NULL,  -- the stage that wrote it: messages, journey
    partition_date  DATE        NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_activity_events_customer ON activity_events (customer_id, ts);
CREATE INDEX IF NOT EXISTS ix_activity_events_partition ON activity_events (campaign_id, partition_date, stage);
