-- Source query for `customers`. Column names must match the data contract; extra columns are kept.
SELECT customer_id, registered_at, birth_date, gender, first_name, email, phone, push_token,
       email_subscribed, sms_subscribed, push_subscribed, email_valid, timezone, city, labels
FROM customers
