-- Records an event a projection gave up on, replacing an earlier record of the same one.
INSERT INTO {schema}.{failures} (projection_name, event_id, aggregate_type, aggregate_id, version,
    global_position, transaction_id, event_type, error, attempts, failed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (projection_name, event_id) DO UPDATE SET
    error = EXCLUDED.error, attempts = EXCLUDED.attempts, failed_at = EXCLUDED.failed_at
