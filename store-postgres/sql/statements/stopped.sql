-- Where a projection ($1) stopped by its failure policy, if it is stopped: the columns of
-- failures.sql, from the row's `stopped` object.
SELECT projection_name, (stopped->>'event_id')::uuid, stopped->>'aggregate_type',
    stopped->>'aggregate_id', (stopped->>'version')::int8, (stopped->>'global_position')::int8,
    (stopped->>'transaction_id')::int8, stopped->>'event_type', stopped->>'error',
    (stopped->>'attempts')::int4, (stopped->>'failed_at')::timestamptz
FROM {schema}.{positions}
WHERE projection_name = $1 AND stopped IS NOT NULL
