-- Daily membership snapshots: history of who was in a segment on any date.
CREATE TABLE IF NOT EXISTS segment_members (
    segment_id      TEXT    NOT NULL,
    partition_date  DATE    NOT NULL,
    customer_id     BIGINT  NOT NULL,
    PRIMARY KEY (segment_id, partition_date, customer_id)
);
