-- The append function of version 1 (modes any and stream-exists, and retries).
SELECT out_version, out_position, out_transaction, out_conflict
FROM {schema}.{events}_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
