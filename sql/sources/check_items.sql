-- Source query for `check_items`.
SELECT check_id, line_no, product_id, category_id, quantity, amount
FROM check_items
