-- A consumer's checkpoint.
SELECT last_processed_transaction, last_processed_position
FROM {schema}.{positions}
WHERE projection_name = $1
