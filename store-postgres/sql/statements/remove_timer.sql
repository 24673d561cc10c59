-- Removes a stream's timer if it still has the id $3 (it fired).
DELETE FROM {schema}.{positions}_timers
WHERE aggregate_type = $1 AND aggregate_id = $2 AND timer_id = $3
