-- Source query for `customer_attributes` (history: valid_from / valid_to).
SELECT customer_id, name, value, valid_from, valid_to
FROM customer_attributes
WHERE valid_from < :cutoff
