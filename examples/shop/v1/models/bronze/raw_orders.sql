-- name: bronze.raw_orders
-- kind: FULL_REFRESH
-- materialization: TABLE
-- owner: data-platform
-- tags: bronze, seed
-- tests: not_null(order_id), unique(order_id), accepted_values(status:placed|shipped|cancelled)
SELECT order_id, customer_id, CAST(order_ts AS TIMESTAMP) AS order_ts, status, CAST(amount AS DECIMAL(10, 2)) AS amount
FROM VALUES
    (101, 1, '2024-01-01 09:15:00', 'shipped', 120.00),
    (102, 2, '2024-01-01 17:40:00', 'shipped', 35.50),
    (103, 3, '2024-01-02 08:05:00', 'cancelled', 80.00),
    (104, 1, '2024-01-03 12:00:00', 'shipped', 42.25),
    (105, 4, '2024-01-03 19:30:00', 'placed', 300.00),
    (106, 5, '2024-01-05 10:10:00', 'shipped', 15.75),
    (107, 2, '2024-01-06 11:11:00', 'shipped', 64.00),
    (108, 6, '2024-01-06 21:45:00', 'cancelled', 22.00),
    (109, 3, '2024-01-07 07:30:00', 'shipped', 99.99),
    (110, 4, '2024-01-08 13:00:00', 'placed', 250.00),
    (111, 5, '2024-01-09 16:20:00', 'shipped', 18.00),
    (112, 1, '2024-01-09 18:00:00', 'shipped', 75.00)
    AS t(order_id, customer_id, order_ts, status, amount)
