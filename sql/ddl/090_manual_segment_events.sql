-- Manual segments kept by campaign steps ("add to segment" / "remove from segment").
-- A customer's membership at an instant is their latest event before it.
CREATE TABLE IF NOT EXISTS manual_segment_events (
    event_id        TEXT        NOT NULL PRIMARY KEY,
    segment_id      TEXT        NOT NULL,
    customer_id     BIGINT      NOT NULL,
    action          TEXT        NOT NULL,  -- add | remove
    ts              TIMESTAMP   NOT NULL,  -- UTC
    campaign_id     TEXT        NOT NULL,
    partition_date  DATE        NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_manual_segment_events_segment ON manual_segment_events (segment_id, customer_id, ts);
CREATE INDEX IF NOT EXISTS ix_manual_segment_events_partition ON manual_segment_events (campaign_id, partition_date);
