-- Source query for `favourite_categories`.
SELECT customer_id, period_start, period_end, category_id, chosen_at, preference
FROM favourite_categories
WHERE chosen_at < :cutoff
