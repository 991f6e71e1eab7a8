-- name: silver.events
-- kind: APPEND_ONLY
-- time_column: event_ts
-- start: 2024-01-01
-- batch: day
-- owner: analytics-eng
-- tags: silver, events
-- tests: not_null(event_id), accepted_values(event_type:visit|checkout)
SELECT event_id, customer_id, event_ts, event_type
FROM {{ ref('raw_events') }}
WHERE event_ts >= '{{ start_date }}' AND event_ts < '{{ end_date }}'
