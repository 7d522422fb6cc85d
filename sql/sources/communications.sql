-- Source query for `communications` (message events).
SELECT message_id, customer_id, campaign_id, channel, sent_at, event, event_at
FROM communications
WHERE event_at < :cutoff
