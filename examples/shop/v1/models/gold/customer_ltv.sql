-- name: gold.customer_ltv
-- kind: FULL_REFRESH
-- materialization: TABLE
-- owner: finance
-- tags: gold
-- tests: not_null(customer_id), unique(customer_id), row_count_min(1)
SELECT
    c.customer_id,
    c.name,
    c.country,
    COUNT(o.order_id) AS orders,
    COALESCE(SUM(o.amount), 0) AS lifetime_value
FROM {{ ref('silver.customers') }} AS c
LEFT JOIN {{ ref('silver.orders') }} AS o ON o.customer_id = c.customer_id
GROUP BY c.customer_id, c.name, c.country
