-- name: bronze.raw_events
-- kind: FULL_REFRESH
-- materialization: VIEW
-- owner: data-platform
-- tags: bronze, seed
SELECT event_id, customer_id, CAST(event_ts AS TIMESTAMP) AS event_ts, event_type
FROM VALUES
    (1, 1, '2024-01-01 09:00:00', 'visit'),
    (2, 1, '2024-01-01 09:14:00', 'checkout'),
    (3, 2, '2024-01-01 17:30:00', 'visit'),
    (4, 3, '2024-01-02 08:00:00', 'visit'),
    (5, 4, '2024-01-03 19:00:00', 'visit'),
    (6, 4, '2024-01-03 19:29:00', 'checkout'),
    (7, 5, '2024-01-05 10:00:00', 'visit'),
    (8, 6, '2024-01-06 21:40:00', 'visit'),
    (9, 3, '2024-01-07 07:25:00', 'checkout'),
    (10, 5, '2024-01-09 16:00:00', 'visit')
    AS t(event_id, customer_id, event_ts, event_type)
