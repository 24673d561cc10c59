-- The events stored under a batch's ids ($1), plus the rest of what their transactions
-- wrote to the stream ($2, $3): a retry must match the whole original append. Through the
-- event-id and stream indexes whatever the statistics ({events}_by_ids).
SELECT {columns} FROM {schema}.{events}_by_ids($1::uuid[], $2, $3)
ORDER BY global_position
