-- The events stored under a batch's ids ($1), plus the rest of what their transactions
-- wrote to the stream ($2, $3): a retry must match the whole original append.
SELECT {columns} FROM {schema}.{events} WHERE event_id = ANY($1)
UNION
SELECT {columns} FROM {schema}.{events}
WHERE aggregate_type = $2 AND aggregate_id = $3
  AND transaction_id IN (SELECT transaction_id FROM {schema}.{events} WHERE event_id = ANY($1))
ORDER BY global_position
