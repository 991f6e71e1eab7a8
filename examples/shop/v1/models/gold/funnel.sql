-- name: gold.funnel
-- kind: FULL_REFRESH
-- materialization: TABLE
-- owner: growth
-- tags: gold, growth
-- tests: accepted_values(event_type:visit|checkout)
SELECT event_type, COUNT(DISTINCT customer_id) AS customers, COUNT(*) AS events
FROM {{ ref('silver.events') }}
GROUP BY event_type
