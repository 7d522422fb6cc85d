-- Source query for `bonus_transactions` (the loyalty system's own ledger).
SELECT txn_id, customer_id, ts, kind, amount, expires_at, legal_entity, source
FROM bonus_transactions
WHERE ts < :cutoff
