-- Segment membership as intervals: one row per stay of a customer in a saved segment.
-- A customer is a member on D when entered_on <= D AND (left_on IS NULL OR left_on > D):
--   entered_on  the first date of the stay;
--   left_on     the first date NOT a member any more (NULL: still a member at the latest run).
-- A day's run writes only the changes (who entered, who left), so the table grows with turnover,
-- not with members × days. Written by `warehouse.membership.write_membership` (idempotent, in any
-- date order). Members on D, for any date D that was run (see segment_runs):
--   SELECT customer_id FROM segment_members
--   WHERE segment_id = :segment AND entered_on <= :d AND (left_on IS NULL OR left_on > :d)
-- or, for every run date at once, the view segment_members_by_date below.
CREATE TABLE IF NOT EXISTS segment_members (
    segment_id  TEXT    NOT NULL,
    customer_id BIGINT  NOT NULL,
    entered_on  DATE    NOT NULL,
    left_on     DATE,
    PRIMARY KEY (segment_id, customer_id, entered_on)
);
CREATE INDEX IF NOT EXISTS ix_segment_members_open ON segment_members (segment_id, left_on);

-- The dates each segment was computed for (membership on other dates is not known).
CREATE TABLE IF NOT EXISTS segment_runs (
    segment_id      TEXT    NOT NULL,
    partition_date  DATE    NOT NULL,
    members         BIGINT  NOT NULL,
    PRIMARY KEY (segment_id, partition_date)
);

-- "Members on D" for every run date, with the columns of the former daily snapshot table.
DROP VIEW IF EXISTS segment_members_by_date;
CREATE VIEW segment_members_by_date AS
SELECT r.segment_id, r.partition_date, m.customer_id
FROM segment_runs r
JOIN segment_members m
  ON m.segment_id = r.segment_id
 AND m.entered_on <= r.partition_date
 AND (m.left_on IS NULL OR m.left_on > r.partition_date);
