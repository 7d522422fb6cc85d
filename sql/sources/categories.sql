-- Source query for `categories` (the category tree).
SELECT category_id, name, parent_id
FROM categories
