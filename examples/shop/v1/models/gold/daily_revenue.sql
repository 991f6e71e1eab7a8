-- name: gold.daily_revenue
-- kind: INCREMENTAL_BY_TIME_RANGE
-- time_column: order_date
-- start: 2024-01-01
-- batch: day
-- owner: finance
-- tags: gold, finance
-- tests: not_null(order_date), custom_sql(SELECT * FROM {model} WHERE revenue < 0)
SELECT
    order_date,
    COUNT(*) AS orders,
    SUM(amount) AS revenue
FROM {{ ref('silver.orders') }}
WHERE order_date >= '{{ start_date }}' AND order_date < '{{ end_date }}'
GROUP BY order_date
