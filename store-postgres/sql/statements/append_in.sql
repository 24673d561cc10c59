-- The append function run in a subtransaction, for appends in a caller's transaction.
SELECT out_version, out_position, out_transaction, out_conflict, out_duplicate
FROM {schema}.{events}_append_in($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
