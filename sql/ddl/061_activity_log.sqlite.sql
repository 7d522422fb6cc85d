-- The customer's complete activity history (the data contract's activity_log): the decisions stored in
-- activity_events plus one row per entry, accrual and queued message derived from the tables that hold
-- them, and the journey ends of the run that entered them (triggered_customers.ended_*). Event ids and details are those `warehouse.activity.customer_activity` builds in Polars (a test
-- compares the two on both dialects); message bodies are never read.
DROP VIEW IF EXISTS activity_log;
CREATE VIEW activity_log AS
SELECT event_id, customer_id, ts, campaign_id, kind, details, stage, partition_date
FROM activity_events
UNION ALL
SELECT 'triggered:' || campaign_id || ':' || customer_id || ':' || occasion, customer_id, triggered_at, campaign_id,
       CASE WHEN is_control THEN 'entered_control_group' ELSE 'entered' END, occasion, 'triggered', partition_date
FROM triggered_customers
UNION ALL
SELECT 'accruals:' || campaign_id || ':' || accrual_id, customer_id, accrued_at, campaign_id, 'bonus_accrued',
       printf('%.2f', amount) || ' bonuses, expires '
       || COALESCE(strftime('%Y-%m-%dT%H' || ':' || '%MZ', expires_at), 'never')
       || ', legal entity ' || legal_entity || ' (' || occasion || ')',
       'accruals', partition_date
FROM bonus_accruals
UNION ALL
SELECT 'messages:' || campaign_id || ':' || message_id, customer_id, send_at, campaign_id, 'message_queued',
       channel || ' ' || step_id || ' (' || occasion || ')', 'messages', partition_date
FROM message_outbox
UNION ALL
SELECT 'journey:' || campaign_id || ':' || customer_id || ':' || occasion || ':' || 'end', customer_id, ended_at, campaign_id,
       'journey_ended',
       ended_reason || ' at ' || CASE WHEN ended_step = '' THEN 'end' ELSE ended_step END || ' (' || occasion || ')',
       'journey', partition_date
FROM triggered_customers
WHERE ended_at IS NOT NULL;
