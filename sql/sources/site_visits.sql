-- Source query for `site_visits`.
SELECT customer_id, ts, url, category_id
FROM site_visits
WHERE ts < :cutoff
