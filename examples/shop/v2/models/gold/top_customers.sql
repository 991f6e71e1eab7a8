-- name: gold.top_customers
-- kind: FULL_REFRESH
-- materialization: TABLE
-- owner: finance
-- tags: gold
-- tests: not_null(customer_id), row_count_max(3)
SELECT customer_id, name, lifetime_value,
       RANK() OVER (ORDER BY lifetime_value DESC) AS value_rank
FROM {{ ref('gold.customer_ltv') }}
QUALIFY RANK() OVER (ORDER BY lifetime_value DESC) <= 3
