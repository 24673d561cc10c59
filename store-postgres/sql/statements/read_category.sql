-- As read_all.sql, for the one aggregate type $4 (its index).
SELECT {columns} FROM {schema}.{events}
WHERE aggregate_type = $4
  AND (transaction_id, global_position) > ($1, $2)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
ORDER BY transaction_id, global_position
LIMIT $3
