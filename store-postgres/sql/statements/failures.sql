-- A projection's recorded failures, in log order.
SELECT projection_name, event_id, aggregate_type, aggregate_id, version, global_position,
    transaction_id, event_type, error, attempts, failed_at
FROM {schema}.{failures}
WHERE projection_name = $1
ORDER BY transaction_id, global_position
