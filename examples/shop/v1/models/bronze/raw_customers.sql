-- name: bronze.raw_customers
-- kind: FULL_REFRESH
-- materialization: TABLE
-- owner: data-platform
-- tags: bronze, seed
-- tests: not_null(customer_id), unique(customer_id)
SELECT customer_id, name, email, country, CAST(signup_date AS DATE) AS signup_date
FROM VALUES
    (1, 'Ada Lovelace', 'ada@example.com', 'GB', '2023-11-02'),
    (2, 'Grace Hopper', 'grace@example.com', 'US', '2023-12-15'),
    (3, 'Alan Turing', 'alan@example.com', 'GB', '2024-01-01'),
    (4, 'Katherine Johnson', 'kj@example.com', 'US', '2024-01-03'),
    (5, 'Edsger Dijkstra', 'ed@example.com', 'NL', '2024-01-05'),
    (6, 'Barbara Liskov', 'bl@example.com', 'US', '2024-01-06')
    AS t(customer_id, name, email, country, signup_date)
