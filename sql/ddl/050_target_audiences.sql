-- What the loyalty module imports: per audience label, exactly the members of the latest export.
CREATE TABLE IF NOT EXISTS target_audiences (
    audience        TEXT        NOT NULL,
    customer_id     BIGINT      NOT NULL,
    exported_at     TIMESTAMP   NOT NULL,  -- UTC
    segment_id      TEXT        NOT NULL,
    partition_date  DATE        NOT NULL,
    PRIMARY KEY (audience, customer_id)
);
