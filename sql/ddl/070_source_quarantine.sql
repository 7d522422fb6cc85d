-- Source rows set aside by validation, with the rule they broke; replaced per table and run date.
CREATE TABLE IF NOT EXISTS source_quarantine (
    source_table    TEXT    NOT NULL,
    partition_date  DATE    NOT NULL,
    source_file     TEXT    NOT NULL,
    rule            TEXT    NOT NULL,
    column_name     TEXT,
    row_data        TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_source_quarantine_partition ON source_quarantine (source_table, partition_date);
