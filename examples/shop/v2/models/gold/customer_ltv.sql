-- name: gold.customer_ltv
-- kind: FULL_REFRESH
-- materialization: TABLE
-- owner: finance
-- tags: gold
-- tests: not_null(customer_id), unique(customer_id), row_count_min(1)

-- Lifetime value per customer (reformatted: the logic is unchanged).
select c.customer_id, c.name, c.country,
       count(o.order_id) as orders,
       coalesce(sum(o.amount), 0) as lifetime_value
from {{ ref('customers') }} c
left outer join {{ ref('orders') }} o on (o.customer_id = c.customer_id)
group by c.customer_id, c.name, c.country
