-- Cancels a stream's timer called $3, or all of them when $3 is NULL, set at version $5
-- or before, except the one with the id $4 (a timer firing).
DELETE FROM {schema}.{positions}_timers
WHERE aggregate_type = $1 AND aggregate_id = $2 AND ($3::text IS NULL OR name = $3)
  AND ($4::uuid IS NULL OR timer_id <> $4) AND version <= $5
