-- name: gold.country_revenue
-- kind: FULL_REFRESH
-- materialization: VIEW
-- owner: finance
-- tags: gold
SELECT country, SUM(lifetime_value) AS revenue, COUNT(*) AS customers
FROM {{ ref('gold.customer_ltv') }}
GROUP BY country
