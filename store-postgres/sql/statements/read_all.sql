-- Up to $3 events of the log after ($1 transaction, $2 position), gap-safe: only
-- transactions older than the oldest one still running can no longer add rows, so read
-- in (transaction, position) order up to that horizon, in one statement so that the
-- horizon and the rows come from the same snapshot.
SELECT {columns} FROM {schema}.{events}
WHERE (transaction_id, global_position) > ($1, $2)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
ORDER BY transaction_id, global_position
LIMIT $3
