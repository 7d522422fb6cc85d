-- Campaign results as of a date (see transforms/results.py): one row per figure, text values so a
-- decimal, an interval bound or a flag keep the exact form the report and the Dagster UI show.
CREATE TABLE IF NOT EXISTS campaign_results (
    campaign_id     TEXT        NOT NULL,
    partition_date  DATE        NOT NULL,  -- results of the entrants up to this date, on data as of it
    period_start    DATE        NOT NULL,  -- first entrant date included
    section         TEXT        NOT NULL,  -- campaign, variant, difference:*, money, sample_ratio, attribution, ab
    variant         TEXT,
    group_name      TEXT,                  -- test, control, global_control; the metric of a difference
    metric          TEXT        NOT NULL,
    value           TEXT
);
CREATE INDEX IF NOT EXISTS ix_campaign_results_partition ON campaign_results (campaign_id, partition_date);
