-- name: silver.customers
-- kind: MERGE_BY_KEY
-- materialization: MERGE
-- unique_key: customer_id
-- owner: customer-data
-- tags: silver
-- tests: not_null(customer_id), unique(customer_id), not_null(email)
-- contract_mode: STRICT
-- contract_columns: customer_id:INT:NOT_NULL, name:STRING, email:STRING, country:STRING, signup_date:DATE
SELECT
    customer_id,
    name,
    LOWER(email) AS email,
    country,
    signup_date
FROM {{ ref('bronze.raw_customers') }}
