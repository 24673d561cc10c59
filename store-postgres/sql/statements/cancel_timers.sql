-- Cancels a stream's timer called $3, or all of them when $3 is NULL.
DELETE FROM {schema}.{positions}_timers
WHERE aggregate_type = $1 AND aggregate_id = $2 AND ($3::text IS NULL OR name = $3)
