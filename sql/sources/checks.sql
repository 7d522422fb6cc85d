-- Source query for `checks`. `:cutoff` (the end of the run date, UTC) may be used to push the
-- point-in-time cut into the database; validation applies it again either way.
SELECT check_id, customer_id, ts, store_id, total, discount, bonus_spent
FROM checks
WHERE ts < :cutoff
