-- name: silver.orders
-- kind: INCREMENTAL_BY_TIME_RANGE
-- time_column: order_date
-- start: 2024-01-01
-- batch: day
-- lookback: 1
-- cron: 0 2 * * *
-- owner: analytics-eng
-- tags: silver, orders
-- tests: not_null(order_id), unique(order_id), row_count_min(1)@WARN
SELECT
    o.order_id,
    o.customer_id,
    CAST(o.order_ts AS DATE) AS order_date,
    o.status,
    o.amount
FROM {{ ref('bronze.raw_orders') }} AS o
WHERE o.order_ts >= '{{ start_date }}' AND o.order_ts < '{{ end_date }}'
