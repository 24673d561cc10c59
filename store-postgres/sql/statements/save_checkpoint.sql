-- Sets a consumer's checkpoint ($1: $3 transaction, $2 position), whatever it was, and
-- clears a record of its having stopped (record_stop.sql).
INSERT INTO {schema}.{positions}
    (projection_name, last_processed_position, last_processed_transaction, last_processed_at)
VALUES ($1, $2, $3, now())
ON CONFLICT (projection_name) DO UPDATE SET
    last_processed_position = EXCLUDED.last_processed_position,
    last_processed_transaction = EXCLUDED.last_processed_transaction,
    last_processed_at = EXCLUDED.last_processed_at,
    stopped = NULL
