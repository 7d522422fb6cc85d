-- One row per audience export: the date exported and how many members. Decides "is this export
-- newer?" even when the newest export was empty (target_audiences then holds no row to look at).
CREATE TABLE IF NOT EXISTS audience_exports (
    audience        TEXT        NOT NULL,
    partition_date  DATE        NOT NULL,
    segment_id      TEXT        NOT NULL,
    members         INTEGER     NOT NULL,
    exported_at     TIMESTAMP   NOT NULL,  -- UTC
    PRIMARY KEY (audience, partition_date)
);
